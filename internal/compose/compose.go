// Package compose turns a compose project (the Compose Specification's YAML: services,
// volumes, x-* blocks, anchors and merge keys, ${VAR} interpolation) into a Hearth
// manifest. What maps is converted (docs/compose.md has the table); what cannot map is
// refused, each problem naming the file, line, column, service and key; what is dropped
// because one package has no use for it is warned about, named the same way.
package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/manifest"
)

// Options of a conversion.
type Options struct {
	// File is the compose file's name in messages.
	File string
	// Dir is the project directory: relative binds and env_file paths resolve against it.
	Dir string
	// Env holds the variables for ${VAR} interpolation and for environment entries that
	// give no value (the process environment over the --env-file's, as compose does).
	Env map[string]string
	// ID and Version of the package; by default the project's name (or directory) and 1.0.0.
	ID, Version string
}

// Seed is a package volume filled at install from a directory of the project: Source is
// copied into the package at assets/seed/<Volume>/ and an install hook copies it into the
// volume.
type Seed struct {
	Volume string
	Source string
	// File is set when Source is a file: the name it has in the volume.
	File string
}

// Result of a conversion.
type Result struct {
	Manifest *manifest.Manifest
	// Images maps each manifest image name to the image reference the compose file gives.
	Images map[string]string
	// Seeds are the volumes filled from the project's directories, by volume name.
	Seeds    []Seed
	Warnings []Problem
}

// Problem is one refusal or warning, placed where the compose file says it.
type Problem struct {
	File      string
	Line, Col int
	// Field is the key's path, such as services.app.privileged.
	Field string
	Msg   string
}

func (p Problem) String() string {
	at := p.File
	if p.Line > 0 {
		at = fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
	if p.Field == "" {
		return at + ": " + p.Msg
	}
	return at + ": " + p.Field + ": " + p.Msg
}

func (p Problem) Error() string { return p.String() }

// Refused is every reason a compose project cannot become a package.
type Refused []Problem

func (r Refused) Error() string {
	if len(r) == 1 {
		return r[0].String()
	}
	s := make([]string, len(r))
	for i, p := range r {
		s[i] = p.String()
	}
	return fmt.Sprintf("the compose project cannot become a package (%d problems):\n  %s", len(r), strings.Join(s, "\n  "))
}

// SeedHookPath is where the install hook that seeds volumes mounts each one (/hearth-seed/<volume>).
const SeedHookPath = "/hearth-seed"

// AssetsSeedDir is the directory of the package's assets holding each seeded volume's files.
const AssetsSeedDir = "seed"

// httpPorts are container ports taken to speak HTTP unless a label says otherwise.
var httpPorts = []int{80, 3000, 5000, 8000, 8008, 8080, 8081, 8888}

// Labels that steer the conversion (docs/compose.md).
const (
	LabelHTTP      = "hearth.http"       // "true", "false", or the ports that speak HTTP: "80,8080"
	LabelExpose    = "hearth.expose"     // where interfaces are offered: "lan,tor,domain" (default lan)
	LabelInterface = "hearth.interface." // hearth.interface.NAME: "PORT[/http|/tcp]"
	LabelOneshot   = "hearth.oneshot"    // "true": the service runs once, as a oneshot
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	envRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Convert reads a compose file's data and returns the package it becomes, or Refused.
func Convert(data []byte, opt Options) (*Result, error) {
	if opt.File == "" {
		opt.File = "compose.yaml"
	}
	root, err := parse(opt.File, data, opt.Env)
	if err != nil {
		var p Problem
		if !errors.As(err, &p) {
			p = Problem{File: opt.File, Msg: err.Error()}
		}
		return nil, Refused{p}
	}
	c := &conv{opt: opt, refs: map[string]string{}, keys: map[string]string{}, vols: map[string]string{},
		volNames: map[string]bool{}, seeds: map[string]string{}, seedFiles: map[string]string{}, ports: map[int]portUse{}}
	c.res = &Result{Images: map[string]string{}}
	c.m = &manifest.Manifest{Images: map[string]manifest.Image{}, Daemons: map[string]*manifest.Daemon{}}
	c.project(root)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	if err := c.m.Validate(); err != nil {
		var ps manifest.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				// Place a daemon's problem at its service.
				pr := Problem{File: opt.File, Msg: "the manifest it makes: " + p}
				for _, group := range []string{"daemons.", "oneshots."} {
					if rest, ok := strings.CutPrefix(p, group); ok {
						job, _, _ := strings.Cut(rest, ":")
						job, _, _ = strings.Cut(job, ".")
						if k := c.jobKeys[job]; k != nil {
							pr.Line, pr.Col = k.Line, k.Column
						}
					}
				}
				c.errs = append(c.errs, pr)
			}
			return nil, c.errs
		}
		return nil, err
	}
	c.res.Manifest = c.m
	c.res.Warnings = c.warns
	return c.res, nil
}

type portUse struct {
	service string
	node    *yaml.Node
}

type conv struct {
	opt   Options
	m     *manifest.Manifest
	res   *Result
	errs  Refused
	warns []Problem

	refs      map[string]string // image reference → image name
	keys      map[string]string // image name → reference
	vols      map[string]string // compose volume name → manifest volume
	volNames  map[string]bool   // manifest volume names taken
	seeds     map[string]string // relative bind source (cleaned) → manifest volume
	seedFiles map[string]string // relative bind source of a file → its name in the volume
	ports     map[int]portUse

	services map[string]*yaml.Node
	names    map[string]string     // compose service name → job name
	jobKeys  map[string]*yaml.Node // job name → its service's key
	oneshot  map[string]bool
}

func (c *conv) problem(n *yaml.Node, field, format string, a ...any) Problem {
	p := Problem{File: c.opt.File, Field: field, Msg: fmt.Sprintf(format, a...)}
	if n != nil {
		p.Line, p.Col = n.Line, n.Column
	}
	return p
}

func (c *conv) refuse(n *yaml.Node, field, format string, a ...any) {
	c.errs = append(c.errs, c.problem(n, field, format, a...))
}

func (c *conv) warn(n *yaml.Node, field, format string, a ...any) {
	c.warns = append(c.warns, c.problem(n, field, format, a...))
}

