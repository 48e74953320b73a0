package manifest

import (
	"errors"
	"fmt"
	"hearth.dev/internal/semver"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"hearth.dev/internal/bytesize"
)

var (
	idRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	envRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// placedRE matches a problem that starts with its file (and line and column).
var placedRE = regexp.MustCompile(`^\S+:\d+(:\d+)?: `)

// Problems is every problem Validate found, each naming its field.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		if placedRE.MatchString(p[0]) {
			return p[0]
		}
		return "manifest: " + p[0]
	}
	return "manifest has " + fmt.Sprint(len(p)) + " problems:\n  " + strings.Join(p, "\n  ")
}

type checker struct{ problems Problems }

func (c *checker) add(field, format string, a ...any) {
	c.problems = append(c.problems, field+": "+fmt.Sprintf(format, a...))
}

// MinDiskBytes is the smallest disk a package may ask for.
const MinDiskBytes = 32 << 20

// Validate checks the manifest and reports every problem, each naming its field.
func (m *Manifest) Validate() error {
	c := &checker{}
	if !idRE.MatchString(m.ID) {
		c.add("id", "%q: use 1 to 32 lower-case letters, digits and '-'", m.ID)
	}
	if m.Version == "" {
		c.add("version", "missing: give the package's version, such as 1.0.0")
	} else if _, err := semver.Parse(m.Version); err != nil {
		c.add("version", "%v (a semantic version: versions are ordered by it)", err)
	}
	if len(m.Images) == 0 {
		c.add("images", "none: a package needs at least one image")
	}
	for _, n := range slices.Sorted(maps.Keys(m.Images)) {
		img := m.Images[n]
		f := "images." + n
		if !nameRE.MatchString(n) {
			c.add(f, "name %q: use lower-case letters, digits, '.', '_' and '-'", n)
		}
		switch {
		case img.OCI == "" && img.Ref == "":
			c.add(f, "give oci (an archive in the package) or ref (a stored image)")
		case img.OCI != "" && img.Ref != "":
			c.add(f, "give oci or ref, not both")
		case img.OCI != "" && (path.IsAbs(img.OCI) || slices.Contains(strings.Split(img.OCI, "/"), "..")):
			c.add(f+".oci", "%q must be a relative path inside the package", img.OCI)
		}
	}
	for i, v := range m.Volumes {
		f := fmt.Sprintf("volumes[%d]", i)
		if !nameRE.MatchString(v) {
			c.add(f, "name %q: use lower-case letters, digits, '.', '_' and '-'", v)
		}
		if slices.Contains(m.Volumes[:i], v) {
			c.add(f, "volume %q is declared twice", v)
		}
	}
	if m.Limits.Memory != "" {
		if n, err := bytesize.Parse(m.Limits.Memory); err != nil {
			c.add("limits.memory", "%v", err)
		} else if n < 4<<20 {
			c.add("limits.memory", "%s is below 4Mi", m.Limits.Memory)
		}
	}
	if m.Limits.Disk != "" {
		if n, err := bytesize.Parse(m.Limits.Disk); err != nil {
			c.add("limits.disk", "%v", err)
		} else if n < MinDiskBytes {
			c.add("limits.disk", "%s is below %s, too little for a package's layers and logs", m.Limits.Disk, bytesize.Format(MinDiskBytes))
		}
	}
	if m.Limits.CPUs < 0 {
		c.add("limits.cpus", "must be positive")
	}
	if m.Limits.Pids < 0 || (m.Limits.Pids > 0 && m.Limits.Pids < 8) {
		c.add("limits.pids", "%d: give at least 8", m.Limits.Pids)
	}
	if len(m.Daemons) == 0 {
		c.add("daemons", "none: a package runs at least one daemon")
	}
	all := map[string]string{} // job name → "daemons" or "oneshots"
	for _, group := range []struct {
		kind string
		jobs map[string]*Daemon
	}{{"daemons", m.Daemons}, {"oneshots", m.Oneshots}} {
		for _, n := range slices.Sorted(maps.Keys(group.jobs)) {
			f := group.kind + "." + n
			if !nameRE.MatchString(n) {
				c.add(f, "name %q: use lower-case letters, digits, '.', '_' and '-'", n)
			}
			if other, dup := all[n]; dup {
				c.add(f, "the name is also used under %s", other)
			}
			all[n] = group.kind
		}
	}
	for _, group := range []struct {
		kind    string
		jobs    map[string]*Daemon
		oneshot bool
	}{{"daemons", m.Daemons, false}, {"oneshots", m.Oneshots, true}} {
		for _, n := range slices.Sorted(maps.Keys(group.jobs)) {
			c.job(m, group.kind+"."+n, group.jobs[n], group.oneshot, all)
		}
	}
	c.hooks(m, all)
	c.ports(m)
	for _, n := range slices.Sorted(maps.Keys(m.Interfaces)) {
		it := m.Interfaces[n]
		f := "interfaces." + n
		if !nameRE.MatchString(n) {
			c.add(f, "name %q: use lower-case letters, digits, '.', '_' and '-'", n)
		}
		if _, ok := m.Daemons[it.Daemon]; !ok {
			c.add(f+".daemon", "unknown daemon %q", it.Daemon)
		}
		if it.Port < 1 || it.Port > 65535 {
			c.add(f+".port", "%d is not a port (1 to 65535)", it.Port)
		}
		if it.Protocol != "" && it.Protocol != "http" && it.Protocol != "tcp" {
			c.add(f+".protocol", "%q: use http or tcp", it.Protocol)
		}
		for i, e := range it.Expose {
			if e != "lan" && e != "tor" && e != "domain" {
				c.add(fmt.Sprintf("%s.expose[%d]", f, i), "%q: use lan, tor or domain", e)
			}
		}
	}
	c.actions(m)
	c.cycles(m)
	c.dependencies(m)
	if len(c.problems) > 0 {
		return c.problems
	}
	return nil
}

