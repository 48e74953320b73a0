package manifest

import (
	"encoding/json"
	"fmt"
)

// BundleFile is where the host puts the bundle for guestd, inside the container.
const BundleFile = "/media/hearth/host/package.json"

// Bundle is what guestd needs to run a package: the manifest and, for each of the
// package's images, the defaults its config gives a daemon.
type Bundle struct {
	Manifest *Manifest                `json:"manifest"`
	Images   map[string]ImageDefaults `json:"images"`
}

// ImageDefaults are an image config's defaults for a process.
type ImageDefaults struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
}

// ReadBundle decodes and validates a bundle.
func ReadBundle(data []byte) (*Bundle, error) {
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("package bundle: %w", err)
	}
	if b.Manifest == nil {
		return nil, fmt.Errorf("package bundle: no manifest")
	}
	if err := b.Manifest.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}