// pairs returns a mapping's keys and values; nil for another node.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func isNull(n *yaml.Node) bool { return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (c *conv) scalar(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		c.refuse(n, field, "want a single value")
		return "", false
	}
	return n.Value, true
}

func (c *conv) boolean(n *yaml.Node, field string) bool {
	s, ok := c.scalar(n, field)
	if !ok {
		return false
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true
	case "false", "no", "off":
		return false
	}
	c.refuse(n, field, "%q: want true or false", s)
	return false
}

// strings reads a string or a list of strings.
func (c *conv) strList(n *yaml.Node, field string) []string {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		c.refuse(n, field, "want a value or a list of values")
		return nil
	}
	out := []string{}
	for i, e := range n.Content {
		if s, ok := c.scalar(e, fmt.Sprintf("%s[%d]", field, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// command reads a command: a string (split as a shell splits words) or a list.
func (c *conv) command(n *yaml.Node, field string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		words, err := ShellSplit(n.Value)
		if err != nil {
			c.refuse(n, field, "%v", err)
		}
		return words
	}
	return c.strList(n, field)
}

func (c *conv) duration(n *yaml.Node, field string) manifest.Duration {
	s, ok := c.scalar(n, field)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		c.refuse(n, field, "%q: write a duration such as 10s or 1m30s", s)
		return 0
	}
	return manifest.Duration(d)
}

// sanitize makes a manifest name of s: lower case, other characters as '-'.
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '.' || ch == '-') {
			b[i] = '-'
		}
	}
	out := strings.TrimLeft(string(b), "-_.")
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

var projectKeys = []string{"name", "services", "volumes", "networks", "version"}

func (c *conv) project(root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		c.refuse(root, "", "a compose file is a mapping with services")
		return
	}
	var services, volumes *yaml.Node
	name := ""
	for _, kv := range pairs(root) {
		k, v := kv[0], kv[1]
		switch key := k.Value; {
		case strings.HasPrefix(key, "x-"):
			// extension blocks: used through anchors, nothing of their own
		case key == "services":
			services = v
		case key == "volumes":
			volumes = v
		case key == "name":
			name, _ = c.scalar(v, key)
		case key == "version":
			c.warn(k, key, "obsolete; ignored")
		case key == "networks":
			c.warn(k, key, "dropped: a package's services share one network (each service's name resolves to 127.0.0.1)")
		case key == "secrets" || key == "configs":
			c.refuse(k, key, "not supported: put the files in a directory and bind it with a relative path (./dir:/path), which becomes a seeded volume")
		case key == "include":
			c.refuse(k, key, "not supported: merge the included files into one compose file")
		default:
			c.refuse(k, key, "unknown key (known: %s and x-* extensions)", strings.Join(projectKeys, ", "))
		}
	}
	if services == nil || len(pairs(services)) == 0 {
		c.refuse(root, "services", "missing: a compose project needs at least one service")
		return
	}
	c.m.ID = c.opt.ID
	if c.m.ID == "" {
		if name == "" {
			name = filepath.Base(c.opt.Dir)
		}
		c.m.ID = strings.Trim(strings.NewReplacer("_", "-", ".", "-").Replace(sanitize(name)), "-")
		if len(c.m.ID) > 32 {
			c.m.ID = strings.Trim(c.m.ID[:32], "-")
		}
	}
	c.m.Version = c.opt.Version
	if c.m.Version == "" {
		c.m.Version = "1.0.0"
	}
	c.topVolumes(volumes)
	c.collect(services)
	for _, kv := range pairs(services) {
		c.service(kv[0].Value, kv[0], kv[1])
	}
	c.limits(services)
	c.seedHook()
	if len(c.m.Oneshots) == 0 {
		c.m.Oneshots = nil
	}
	if len(c.m.Interfaces) == 0 {
		c.m.Interfaces = nil
	}
}

func (c *conv) volumeName(want string) string {
	base := sanitize(want)
	if base == "" {
		base = "data"
	}
	n := base
	for i := 2; c.volNames[n]; i++ {
		n = fmt.Sprintf("%s-%d", base, i)
	}
	c.volNames[n] = true
	c.m.Volumes = append(c.m.Volumes, n)
	return n
}

func (c *conv) topVolumes(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.refuse(n, "volumes", "want a mapping of volume names")
		return
	}
	for _, kv := range pairs(n) {
		name, f := kv[0].Value, "volumes."+kv[0].Value
		c.vols[name] = c.volumeName(name)
		for _, o := range pairs(kv[1]) {
			switch k := o[0].Value; k {
			case "external":
				if c.boolean(o[1], f+".external") {
					c.warn(o[0], f+".external", "becomes a volume of this package, which starts empty: a package cannot use another's volume")
				}
			case "driver", "driver_opts", "labels", "name":
				c.warn(o[0], f+"."+k, "dropped: a package's volumes live on its own disk")
			default:
				if !strings.HasPrefix(k, "x-") {
					c.refuse(o[0], f+"."+k, "unknown key of a volume")
				}
			}
		}
	}
}

// collect reads the service names and decides which services run once.
func (c *conv) collect(services *yaml.Node) {
	c.services = map[string]*yaml.Node{}
	c.names = map[string]string{}
	c.jobKeys = map[string]*yaml.Node{}
	c.oneshot = map[string]bool{}
	jobs := map[string]string{}
	for _, kv := range pairs(services) {
		svc := kv[0].Value
		c.services[svc] = kv[1]
		job := sanitize(svc)
		if job != strings.ToLower(svc) || !nameRE.MatchString(job) {
			c.refuse(kv[0], "services."+svc, "the name must be lower-case letters, digits, '.', '_' and '-' (it names the daemon and resolves to 127.0.0.1)")
			continue
		}
		if other, ok := jobs[job]; ok {
			c.refuse(kv[0], "services."+svc, "the same daemon name as service %q once in lower case", other)
		}
		if job != svc {
			c.warn(kv[0], "services."+svc, "becomes daemon %q (names are lower case)", job)
		}
		jobs[job] = svc
		c.names[svc] = job
		c.jobKeys[job] = kv[0]
		if kv[1].Kind != yaml.MappingNode {
			c.refuse(kv[1], "services."+svc, "want a mapping")
			continue
		}
		if v := labels(kv[1])[LabelOneshot]; v == "true" {
			c.oneshot[svc] = true
		}
		for _, d := range c.dependsOn(svc, kv[1], false) {
			if d.cond == "service_completed_successfully" {
				c.oneshot[d.name] = true
			}
		}
	}
}

