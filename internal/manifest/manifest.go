// Package manifest reads a package manifest: the images a package holds, its volumes and
// limits, the daemons and one-shot jobs guestd runs, and the interfaces it offers. Load
// refuses unknown fields, unknown names, cycles and impossible settings with messages that
// name the field ("daemons.app.requires[0]: ...").
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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
	// Dependencies are the other packages this one uses (see dependencies.go).
	Dependencies map[string]Dependency `yaml:"dependencies,omitempty" json:"dependencies,omitempty"`
	// AllowDowngrade lets an older version of the package replace this one.
	AllowDowngrade bool `yaml:"allow_downgrade,omitempty" json:"allow_downgrade,omitempty"`
}

// Image says where one of the package's images comes from.
type Image struct {
	// OCI is where a package's image comes from. In the directory given to hearthctl
	// pack, it is the path (relative to that directory) of an OCI layout, an OCI
	// archive, a docker save archive or a root file system tarball; in a .hpkg, the
	// image is the entry of images/index.json annotated with its name (see docs/hpkg.md).
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
	Volume string `yaml:"volume" json:"volume"`
	Path   string `yaml:"path" json:"path"`
	// File, when given, is a file inside the volume (a relative path) bound at Path instead
	// of the whole volume: Path is then a file (made empty first when the image lacks it).
	// The volume itself is bound at /.hearth-volumes/<volume> beside it. Not for actions.
	File     string `yaml:"file,omitempty" json:"file,omitempty"`
	ReadOnly bool   `yaml:"read_only,omitempty" json:"read_only,omitempty"`
}

// Check is a ready and health check: one of TCP, HTTP or Exec.
type Check struct {
	TCP  int        `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	HTTP *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	// Exec runs in the daemon's subcontainer, as its user; exit status 0 passes.
	Exec []string `yaml:"exec,omitempty" json:"exec,omitempty"`
	// Interval between the checks of a daemon that was ready once (default 10s; until
	// then, checks come within milliseconds and then at least every second), Timeout of
	// one check (default 2s), Grace a starting daemon has before failed checks count
	// (default 30s), Retries failed checks in a row that make a ready daemon failing
	// (default 3).
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

// Duration is a time.Duration written as "1s", "500ms".
type Duration time.Duration

// UnmarshalYAML reads "1s" or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d:%d: write a duration such as 1s or 500ms", n.Line, n.Column)}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d:%d: duration %q: write it such as 1s or 500ms", n.Line, n.Column, n.Value)}}
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

// Parse reads a manifest.yaml and validates it. Its errors say where: a problem of a
// field that the file has gives the file, line and column ("manifest.yaml:12:5:
// daemons.app.image: unknown image ..."), a YAML error its line.
func Parse(data []byte) (*Manifest, error) { return ParseFile("manifest.yaml", data) }

// ParseFile is Parse for a manifest read from name (the name its errors give).
func ParseFile(name string, data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s: manifest is %d bytes; at most %d", name, len(data), MaxSize)
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, yamlProblems(name, err)
	}
	if err := m.Validate(); err != nil {
		var ps Problems
		if !errors.As(err, &ps) {
			return nil, err
		}
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) != nil {
			return nil, err
		}
		out := make(Problems, len(ps))
		for i, p := range ps {
			field, _, _ := strings.Cut(p, ": ")
			if line, col := locate(&doc, field); line > 0 {
				p = fmt.Sprintf("%s:%d:%d: %s", name, line, col, p)
			}
			out[i] = p
		}
		return nil, out
	}
	return &m, nil
}

// Position returns the line and column of a field ("daemons.app.image",
// "images.db.oci", "daemons.a.mounts[0].path") in a manifest's text, or of the nearest
// enclosing field it has; 0, 0 when the text has none of it.
func Position(data []byte, field string) (line, col int) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return 0, 0
	}
	return locate(&doc, field)
}

// locate walks a field path down the document: map keys (the longest key that
// matches, since names may hold '.') and [i] indexes. A scalar value is placed where
// the value is, anything else where its key is.
func locate(doc *yaml.Node, field string) (line, col int) {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return 0, 0
		}
		n = n.Content[0]
	}
	rest := field
	var at *yaml.Node
	for rest != "" && n != nil {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
			continue
		}
		switch n.Kind {
		case yaml.MappingNode:
			var key, val *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if (rest == k || strings.HasPrefix(rest, k+".") || strings.HasPrefix(rest, k+"[")) && (key == nil || len(k) > len(key.Value)) {
					key, val = n.Content[i], n.Content[i+1]
				}
			}
			if key == nil {
				return pos(at)
			}
			rest = strings.TrimPrefix(rest[len(key.Value):], ".")
			at, n = key, val
			if val.Kind == yaml.ScalarNode {
				at = val
			}
		case yaml.SequenceNode:
			i, tail, ok := cutIndex(rest)
			if !ok || i >= len(n.Content) {
				return pos(at)
			}
			rest, n = tail, n.Content[i]
			at = n
		default:
			return pos(at)
		}
	}
	return pos(at)
}

func pos(n *yaml.Node) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Line, n.Column
}

// cutIndex reads "[i]" at the start of s and returns i and what follows (without a '.').
func cutIndex(s string) (int, string, bool) {
	if !strings.HasPrefix(s, "[") {
		return 0, "", false
	}
	j := strings.IndexByte(s, ']')
	if j < 0 {
		return 0, "", false
	}
	i, err := strconv.Atoi(s[1:j])
	if err != nil || i < 0 {
		return 0, "", false
	}
	return i, strings.TrimPrefix(s[j+1:], "."), true
}

var yamlLineRE = regexp.MustCompile(`^line (\d+)(:\d+)?: (.*)$`)

// yamlProblems turns a YAML error into Problems placed at their lines.
func yamlProblems(name string, err error) error {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n")
	var out Problems
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(strings.ReplaceAll(l, " in type manifest.", " in "))
		if l == "" {
			continue
		}
		if m := yamlLineRE.FindStringSubmatch(l); m != nil {
			l = name + ":" + m[1] + m[2] + ": " + m[3]
		} else {
			l = name + ": " + l
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return fmt.Errorf("%s: %w", name, err)
	}
	return out
}