func (c *checker) job(m *Manifest, f string, d *Daemon, oneshot bool, all map[string]string) {
	if d == nil {
		c.add(f, "empty")
		return
	}
	if _, ok := m.Images[d.Image]; !ok {
		c.add(f+".image", "unknown image %q (declare it under images)", d.Image)
	}
	for i, a := range d.Command {
		if a == "" && i == 0 {
			c.add(f+".command[0]", "empty program")
		}
	}
	if d.Workdir != "" && !path.IsAbs(d.Workdir) {
		c.add(f+".workdir", "%q must be an absolute path", d.Workdir)
	}
	for k := range d.Env {
		if !envRE.MatchString(k) {
			c.add(f+".env."+k, "not a valid variable name")
		}
	}
	if d.User != "" && (strings.ContainsAny(d.User, " \n/") || strings.Count(d.User, ":") > 1) {
		c.add(f+".user", "%q: give a user name or id, optionally :group", d.User)
	}
	for i, mt := range d.Mounts {
		mf := fmt.Sprintf("%s.mounts[%d]", f, i)
		if !slices.Contains(m.Volumes, mt.Volume) {
			c.add(mf+".volume", "unknown volume %q (declare it under volumes)", mt.Volume)
		}
		if !path.IsAbs(mt.Path) || slices.Contains(strings.Split(mt.Path, "/"), "..") || path.Clean(mt.Path) == "/" {
			c.add(mf+".path", "%q: give an absolute path without '..', other than /", mt.Path)
		}
		if mt.File != "" && (path.IsAbs(mt.File) || path.Clean(mt.File) != mt.File || mt.File == "." || slices.Contains(strings.Split(mt.File, "/"), "..")) {
			c.add(mf+".file", "%q: give a clean relative path inside the volume, without '..'", mt.File)
		}
	}
	for i, p := range d.Ports {
		if p < 1 || p > 65535 {
			c.add(fmt.Sprintf("%s.ports[%d]", f, i), "%d is not a port (1 to 65535)", p)
		}
	}
	if d.Ready != nil {
		r := d.Ready
		n := 0
		if r.TCP != 0 {
			n++
			if r.TCP < 1 || r.TCP > 65535 {
				c.add(f+".ready.tcp", "%d is not a port", r.TCP)
			}
		}
		if r.HTTP != nil {
			n++
			if r.HTTP.Port < 1 || r.HTTP.Port > 65535 {
				c.add(f+".ready.http.port", "%d is not a port", r.HTTP.Port)
			}
			if r.HTTP.Path != "" && !strings.HasPrefix(r.HTTP.Path, "/") {
				c.add(f+".ready.http.path", "%q must start with /", r.HTTP.Path)
			}
		}
		if len(r.Exec) > 0 {
			n++
		}
		if n != 1 {
			c.add(f+".ready", "give exactly one of tcp, http or exec")
		}
		if r.Retries < 0 {
			c.add(f+".ready.retries", "must be positive")
		}
		if oneshot {
			c.add(f+".ready", "a oneshot is done when it exits 0; it has no ready check")
		}
	}
	for i, r := range d.Requires {
		rf := fmt.Sprintf("%s.requires[%d]", f, i)
		if _, ok := all[r]; !ok {
			c.add(rf, "unknown daemon or oneshot %q", r)
		}
		if f == "daemons."+r || f == "oneshots."+r {
			c.add(rf, "requires itself")
		}
	}
	for i, b := range d.Before {
		bf := fmt.Sprintf("%s.before[%d]", f, i)
		if !oneshot {
			c.add(bf, "only oneshots take before; give the daemon requires instead")
		} else if _, ok := all[b]; !ok {
			c.add(bf, "unknown daemon or oneshot %q", b)
		}
	}
	switch d.Restart.Policy {
	case "", "always", "on-failure", "never":
		if oneshot && d.Restart.Policy != "" && d.Restart.Policy != "never" {
			c.add(f+".restart.policy", "a oneshot runs once: use never or leave it out")
		}
	default:
		c.add(f+".restart.policy", "%q: use always, on-failure or never", d.Restart.Policy)
	}
	if d.Restart.Backoff != "" {
		if _, _, err := ParseBackoff(d.Restart.Backoff); err != nil {
			c.add(f+".restart.backoff", "%v", err)
		}
	}
	if d.Stop.Signal != "" {
		if _, err := ParseSignal(d.Stop.Signal); err != nil {
			c.add(f+".stop.signal", "%v", err)
		}
	}
	if d.Stop.Timeout < 0 {
		c.add(f+".stop.timeout", "must be positive")
	}
}