type dep struct {
	name, cond string
	node       *yaml.Node
}

func field(svc *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	for _, kv := range pairs(svc) {
		if kv[0].Value == key {
			return kv[0], kv[1]
		}
	}
	return nil, nil
}

// labels reads a service's labels (a mapping or a KEY=VALUE list), quietly.
func labels(svc *yaml.Node) map[string]string {
	out := map[string]string{}
	_, n := field(svc, "labels")
	switch {
	case n == nil:
	case n.Kind == yaml.MappingNode:
		for _, kv := range pairs(n) {
			out[kv[0].Value] = kv[1].Value
		}
	case n.Kind == yaml.SequenceNode:
		for _, e := range n.Content {
			k, v, _ := strings.Cut(e.Value, "=")
			out[k] = v
		}
	}
	return out
}

// dependsOn reads depends_on: a list of names or a mapping of name to {condition}.
func (c *conv) dependsOn(svc string, node *yaml.Node, report bool) []dep {
	_, n := field(node, "depends_on")
	if n == nil {
		return nil
	}
	f := "services." + svc + ".depends_on"
	bad := func(at *yaml.Node, field, format string, a ...any) {
		if report {
			c.refuse(at, field, format, a...)
		}
	}
	var out []dep
	switch n.Kind {
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				bad(e, fmt.Sprintf("%s[%d]", f, i), "want a service name")
				continue
			}
			out = append(out, dep{name: e.Value, cond: "service_started", node: e})
		}
	case yaml.MappingNode:
		for _, kv := range pairs(n) {
			d := dep{name: kv[0].Value, cond: "service_started", node: kv[0]}
			for _, o := range pairs(kv[1]) {
				switch o[0].Value {
				case "condition":
					d.cond = o[1].Value
					switch d.cond {
					case "service_started", "service_healthy", "service_completed_successfully":
					default:
						bad(o[1], f+"."+d.name+".condition", "%q: use service_started, service_healthy or service_completed_successfully", d.cond)
					}
				case "restart", "required":
					if report {
						c.warn(o[0], f+"."+d.name+"."+o[0].Value, "dropped: the package starts and stops its services together")
					}
				default:
					bad(o[0], f+"."+d.name+"."+o[0].Value, "unknown key (use condition)")
				}
			}
			out = append(out, d)
		}
	default:
		bad(n, f, "want a list of services or a mapping of service to condition")
	}
	return out
}

// Keys of a service: mapped, refused, or dropped with a warning.
var (
	refusedKeys = map[string]string{
		"privileged":          "a package runs unprivileged",
		"devices":             "a package has no host devices",
		"cap_add":             "a package cannot gain capabilities",
		"security_opt":        "a package's confinement is fixed",
		"secrets":             "put the files in a directory and bind it with a relative path (./dir:/path), which becomes a seeded volume",
		"configs":             "put the files in a directory and bind it with a relative path (./dir:/path), which becomes a seeded volume",
		"volumes_from":        "mount the same named volumes in both services instead",
		"extends":             "write the service out, or share its keys with an x- block and a YAML anchor",
		"device_cgroup_rules": "a package has no host devices",
		"gpus":                "a package has no host devices",
		"runtime":             "every service runs in the package's own container",
		"userns_mode":         "a package has its own user namespace",
		"cgroup":              "a package has its own cgroup",
	}
	droppedKeys = map[string]string{
		"container_name":   "the package has one container, named after its id",
		"hostname":         "the package's services share one host name",
		"domainname":       "the package's services share one host name",
		"networks":         "a package's services share one network (each service's name resolves to 127.0.0.1)",
		"links":            "a package's services share one network: a link's alias does not resolve, the service name does",
		"external_links":   "a package reaches other packages through their interfaces",
		"extra_hosts":      "the package's hosts file names its services",
		"dns":              "the host's resolver serves the package",
		"dns_search":       "the host's resolver serves the package",
		"dns_opt":          "the host's resolver serves the package",
		"mac_address":      "the package has one network interface",
		"logging":          "Hearth keeps each daemon's log (hearthctl logs)",
		"stdin_open":       "daemons have no terminal",
		"tty":              "daemons have no terminal",
		"init":             "guestd reaps every daemon's children",
		"platform":         "images are taken for the packing host's platform",
		"pull_policy":      "images are packed into the package",
		"profiles":         "every service of the file is packaged",
		"ulimits":          "the package's limits bound it",
		"sysctls":          "a package cannot set kernel parameters",
		"shm_size":         "the package's /dev/shm is bounded by the host",
		"tmpfs":            "the service's writable layer holds the path",
		"cap_drop":         "a package holds few capabilities already",
		"read_only":        "each daemon has its own writable layer",
		"oom_score_adj":    "the package's memory limit bounds it",
		"oom_kill_disable": "the package's memory limit bounds it",
		"group_add":        "give the user with its group instead",
		"cpu_shares":       "the package's limits bound it (give deploy.resources.limits.cpus)",
		"cpu_quota":        "the package's limits bound it (give deploy.resources.limits.cpus)",
		"cpu_period":       "the package's limits bound it (give deploy.resources.limits.cpus)",
		"cpuset":           "the package's limits bound it",
		"mem_reservation":  "only limits map",
		"memswap_limit":    "only limits map",
		"mem_swappiness":   "only limits map",
		"blkio_config":     "the package's disk bounds it",
		"storage_opt":      "the package's disk bounds it",
		"isolation":        "every service runs in the package's own container",
		"cgroup_parent":    "a package has its own cgroup",
		"annotations":      "nothing reads them",
		"attach":           "Hearth keeps each daemon's log (hearthctl logs)",
		"develop":          "a package is not rebuilt from source",
		"scale":            "a service runs once in its package",
	}
)

