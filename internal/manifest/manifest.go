// Package manifest reads a package manifest: the images a package holds, its volumes and
// limits, the daemons and one-shot jobs guestd runs, and the interfaces it offers. Load
// refuses unknown fields, unknown names, cycles and impossible settings with messages that
// name the field ("daemons.app.requires[0]: ...").
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// MaxSize bounds a manifest file.
const MaxSize = 1 << 20

// Manifest is a package's manifest.yaml.
type Manifest struct {
	ID         string               `yaml:"id" json:"id"`
	Version    string               `yaml:"version" json:"version"`
	Images     map[string]Image     `yaml:"images" json:"images"`
	Volumes    []string             `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	Limits     Limits               `yaml:"limits,omitempty" json:"limits"`
	Daemons    map[string]*Daemon   `yaml:"daemons" json:"daemons"`
	Oneshots   map[string]*Daemon   `yaml:"oneshots,omitempty" json:"oneshots,omitempty"`
	Interfaces map[string]Interface `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
	Actions    map[string]Action    `yaml:"actions,omitempty" json:"actions,omitempty"`
	Hooks      Hooks                `yaml:"hooks,omitempty" json:"hooks"`
	// AllowDowngrade lets an older version of the package replace this one.
	AllowDowngrade bool `yaml:"allow_downgrade,omitempty" json:"allow_downgrade,omitempty"`
}

// Image says where one of the package's images comes from.
type Image struct {
	// OCI is a path inside the package file (an OCI archive).
	OCI string `yaml:"oci,omitempty" json:"oci,omitempty"`
	// Ref names an image already stored on the host.
	Ref string `yaml:"ref,omitempty" json:"ref,omitempty"`
}

// Limits of the package's container.
type Limits struct {
	Memory string  `yaml:"memory,omitempty" json:"memory,omitempty"`
	CPUs   float64 `yaml:"cpus,omitempty" json:"cpus,omitempty"`
	Pids   int64   `yaml:"pids,omitempty" json:"pids,omitempty"`
	// Disk bounds the package's writable layers, volumes and logs (such as 2Gi); the
	// host's default when empty, and never above the host's cap.
	Disk string `yaml:"disk,omitempty" json:"disk,omitempty"`
}

// Daemon is a long-running process (or, under oneshots, a job run to success).
type Daemon struct {
	Image string `yaml:"image" json:"image"`
	// Command replaces the image's entrypoint; Args replace its cmd.
	Command  []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Args     []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env      map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Workdir  string            `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	User     string            `yaml:"user,omitempty" json:"user,omitempty"`
	Mounts   []Mount           `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	Ports    []int             `yaml:"ports,omitempty" json:"ports,omitempty"`
	Ready    *Check            `yaml:"ready,omitempty" json:"ready,omitempty"`
	Requires []string          `yaml:"requires,omitempty" json:"requires,omitempty"`
	// Before (oneshots only) lists daemons that wait for this job's success.
	Before  []string `yaml:"before,omitempty" json:"before,omitempty"`
	Restart Restart  `yaml:"restart,omitempty" json:"restart"`
	Stop    Stop     `yaml:"stop,omitempty" json:"stop"`
}

// Mount binds a volume into the daemon's subcontainer.
type Mount struct {
	Volume   string `yaml:"volume" json:"volume"`
	Path     string `yaml:"path" json:"path"`
	ReadOnly bool   `yaml:"read_only,omitempty" json:"read_only,omitempty"`
}

// Check is a ready and health check: one of TCP, HTTP or Exec.
type Check struct {
	TCP  int        `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	HTTP *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	// Exec runs in the daemon's subcontainer, as its user; exit status 0 passes.
	Exec []string `yaml:"exec,omitempty" json:"exec,omitempty"`
	// Interval between checks (default 1s), Timeout of one check (default 2s), Grace a
	// starting daemon has before failed checks count (default 30s), Retries failed checks
	// in a row that make a ready daemon failing (default 3).
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Grace    Duration `yaml:"grace,omitempty" json:"grace,omitempty"`
	Retries  int      `yaml:"retries,omitempty" json:"retries,omitempty"`
}

// HTTPCheck passes on a 2xx or 3xx answer.
type HTTPCheck struct {
	Port  int    `yaml:"port" json:"port"`
	Path  string `yaml:"path,omitempty" json:"path,omitempty"`
	HTTPS bool   `yaml:"https,omitempty" json:"https,omitempty"`
}

// Restart says when a daemon that exits or keeps failing is started again.
type Restart struct {
	// Policy is always (the default for daemons), on-failure, or never (the only one for oneshots).
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	// Backoff is "MIN..MAX": the first delay, doubled each time up to MAX (default 1s..30s).
	Backoff string `yaml:"backoff,omitempty" json:"backoff,omitempty"`
}

// Stop says how a daemon is stopped: Signal (default SIGTERM), then SIGKILL after Timeout (default 10s).
type Stop struct {
	Signal  string   `yaml:"signal,omitempty" json:"signal,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Interface is a port a daemon offers to the outside.
type Interface struct {
	Daemon   string   `yaml:"daemon" json:"daemon"`
	Port     int      `yaml:"port" json:"port"`
	Protocol string   `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Expose   []string `yaml:"expose,omitempty" json:"expose,omitempty"`
}

// Action is a command a user can run on demand.
type Action struct {
	Image   string               `yaml:"image" json:"image"`
	Command []string             `yaml:"command" json:"command"`
	Input   map[string]yaml.Node `yaml:"input,omitempty" json:"-"`
}

// Duration is a time.Duration written as "1s", "500ms".
type Duration time.Duration

// UnmarshalYAML reads "1s" or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("write a duration such as 1s or 500ms")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("duration %q: write it such as 1s or 500ms", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration, or def when zero.
func (d Duration) D(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Parse reads a manifest and validates it.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("manifest is %d bytes; at most %d", len(data), MaxSize)
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %s", cleanYAMLError(err))
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	s = strings.TrimSpace(strings.ReplaceAll(s, " in type manifest.", " in "))
	return s
}