// ports refuses two daemons that would listen on the same port: all daemons of a package
// share one network namespace.
func (c *checker) ports(m *Manifest) {
	owner := map[int]string{}
	for _, n := range slices.Sorted(maps.Keys(m.Daemons)) {
		for _, p := range m.Daemons[n].ListenPorts() {
			if other, ok := owner[p]; ok && other != n {
				c.add("daemons."+n, "port %d is also used by daemon %q; daemons of a package share one network, so give one of them another port", p, other)
				continue
			}
			owner[p] = n
		}
	}
}

// ListenPorts are the ports a daemon says it listens on: its ports and its ready check's.
func (d *Daemon) ListenPorts() []int {
	if d == nil {
		return nil
	}
	ports := slices.Clone(d.Ports)
	if d.Ready != nil {
		if d.Ready.TCP > 0 && !slices.Contains(ports, d.Ready.TCP) {
			ports = append(ports, d.Ready.TCP)
		}
		if d.Ready.HTTP != nil && d.Ready.HTTP.Port > 0 && !slices.Contains(ports, d.Ready.HTTP.Port) {
			ports = append(ports, d.Ready.HTTP.Port)
		}
	}
	return ports
}

// Deps returns, for every daemon and oneshot, the jobs it waits for: its requires, and
// the oneshots that name it in before.
func (m *Manifest) Deps() map[string][]string {
	deps := map[string][]string{}
	for _, group := range []map[string]*Daemon{m.Daemons, m.Oneshots} {
		for n, d := range group {
			if d == nil {
				continue
			}
			deps[n] = append(deps[n], d.Requires...)
		}
	}
	for n, o := range m.Oneshots {
		if o == nil {
			continue
		}
		for _, b := range o.Before {
			if !slices.Contains(deps[b], n) {
				deps[b] = append(deps[b], n)
			}
		}
	}
	for n := range deps {
		sort.Strings(deps[n])
	}
	return deps
}

func (c *checker) cycles(m *Manifest) {
	deps := m.Deps()
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, ok := deps[d]; !ok {
				continue // unknown names are reported elsewhere
			}
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				c.add("requires", "cycle: %s", strings.Join(append(slices.Clone(stack[i:]), d), " → "))
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, n := range slices.Sorted(maps.Keys(deps)) {
		if color[n] == white && visit(n) {
			return
		}
	}
}

// Order returns the jobs in an order that starts every job after the jobs it waits for.
func (m *Manifest) Order() []string {
	deps := m.Deps()
	var out []string
	done := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if done[n] {
			return
		}
		done[n] = true
		for _, d := range deps[n] {
			visit(d)
		}
		out = append(out, n)
	}
	for _, n := range slices.Sorted(maps.Keys(deps)) {
		visit(n)
	}
	return out
}

// ParseBackoff reads "MIN..MAX".
func ParseBackoff(s string) (time.Duration, time.Duration, error) {
	a, b, ok := strings.Cut(s, "..")
	if !ok {
		return 0, 0, fmt.Errorf("%q: write MIN..MAX, such as 1s..30s", s)
	}
	lo, err1 := time.ParseDuration(strings.TrimSpace(a))
	hi, err2 := time.ParseDuration(strings.TrimSpace(b))
	if err := errors.Join(err1, err2); err != nil || lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q: write MIN..MAX with 0 < MIN <= MAX, such as 1s..30s", s)
	}
	return lo, hi, nil
}

var signals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT, "SIGHUP": syscall.SIGHUP,
	"SIGKILL": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGWINCH": syscall.SIGWINCH,
	"SIGPWR": syscall.SIGPWR,
}

// ParseSignal reads a signal name such as SIGTERM or TERM.
func ParseSignal(s string) (syscall.Signal, error) {
	n := strings.ToUpper(s)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	sig, ok := signals[n]
	if !ok {
		return 0, fmt.Errorf("%q: use SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGPWR or SIGKILL", s)
	}
	return sig, nil
}