func (c *conv) imageName(ref string) string {
	if n, ok := c.refs[ref]; ok {
		return n
	}
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	tag := ""
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	base := sanitize(path.Base(repo))
	if base == "" {
		base = "image"
	}
	n := base
	if _, taken := c.keys[n]; taken && tag != "" {
		n = sanitize(base + "-" + tag)
	}
	for i := 2; ; i++ {
		if _, taken := c.keys[n]; !taken {
			break
		}
		n = fmt.Sprintf("%s-%d", base, i)
	}
	c.refs[ref], c.keys[n] = n, ref
	c.m.Images[n] = manifest.Image{OCI: "images/" + n}
	c.res.Images[n] = ref
	return n
}

func (c *conv) service(svc string, keyNode, node *yaml.Node) {
	job, ok := c.names[svc]
	if !ok || node.Kind != yaml.MappingNode {
		return
	}
	f := "services." + svc
	d := &manifest.Daemon{}
	once := c.oneshot[svc]
	var image, build, health, healthKey, restartNode *yaml.Node
	lbl := labels(node)
	var envFiles, envNode *yaml.Node
	var published []publish
	for _, kv := range pairs(node) {
		k, v := kv[0], kv[1]
		key := k.Value
		kf := f + "." + key
		if why, refused := refusedKeys[key]; refused {
			switch key {
			case "privileged":
				if !c.boolean(v, kf) {
					continue
				}
			case "devices", "cap_add", "security_opt", "secrets", "configs", "volumes_from", "device_cgroup_rules":
				if v.Kind == yaml.SequenceNode && len(v.Content) == 0 || isNull(v) {
					continue
				}
			}
			c.refuse(k, kf, "cannot map: %s", why)
			continue
		}
		if why, dropped := droppedKeys[key]; dropped && why != "" {
			if key == "scale" {
				if n, err := strconv.Atoi(v.Value); err == nil && n <= 1 {
					continue
				}
				c.refuse(k, kf, "cannot map: %s", why)
				continue
			}
			c.warn(k, kf, "dropped: %s", why)
			continue
		}
		switch {
		case strings.HasPrefix(key, "x-"):
		case key == "image":
			image = v
		case key == "build":
			build = k
		case key == "command":
			d.Args = c.command(v, kf)
		case key == "entrypoint":
			d.Command = c.command(v, kf)
		case key == "environment":
			envNode = v
		case key == "env_file":
			envFiles = v
		case key == "user":
			d.User, _ = c.scalar(v, kf)
		case key == "working_dir":
			d.Workdir, _ = c.scalar(v, kf)
		case key == "healthcheck":
			health, healthKey = v, k
		case key == "depends_on":
			for _, dp := range c.dependsOn(svc, node, true) {
				target, ok := c.names[dp.name]
				if _, known := c.services[dp.name]; !known || !ok {
					c.refuse(dp.node, kf+"."+dp.name, "unknown service %q", dp.name)
					continue
				}
				if dp.cond == "service_healthy" {
					if _, hc := field(c.services[dp.name], "healthcheck"); hc == nil {
						c.refuse(dp.node, kf+"."+dp.name, "waits for service %q to be healthy, but it has no healthcheck (the image's own HEALTHCHECK is not read: give one in the compose file)", dp.name)
						continue
					}
				}
				if !slices.Contains(d.Requires, target) {
					d.Requires = append(d.Requires, target)
				}
			}
		case key == "restart":
			restartNode = v
		case key == "ports":
			published = c.portsOf(svc, v, kf)
		case key == "expose":
			for i, p := range c.strList(v, kf) {
				port, _, err := parsePort(p)
				if err != nil {
					c.refuse(v.Content[min(i, len(v.Content)-1)], kf, "%v", err)
					continue
				}
				c.usePort(svc, port, v)
				if !slices.Contains(d.Ports, port) {
					d.Ports = append(d.Ports, port)
				}
			}
		case key == "volumes":
			c.mounts(svc, d, v, kf)
		case key == "labels":
			for _, kv := range pairs(v) {
				if !strings.HasPrefix(kv[0].Value, "hearth.") {
					c.warn(k, kf, "dropped: labels other than hearth.* (docs/compose.md)")
					break
				}
			}
			if v.Kind == yaml.SequenceNode {
				for _, e := range v.Content {
					if !strings.HasPrefix(e.Value, "hearth.") {
						c.warn(k, kf, "dropped: labels other than hearth.* (docs/compose.md)")
						break
					}
				}
			}
			c.checkLabels(svc, lbl, k)
		case key == "deploy":
			c.deploy(svc, v, kf, &restartNode)
		case key == "mem_limit" || key == "cpus" || key == "pids_limit":
			// summed into the package's limits (limits)
		case key == "stop_signal":
			s, _ := c.scalar(v, kf)
			if _, err := manifest.ParseSignal(s); err != nil {
				c.refuse(v, kf, "%v", err)
			}
			d.Stop.Signal = s
		case key == "stop_grace_period":
			d.Stop.Timeout = c.duration(v, kf)
		case key == "network_mode":
			switch s := v.Value; {
			case s == "host":
				c.refuse(v, kf, "cannot map: host networking; a package has its own network (publish the ports under ports instead)")
			case s == "none":
				c.refuse(v, kf, "cannot map: a package's services share one network")
			default:
				c.warn(k, kf, "dropped: a package's services share one network already")
			}
		case key == "pid" || key == "ipc" || key == "uts":
			if v.Value == "host" {
				c.refuse(v, kf, "cannot map: a package has its own namespaces")
			} else {
				c.warn(k, kf, "dropped: a package's services share the package's namespaces")
			}
		default:
			c.refuse(k, kf, "unknown key of a service")
		}
	}
	switch {
	case image == nil && build != nil:
		c.refuse(build, f+".build", "cannot map: a package carries built images; build it, push or save it, and give image:")
	case image == nil:
		c.refuse(keyNode, f, "no image: give image:")
	default:
		if build != nil {
			c.warn(build, f+".build", "not built: the package uses image %s", image.Value)
		}
		if ref, ok := c.scalar(image, f+".image"); ok && ref != "" {
			d.Image = c.imageName(ref)
		}
	}
	d.Env = c.environment(svc, envFiles, envNode)
	if restartNode != nil {
		c.restart(d, restartNode, f+".restart", once)
	}
	if health != nil {
		d.Ready = c.healthcheck(health, f+".healthcheck")
		if once && d.Ready != nil {
			c.warn(healthKey, f+".healthcheck", "dropped: %s runs once; it is done when it exits 0", svc)
			d.Ready = nil
		}
	}
	for _, p := range published {
		if !slices.Contains(d.Ports, p.port) {
			d.Ports = append(d.Ports, p.port)
		}
	}
	c.interfaces(svc, job, published, lbl, keyNode, once)
	slices.Sort(d.Ports)
	if once {
		if c.m.Oneshots == nil {
			c.m.Oneshots = map[string]*manifest.Daemon{}
		}
		d.Restart = manifest.Restart{}
		c.m.Oneshots[job] = d
	} else {
		c.m.Daemons[job] = d
	}
}

