package manifest

import (
	"encoding/json"
	"fmt"
	"slices"
)

// BundleFile is where the host puts the bundle for guestd, inside the container.
const BundleFile = "/media/hearth/host/package.json"

// Bundle is what guestd needs to run a package: the manifest and, for each of the
// package's images, the defaults its config gives a daemon.
type Bundle struct {
	Manifest *Manifest                `json:"manifest"`
	Images   map[string]ImageDefaults `json:"images"`
	// Run are hooks to run at this start (install, or migrate after an update), each as
	// a oneshot job named HookJobPrefix+name, with extra environment.
	Run []HookRun `json:"run,omitempty"`
	// Nameservers are the resolvers the package's daemons use (netd's, on the bridge's
	// gateway); none: the container's own /etc/resolv.conf as it is.
	Nameservers []string `json:"nameservers,omitempty"`
	// Idle starts none of the package's daemons and oneshots: guestd serves and runs only
	// the jobs the host asks for (RunJob), such as an action offered while the package is
	// stopped.
	Idle bool `json:"idle,omitempty"`
}

// ResolvConf is the /etc/resolv.conf that names the bundle's nameservers, or nil.
func (b *Bundle) ResolvConf() []byte {
	if len(b.Nameservers) == 0 {
		return nil
	}
	var out []byte
	for _, n := range b.Nameservers {
		out = append(out, "nameserver "+n+"\n"...)
	}
	return out
}

// HookRun is a hook to run at a start.
type HookRun struct {
	Name string            `json:"name"`
	Env  map[string]string `json:"env,omitempty"`
}

// WithHooks returns the manifest with the hooks to run added as oneshot jobs: each waits
// for what it requires, and the daemons it is before (all of them when it names neither)
// wait for its success.
func (b *Bundle) WithHooks() (*Manifest, error) {
	m := *b.Manifest
	m.Oneshots = map[string]*Daemon{}
	for n, j := range b.Manifest.Oneshots {
		m.Oneshots[n] = j
	}
	for _, r := range b.Run {
		h := m.Hooks.Named(r.Name)
		if h == nil || r.Name == HookBackup {
			return nil, fmt.Errorf("package bundle: no %q hook to run at a start", r.Name)
		}
		j := h.Job()
		j.Env = map[string]string{}
		for k, v := range h.Env {
			j.Env[k] = v
		}
		for k, v := range r.Env {
			j.Env[k] = v
		}
		if len(j.Requires) == 0 && len(j.Before) == 0 {
			for d := range m.Daemons {
				j.Before = append(j.Before, d)
			}
			slices.Sort(j.Before)
		}
		m.Oneshots[HookJobPrefix+r.Name] = j
	}
	return &m, nil
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