func (c *conv) checkLabels(svc string, lbl map[string]string, at *yaml.Node) {
	f := "services." + svc + ".labels"
	for _, k := range slices.Sorted(maps.Keys(lbl)) {
		v := lbl[k]
		switch {
		case !strings.HasPrefix(k, "hearth."):
		case k == LabelHTTP, k == LabelExpose, k == LabelOneshot:
			if k == LabelOneshot && v != "true" && v != "false" {
				c.refuse(at, f+"."+k, "%q: use true or false", v)
			}
		case strings.HasPrefix(k, LabelInterface):
		default:
			c.refuse(at, f+"."+k, "unknown Hearth label (use %s, %s, %s or %sNAME)", LabelHTTP, LabelExpose, LabelOneshot, LabelInterface)
		}
	}
}

func (c *conv) environment(svc string, files, env *yaml.Node) map[string]string {
	out := map[string]string{}
	f := "services." + svc
	if files != nil {
		var list []*yaml.Node
		if files.Kind == yaml.SequenceNode {
			list = files.Content
		} else {
			list = []*yaml.Node{files}
		}
		for i, e := range list {
			ef := fmt.Sprintf("%s.env_file[%d]", f, i)
			p, required := "", true
			if e.Kind == yaml.MappingNode {
				for _, kv := range pairs(e) {
					switch kv[0].Value {
					case "path":
						p = kv[1].Value
					case "required":
						required = c.boolean(kv[1], ef+".required")
					case "format":
					default:
						c.refuse(kv[0], ef+"."+kv[0].Value, "unknown key (use path, required)")
					}
				}
			} else {
				p, _ = c.scalar(e, ef)
			}
			if p == "" {
				continue
			}
			if !filepath.IsAbs(p) {
				p = filepath.Join(c.opt.Dir, p)
			}
			vars, err := ReadEnvFile(p)
			if errors.Is(err, fs.ErrNotExist) && !required {
				continue
			}
			if err != nil {
				c.refuse(e, ef, "%v", err)
				continue
			}
			for k, v := range vars {
				if iv, err := interpolate(v, c.opt.Env); err == nil {
					v = iv
				}
				out[k] = v
			}
		}
	}
	switch {
	case env == nil:
	case env.Kind == yaml.MappingNode:
		for _, kv := range pairs(env) {
			if isNull(kv[1]) {
				if v, ok := c.opt.Env[kv[0].Value]; ok {
					out[kv[0].Value] = v
				}
				continue
			}
			out[kv[0].Value], _ = c.scalar(kv[1], f+".environment."+kv[0].Value)
		}
	case env.Kind == yaml.SequenceNode:
		for i, e := range env.Content {
			s, ok := c.scalar(e, fmt.Sprintf("%s.environment[%d]", f, i))
			if !ok {
				continue
			}
			k, v, has := strings.Cut(s, "=")
			if !has {
				if ev, ok := c.opt.Env[k]; ok {
					out[k] = ev
				}
				continue
			}
			out[k] = v
		}
	default:
		c.refuse(env, f+".environment", "want a mapping or a list of KEY=VALUE")
	}
	for _, k := range slices.Sorted(maps.Keys(out)) {
		if !envRE.MatchString(k) {
			at := env
			if at == nil {
				at = files
			}
			c.refuse(at, f+".environment."+k, "not a variable name a process can take (letters, digits and _, not starting with a digit)")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (c *conv) restart(d *manifest.Daemon, n *yaml.Node, f string, once bool) {
	s, ok := c.scalar(n, f)
	if !ok {
		return
	}
	policy := ""
	switch {
	case s == "no" || s == "none":
		policy = "never"
	case s == "always" || s == "unless-stopped" || s == "any":
		policy = "always"
	case s == "on-failure" || strings.HasPrefix(s, "on-failure:"):
		policy = "on-failure"
		if s != "on-failure" {
			c.warn(n, f, "the retry count is dropped: a failing daemon is restarted with backoff, without a count")
		}
	default:
		c.refuse(n, f, "%q: use no, always, unless-stopped or on-failure", s)
		return
	}
	if once {
		return // a oneshot runs once whatever its restart says
	}
	d.Restart.Policy = policy
}

func (c *conv) healthcheck(n *yaml.Node, f string) *manifest.Check {
	if n.Kind != yaml.MappingNode {
		c.refuse(n, f, "want a mapping with test")
		return nil
	}
	r := &manifest.Check{}
	for _, kv := range pairs(n) {
		k, v := kv[0], kv[1]
		kf := f + "." + k.Value
		switch k.Value {
		case "test":
			if v.Kind == yaml.ScalarNode {
				r.Exec = []string{"/bin/sh", "-c", v.Value}
				continue
			}
			t := c.strList(v, kf)
			switch {
			case len(t) == 0:
				c.refuse(v, kf, "empty")
			case t[0] == "NONE":
				return nil
			case t[0] == "CMD" && len(t) > 1:
				r.Exec = t[1:]
			case t[0] == "CMD-SHELL" && len(t) > 1:
				r.Exec = []string{"/bin/sh", "-c", strings.Join(t[1:], " ")}
			default:
				c.refuse(v, kf, "start the list with CMD, CMD-SHELL or NONE, followed by the command")
			}
		case "interval":
			r.Interval = c.duration(v, kf)
		case "timeout":
			r.Timeout = c.duration(v, kf)
		case "start_period":
			r.Grace = c.duration(v, kf)
		case "retries":
			s, _ := c.scalar(v, kf)
			if r.Retries, _ = strconv.Atoi(s); r.Retries < 0 || strconv.Itoa(r.Retries) != s {
				c.refuse(v, kf, "%q: want a count", s)
			}
		case "start_interval":
			c.warn(k, kf, "dropped: the first check comes within 100ms, then one each interval")
		case "disable":
			if c.boolean(v, kf) {
				return nil
			}
		default:
			c.refuse(k, kf, "unknown key of a healthcheck")
		}
	}
	if len(r.Exec) == 0 {
		c.refuse(n, f, "no test: give test (the image's own HEALTHCHECK is not read)")
		return nil
	}
	return r
}

// publish is one published port of a service.
type publish struct {
	port    int
	local   bool // published on a loopback address only
	udp     bool
	name    string
	appHTTP bool
	node    *yaml.Node
}

// parsePort reads "80", "80/tcp": a container port.
func parsePort(s string) (int, string, error) {
	p, proto, _ := strings.Cut(s, "/")
	if proto == "" {
		proto = "tcp"
	}
	if strings.Contains(p, "-") {
		return 0, "", fmt.Errorf("%q: port ranges are not supported: list the ports", s)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, "", fmt.Errorf("%q is not a port (1 to 65535)", s)
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return 0, "", fmt.Errorf("%q: unknown protocol %q", s, proto)
	}
	return n, proto, nil
}

func (c *conv) usePort(svc string, port int, at *yaml.Node) {
	if u, ok := c.ports[port]; ok && u.service != svc {
		c.refuse(at, "services."+svc+".ports", "port %d is also used by service %q (%s:%d:%d): the package's services share one network, so each port has one owner; change one service's port",
			port, u.service, c.opt.File, u.node.Line, u.node.Column)
		return
	}
	c.ports[port] = portUse{service: svc, node: at}
}

func (c *conv) portsOf(svc string, n *yaml.Node, f string) []publish {
	if n.Kind != yaml.SequenceNode {
		c.refuse(n, f, "want a list of ports")
		return nil
	}
	var out []publish
	for i, e := range n.Content {
		ef := fmt.Sprintf("%s[%d]", f, i)
		p := publish{node: e}
		proto := "tcp"
		if e.Kind == yaml.MappingNode {
			for _, kv := range pairs(e) {
				switch kv[0].Value {
				case "target":
					v, _ := c.scalar(kv[1], ef+".target")
					port, _, err := parsePort(v)
					if err != nil {
						c.refuse(kv[1], ef+".target", "%v", err)
					}
					p.port = port
				case "protocol":
					proto = kv[1].Value
				case "host_ip":
					p.local = isLoopback(kv[1].Value)
				case "name":
					p.name = kv[1].Value
				case "app_protocol":
					p.appHTTP = strings.HasPrefix(strings.ToLower(kv[1].Value), "http")
				case "published", "mode":
				default:
					c.refuse(kv[0], ef+"."+kv[0].Value, "unknown key of a port")
				}
			}
			if p.port == 0 {
				c.refuse(e, ef, "no target: give the container's port")
				continue
			}
		} else {
			s, ok := c.scalar(e, ef)
			if !ok {
				continue
			}
			// [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]; HOST_IP may be [v6].
			host := ""
			if strings.HasPrefix(s, "[") {
				if j := strings.Index(s, "]:"); j > 0 {
					host, s = s[1:j], s[j+2:]
				}
			}
			parts := strings.Split(s, ":")
			if len(parts) == 3 {
				host = parts[0]
			}
			if len(parts) > 3 {
				c.refuse(e, ef, "%q: write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp]", e.Value)
				continue
			}
			port, pr, err := parsePort(parts[len(parts)-1])
			if err != nil {
				c.refuse(e, ef, "%v", err)
				continue
			}
			p.port, proto, p.local = port, pr, isLoopback(host)
		}
		if proto != "tcp" {
			c.refuse(e, ef, "%s: a package offers TCP ports only", proto)
			continue
		}
		c.usePort(svc, p.port, e)
		out = append(out, p)
	}
	return out
}

func distinctPorts(ps []publish) int {
	seen := map[int]bool{}
	for _, p := range ps {
		seen[p.port] = true
	}
	return len(seen)
}

func isLoopback(h string) bool {
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

func (c *conv) interfaces(svc, job string, published []publish, lbl map[string]string, at *yaml.Node, once bool) {
	f := "services." + svc + ".labels"
	type iface struct {
		name  string
		port  int
		proto string
		local bool
		node  *yaml.Node
	}
	httpAll, httpSet := false, map[int]bool{}
	if v, ok := lbl[LabelHTTP]; ok {
		switch v {
		case "true":
			httpAll = true
		case "false":
		default:
			for _, s := range strings.Split(v, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					c.refuse(at, f+"."+LabelHTTP, "%q: use true, false or a list of ports such as 80,8080", v)
					break
				}
				httpSet[n] = true
			}
		}
	}
	protoOf := func(p publish) string {
		if _, given := lbl[LabelHTTP]; given {
			if httpAll || httpSet[p.port] {
				return "http"
			}
			return "tcp"
		}
		if p.appHTTP || slices.Contains(httpPorts, p.port) {
			return "http"
		}
		return "tcp"
	}
	var list []iface
	named := map[int]string{}
	for k, v := range lbl {
		if !strings.HasPrefix(k, LabelInterface) {
			continue
		}
		name := strings.TrimPrefix(k, LabelInterface)
		ps, proto, _ := strings.Cut(v, "/")
		port, err := strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 || (proto != "" && proto != "http" && proto != "tcp") || !nameRE.MatchString(name) {
			c.refuse(at, f+"."+k, "%q: write PORT or PORT/http or PORT/tcp, under a lower-case name", v)
			continue
		}
		if proto == "" {
			proto = protoOf(publish{port: port})
		}
		named[port] = name
		list = append(list, iface{name: name, port: port, proto: proto})
	}
	for _, p := range published {
		if _, ok := named[p.port]; ok {
			continue // named by a label, or published twice (on two host ports): one interface
		}
		named[p.port] = ""
		name := job
		if p.name != "" {
			name = sanitize(p.name)
		} else if ports := distinctPorts(published); ports > 1 {
			name = fmt.Sprintf("%s-%d", job, p.port)
		}
		list = append(list, iface{name: name, port: p.port, proto: protoOf(p), local: p.local, node: p.node})
	}
	if len(list) > 0 && once {
		c.refuse(at, "services."+svc+".ports", "a service that runs once offers no ports")
		return
	}
	expose := []string{"lan"}
	if v, ok := lbl[LabelExpose]; ok {
		expose = nil
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				expose = append(expose, e)
			}
		}
	}
	for _, it := range list {
		if c.m.Interfaces == nil {
			c.m.Interfaces = map[string]manifest.Interface{}
		}
		if _, dup := c.m.Interfaces[it.name]; dup {
			c.refuse(at, "services."+svc, "interface %q is named twice: name it with a label %s<name>", it.name, LabelInterface)
			continue
		}
		x := manifest.Interface{Daemon: job, Port: it.port, Protocol: it.proto, Expose: slices.Clone(expose)}
		if it.local {
			x.Expose = nil
			c.warn(it.node, "services."+svc+".ports", "port %d is published on a loopback address only: interface %q is not exposed (add expose: [lan] to offer it)", it.port, it.name)
		}
		c.m.Interfaces[it.name] = x
	}
}

func (c *conv) mounts(svc string, d *manifest.Daemon, n *yaml.Node, f string) {
	if n.Kind != yaml.SequenceNode {
		c.refuse(n, f, "want a list of volumes")
		return
	}
	for i, e := range n.Content {
		ef := fmt.Sprintf("%s[%d]", f, i)
		typ, src, dst, ro := "", "", "", false
		if e.Kind == yaml.MappingNode {
			for _, kv := range pairs(e) {
				switch kv[0].Value {
				case "type":
					typ = kv[1].Value
				case "source":
					src = kv[1].Value
				case "target":
					dst = kv[1].Value
				case "read_only":
					ro = c.boolean(kv[1], ef+".read_only")
				case "bind", "volume", "consistency", "tmpfs":
					for _, o := range pairs(kv[1]) {
						if o[0].Value == "subpath" {
							c.refuse(o[0], ef+".volume.subpath", "not supported: mount the whole volume")
						}
					}
				default:
					c.refuse(kv[0], ef+"."+kv[0].Value, "unknown key of a volume mount")
				}
			}
			switch typ {
			case "volume", "bind":
			case "tmpfs":
				c.warn(e, ef, "dropped: tmpfs at %s (the service's writable layer holds the path)", dst)
				continue
			default:
				c.refuse(e, ef+".type", "%q: use volume, bind or tmpfs", typ)
				continue
			}
		} else {
			s, ok := c.scalar(e, ef)
			if !ok {
				continue
			}
			parts := strings.Split(s, ":")
			switch len(parts) {
			case 1:
				dst = parts[0]
			case 2, 3:
				src, dst = parts[0], parts[1]
				if len(parts) == 3 {
					for _, o := range strings.Split(parts[2], ",") {
						switch o {
						case "ro":
							ro = true
						case "rw", "z", "Z", "cached", "delegated", "consistent", "nocopy":
						default:
							c.refuse(e, ef, "%q: unknown mode %q", s, o)
						}
					}
				}
			default:
				c.refuse(e, ef, "%q: write [SOURCE:]TARGET[:ro]", s)
				continue
			}
		}
		if !path.IsAbs(dst) {
			c.refuse(e, ef, "target %q must be an absolute path", dst)
			continue
		}
		vol := ""
		switch {
		case src == "":
			vol = c.volumeName(svc + "-" + strings.ReplaceAll(strings.Trim(dst, "/"), "/", "-"))
		case src == "/etc/localtime" || src == "/etc/timezone":
			c.warn(e, ef, "dropped: the bind of the host's %s (packages run on the host's time; set TZ in environment for another zone)", src)
			continue
		case strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~"):
			c.refuse(e, ef, "cannot map: the bind of the host's %s; a package sees only its own volumes: use a named volume, or a directory of the project (./dir), copied into the package", src)
			continue
		case strings.HasPrefix(src, ".") || typ == "bind":
			var file string
			vol, file = c.seed(svc, src, e, ef)
			if vol == "" {
				continue
			}
			if file != "" {
				d.Mounts = append(d.Mounts, manifest.Mount{Volume: vol, File: file, Path: path.Clean(dst), ReadOnly: ro})
				continue
			}
		default:
			v, ok := c.vols[src]
			if !ok {
				c.refuse(e, ef, "volume %q is not declared under the top-level volumes", src)
				continue
			}
			vol = v
		}
		d.Mounts = append(d.Mounts, manifest.Mount{Volume: vol, Path: path.Clean(dst), ReadOnly: ro})
	}
}

// seed makes (once per source) the volume a relative bind becomes, and says the file's
// name in it when the source is a file.
func (c *conv) seed(svc, src string, at *yaml.Node, f string) (string, string) {
	rel := filepath.Clean(src)
	if v, ok := c.seeds[rel]; ok {
		return v, c.seedFiles[rel]
	}
	abs := filepath.Join(c.opt.Dir, rel)
	st, err := os.Stat(abs)
	file := ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.warn(at, f, "%s does not exist: the volume it becomes starts empty", src)
	case err != nil:
		c.refuse(at, f, "%v", err)
		return "", ""
	case st.Mode().IsRegular():
		file = filepath.Base(abs)
	case !st.IsDir():
		c.refuse(at, f, "%s is a %v: bind a directory or a regular file", src, st.Mode().Type())
		return "", ""
	}
	name := strings.Trim(strings.ReplaceAll(filepath.ToSlash(rel), "/", "-"), ".-")
	if name == "" {
		name = svc + "-project"
	}
	v := c.volumeName(name)
	c.seeds[rel], c.seedFiles[rel] = v, file
	if err == nil {
		c.res.Seeds = append(c.res.Seeds, Seed{Volume: v, Source: abs, File: file})
	}
	return v, file
}

// seedHook adds the install hook that copies the seeded volumes' files from the assets.
func (c *conv) seedHook() {
	if len(c.res.Seeds) == 0 {
		return
	}
	// The hook runs in the image of the first service (by name) that mounts a seeded volume.
	seeded := map[string]bool{}
	for _, s := range c.res.Seeds {
		seeded[s.Volume] = true
	}
	image := ""
	for _, group := range []map[string]*manifest.Daemon{c.m.Daemons, c.m.Oneshots} {
		for _, n := range slices.Sorted(maps.Keys(group)) {
			for _, mt := range group[n].Mounts {
				if seeded[mt.Volume] && image == "" {
					image = group[n].Image
				}
			}
		}
	}
	h := &manifest.Hook{Image: image, User: "0"}
	script := []string{"set -e"}
	for _, s := range c.res.Seeds {
		to := SeedHookPath + "/" + s.Volume
		script = append(script, fmt.Sprintf("cp -a /media/hearth/assets/%s/%s/. %s/", AssetsSeedDir, s.Volume, to))
		h.Mounts = append(h.Mounts, manifest.Mount{Volume: s.Volume, Path: to})
	}
	h.Command = []string{"/bin/sh", "-c", strings.Join(script, "\n")}
	c.m.Hooks.Install = h
}

// deploy reads deploy: resources.limits are summed into the package's limits (see
// limits), restart_policy.condition is the restart policy.
func (c *conv) deploy(svc string, n *yaml.Node, f string, restart **yaml.Node) {
	for _, kv := range pairs(n) {
		k, v := kv[0], kv[1]
		kf := f + "." + k.Value
		switch k.Value {
		case "resources":
			for _, r := range pairs(v) {
				switch r[0].Value {
				case "limits":
					for _, l := range pairs(r[1]) {
						switch l[0].Value {
						case "memory", "cpus", "pids":
						default:
							c.warn(l[0], kf+".limits."+l[0].Value, "dropped: only memory, cpus and pids map")
						}
					}
				case "reservations":
					c.warn(r[0], kf+".reservations", "dropped: only limits map")
				default:
					c.refuse(r[0], kf+"."+r[0].Value, "unknown key (use limits)")
				}
			}
		case "restart_policy":
			for _, r := range pairs(v) {
				if r[0].Value == "condition" {
					if *restart == nil {
						*restart = r[1]
					}
				} else {
					c.warn(r[0], kf+"."+r[0].Value, "dropped: a failing daemon is restarted with backoff")
				}
			}
		case "replicas":
			if s := v.Value; s != "1" {
				c.refuse(v, kf, "cannot map: a service runs once in its package")
			}
		case "labels", "mode", "placement", "update_config", "rollback_config", "endpoint_mode":
			c.warn(k, kf, "dropped: a package runs on one host")
		default:
			c.refuse(k, kf, "unknown key of deploy")
		}
	}
}

// limits sums each limit over the services, when every service gives it.
func (c *conv) limits(services *yaml.Node) {
	type lim struct {
		name string
		sum  float64
		miss []string
		at   *yaml.Node
	}
	ls := []*lim{{name: "memory"}, {name: "cpus"}, {name: "pids"}}
	for _, kv := range pairs(services) {
		svc, node := kv[0].Value, kv[1]
		if node.Kind != yaml.MappingNode {
			continue
		}
		vals := map[string]*yaml.Node{}
		for _, pair := range []struct{ legacy, name string }{{"mem_limit", "memory"}, {"cpus", "cpus"}, {"pids_limit", "pids"}} {
			if _, v := field(node, pair.legacy); v != nil {
				vals[pair.name] = v
			}
		}
		if _, dp := field(node, "deploy"); dp != nil {
			if _, r := field(dp, "resources"); r != nil {
				if _, l := field(r, "limits"); l != nil {
					for _, kv := range pairs(l) {
						vals[kv[0].Value] = kv[1]
					}
				}
			}
		}
		for _, l := range ls {
			v, ok := vals[l.name]
			if !ok {
				l.miss = append(l.miss, svc)
				continue
			}
			l.at = v
			f := "services." + svc + "." + l.name
			var x float64
			var err error
			switch l.name {
			case "memory":
				var b int64
				b, err = memBytes(v.Value)
				x = float64(b)
			case "cpus":
				x, err = strconv.ParseFloat(v.Value, 64)
				if err == nil && (x <= 0 || math.IsInf(x, 0) || math.IsNaN(x)) {
					err = fmt.Errorf("%q: want a positive number", v.Value)
				}
			case "pids":
				var p int64
				p, err = strconv.ParseInt(v.Value, 10, 64)
				if err == nil && p <= 0 {
					err = fmt.Errorf("%q: want a positive count (-1, no limit, does not map)", v.Value)
				}
				x = float64(p)
			}
			if err != nil {
				c.refuse(v, f, "%v", err)
				continue
			}
			l.sum += x
		}
	}
	for _, l := range ls {
		if l.at == nil {
			continue
		}
		if len(l.miss) > 0 {
			c.warn(l.at, "limits."+l.name, "not set: services %s give no %s limit, so the sum would starve them; the package takes the host's default (set limits.%s in the manifest)",
				strings.Join(l.miss, ", "), l.name, l.name)
			continue
		}
		switch l.name {
		case "memory":
			b := int64(l.sum)
			if b%(1<<30) == 0 {
				c.m.Limits.Memory = bytesize.Format(b)
			} else {
				c.m.Limits.Memory = fmt.Sprintf("%dMi", (b+(1<<20)-1)>>20)
			}
		case "cpus":
			c.m.Limits.CPUs = math.Round(l.sum*100) / 100
		case "pids":
			c.m.Limits.Pids = max(int64(l.sum), 8)
		}
	}
}

// memBytes reads a compose byte value: 512m, 1g, 1gb, 2048k, 100000 (bytes); units are binary.
func memBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*float64(mult) > math.MaxInt64/4 {
		return 0, fmt.Errorf("%q: write a size such as 512m or 1g", s)
	}
	return int64(f * float64(mult)), nil
}
