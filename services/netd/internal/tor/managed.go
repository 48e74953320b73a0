package tor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// ManagedConfig describes a tor that netd runs as its child.
type ManagedConfig struct {
	// Dir holds everything of this tor (made 0700): torrc, torrc-defaults (empty, so
	// the host's defaults file is not read), data/ (its DataDirectory, with the
	// control cookie), control.sock, control.addr and tor.pid.
	Dir string
	// Binary is the tor program (default: "tor" on PATH).
	Binary string
	// DisableNetwork keeps tor off the network (tests): it still takes ADD_ONION.
	DisableNetwork bool
	// ControlPort is "" for a Unix socket Dir/control.sock, or a loopback
	// "127.0.0.1:PORT" (a fixed port, so that a restarted tor keeps its address).
	ControlPort string
	// SocksPort is "" for none, or a loopback "127.0.0.1:PORT".
	SocksPort string
	// User, when set, is the user tor switches to after opening its ports (Dir is
	// given to that user; every directory above it must let that user through). Seen
	// with tor 0.4.9: a tor with User and DisableNetwork 1 never opens a Unix control
	// socket, so that pair needs a loopback ControlPort.
	User string
	// OwnerPID is the process whose end makes tor exit (tor's
	// __OwningControllerProcess), so that a netd killed hard leaves no tor behind.
	// 0: this process; -1: none.
	OwnerPID int
	// StartTimeout bounds the wait for the control port (default 30 s).
	StartTimeout time.Duration
	Log          *slog.Logger
}

// Managed is a running tor started by StartManaged.
type Managed struct {
	cfg     ManagedConfig
	cmd     *exec.Cmd
	control string
	done    chan struct{}
	err     error // how tor ended; set before done closes
	logTail *tail
}

// The files in a managed tor's directory.
const (
	managedTorrc    = "torrc"
	managedDefaults = "torrc-defaults"
	managedData     = "data"
	managedSocket   = "control.sock"
	managedAddrFile = "control.addr"
	managedPidFile  = "tor.pid"
)

// StartManaged starts tor with cfg and waits until its control port is open. A tor left
// running in the same directory by an earlier netd (named by tor.pid, checked against
// its command line) is stopped first: one directory, one tor.
func StartManaged(ctx context.Context, cfg ManagedConfig) (*Managed, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("managed tor: no directory given: %w", errdefs.ErrInvalidArgument)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("managed tor: %w", err)
	}
	cfg.Dir = dir
	if cfg.Binary == "" {
		cfg.Binary = "tor"
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("managed tor: the tor program %q is not installed (Debian: apt-get install tor): %w", cfg.Binary, errdefs.ErrFailedPrecondition)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OwnerPID == 0 {
		cfg.OwnerPID = os.Getpid()
	}
	control := "unix:" + filepath.Join(dir, managedSocket)
	if cfg.ControlPort != "" {
		if err := checkLoopback("ControlPort", cfg.ControlPort); err != nil {
			return nil, err
		}
		control = cfg.ControlPort
	} else if n := len(filepath.Join(dir, managedSocket)); n > 107 {
		return nil, fmt.Errorf("managed tor: the control socket path in %s is %d bytes, more than a Unix socket takes (107): give a shorter directory or a loopback ControlPort: %w", dir, n, errdefs.ErrInvalidArgument)
	}
	if cfg.SocksPort != "" {
		if err := checkLoopback("SocksPort", cfg.SocksPort); err != nil {
			return nil, err
		}
	}
	uid, gid := -1, -1
	if cfg.User != "" && cfg.DisableNetwork && cfg.ControlPort == "" {
		return nil, fmt.Errorf("managed tor: with User and DisableNetwork, tor opens no Unix control socket: give a loopback ControlPort: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.User != "" {
		u, err := user.Lookup(cfg.User)
		if err != nil {
			return nil, fmt.Errorf("managed tor: user %q: %w: %w", cfg.User, err, errdefs.ErrInvalidArgument)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}

	if uid >= 0 {
		if err := checkReachable(dir, cfg.User, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := stopLeftover(ctx, dir, bin, cfg.Log); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, managedData)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("managed tor: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("managed tor: %w", err)
		}
		if uid >= 0 {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, fmt.Errorf("managed tor: give %s to %s: %w", d, cfg.User, err)
			}
		}
	}
	if uid >= 0 {
		// Files from a run as another user.
		filepath.WalkDir(filepath.Join(dir, managedData), func(p string, _ fs.DirEntry, err error) error {
			if err == nil {
				os.Lchown(p, uid, gid)
			}
			return nil
		})
	}
	for _, f := range []string{managedAddrFile, managedSocket} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("managed tor: %w", err)
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, managedTorrc), []byte(torrc(cfg)), 0o600); err != nil {
		return nil, fmt.Errorf("managed tor: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, managedDefaults), nil, 0o600); err != nil {
		return nil, fmt.Errorf("managed tor: %w", err)
	}

	m := &Managed{cfg: cfg, control: control, done: make(chan struct{}), logTail: &tail{max: 20}}
	cmd := exec.Command(bin, "-f", filepath.Join(dir, managedTorrc), "--defaults-torrc", filepath.Join(dir, managedDefaults))
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("managed tor: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	// Its own process group: a terminal's Ctrl-C reaches netd, which stops tor itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("managed tor: start %s: %w", bin, err)
	}
	m.cmd = cmd
	log := cfg.Log.With("tor_pid", cmd.Process.Pid)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		m.copyLog(out, log)
	}()
	go func() {
		<-logged
		m.err = cmd.Wait()
		close(m.done)
	}()
	if err := atomicfile.Write(filepath.Join(dir, managedPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		m.Kill()
		return nil, fmt.Errorf("managed tor: %w", err)
	}
	if err := m.waitControl(ctx); err != nil {
		m.Kill()
		return nil, err
	}
	log.Info("tor started", "control", control, "dir", dir, "disable_network", cfg.DisableNetwork, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// checkReachable tells whether user (uid, gid) may pass through every directory above
// dir: tor, once it is that user, checks its data directory as that user.
func checkReachable(dir, user string, uid, gid int) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			sys := st.Sys().(*syscall.Stat_t)
			perm := st.Mode().Perm()
			var ok bool
			switch {
			case int(sys.Uid) == uid:
				ok = perm&0o100 != 0
			case int(sys.Gid) == gid:
				ok = perm&0o010 != 0
			default:
				ok = perm&0o001 != 0
			}
			if !ok {
				return fmt.Errorf("managed tor: user %s cannot pass through %s (mode %o), above tor's directory: give it o+x or choose another directory: %w", user, p, perm, errdefs.ErrFailedPrecondition)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func checkLoopback(what, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	n, perr := strconv.Atoi(port)
	if err != nil || ip == nil || !ip.IsLoopback() || perr != nil || n < 1 || n > 65535 {
		return fmt.Errorf("managed tor: %s %q: give a loopback ip:port: %w", what, addr, errdefs.ErrInvalidArgument)
	}
	return nil
}

// torrc is the managed tor's configuration. Paths are quoted: Dir may hold spaces.
func torrc(cfg ManagedConfig) string {
	q := func(p string) string { return quote(filepath.Join(cfg.Dir, p)) }
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# Written by netd at each start; changes here are lost.")
	line("DataDirectory %s", q(managedData))
	if cfg.ControlPort == "" {
		line("ControlPort unix:%s", q(managedSocket))
	} else {
		line("ControlPort %s", cfg.ControlPort)
	}
	line("ControlPortWriteToFile %s", q(managedAddrFile))
	line("CookieAuthentication 1")
	if cfg.SocksPort == "" {
		line("SocksPort 0")
	} else {
		line("SocksPort %s", cfg.SocksPort)
	}
	if cfg.DisableNetwork {
		line("DisableNetwork 1")
	}
	if cfg.User != "" {
		line("User %s", cfg.User)
	}
	if cfg.OwnerPID > 0 {
		line("__OwningControllerProcess %d", cfg.OwnerPID)
	}
	line("RunAsDaemon 0")
	line("Log notice stdout")
	return b.String()
}

// waitControl waits until tor has written the control port's address file (it does so
// once the port is open), tor ends, or the start timeout passes.
func (m *Managed) waitControl(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	path := filepath.Join(m.cfg.Dir, managedAddrFile)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if data, err := os.ReadFile(path); err == nil && bytes.HasSuffix(data, []byte("\n")) {
			return nil
		}
		select {
		case <-m.done:
			return fmt.Errorf("managed tor exited while starting (%v); its last words: %s: %w", m.err, m.logTail.String(), errdefs.ErrFailedPrecondition)
		case <-ctx.Done():
			return fmt.Errorf("managed tor: no control port after %s; its last words: %s: %w", m.cfg.StartTimeout, m.logTail.String(), errdefs.ErrUnavailable)
		case <-tick.C:
		}
	}
}

// copyLog passes tor's log lines ("Mon DD HH:MM:SS.mmm [level] text") to log.
func (m *Managed) copyLog(r io.Reader, log *slog.Logger) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		level, msg := slog.LevelInfo, line
		if i := strings.Index(line, " ["); i >= 0 {
			if j := strings.Index(line[i:], "] "); j > 0 {
				switch line[i+2 : i+j] {
				case "debug", "info":
					level = slog.LevelDebug
				case "warn":
					level = slog.LevelWarn
				case "err":
					level = slog.LevelError
				}
				msg = line[i+j+2:]
			}
		}
		m.logTail.add(msg)
		log.Log(context.Background(), level, "tor: "+msg)
	}
	io.Copy(io.Discard, r)
}

// ControlAddress is the control port's address, for Config.Address.
func (m *Managed) ControlAddress() string { return m.control }

// Dir is tor's directory.
func (m *Managed) Dir() string { return m.cfg.Dir }

// Pid is tor's process id.
func (m *Managed) Pid() int { return m.cmd.Process.Pid }

// Done is closed when tor has ended (and been reaped); Err then says how.
func (m *Managed) Done() <-chan struct{} { return m.done }

// Err is how tor ended (nil while it runs, or after a clean exit).
func (m *Managed) Err() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Stop asks tor to end (SIGTERM to its pid) and waits as long as ctx lets it, then
// kills it. It returns when tor has been reaped.
func (m *Managed) Stop(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		os.Remove(filepath.Join(m.cfg.Dir, managedPidFile))
		return nil
	case <-ctx.Done():
		m.Kill()
		return fmt.Errorf("managed tor (pid %d) did not end on SIGTERM; killed: %w", m.Pid(), ctx.Err())
	}
}

// Kill ends tor at once (SIGKILL to its pid) and waits until it is reaped.
func (m *Managed) Kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// stopLeftover ends a tor that an earlier netd started in dir and left running: the
// pid in tor.pid, if that process runs bin with dir's torrc.
func stopLeftover(ctx context.Context, dir, bin string, log *slog.Logger) error {
	data, err := os.ReadFile(filepath.Join(dir, managedPidFile))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return nil
	}
	if !isOurTor(pid, dir) {
		return nil
	}
	log.Info("stopping the tor left running in this directory", "tor_pid", pid, "dir", dir)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for isOurTor(pid, dir) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("managed tor: waiting for the old tor (pid %d) to end: %w", pid, ctx.Err())
		}
	}
	return nil
}

// isOurTor reports whether pid runs (not a zombie) with "-f DIR/torrc".
func isOurTor(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(cmdline) == 0 {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-f" && args[i+1] == filepath.Join(dir, managedTorrc) {
			return true
		}
	}
	return false
}

// tail keeps the last lines of a log.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(nothing)"
	}
	return strings.Join(t.lines, " | ")
}

// Supervisor keeps a managed tor running: when tor ends on its own, it is started
// again in the same directory (after a pause that doubles from 250 ms to 1 min while tor
// keeps failing), and a Controller on its control address adds the services again.
type Supervisor struct {
	cfg    ManagedConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	cur *Managed
}

// Supervise starts tor with cfg, returning StartManaged's error when that first start
// fails (a tor that cannot start is a configuration to fix), and keeps it running
// until Stop.
func Supervise(ctx context.Context, cfg ManagedConfig) (*Supervisor, error) {
	m, err := StartManaged(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{cfg: m.cfg, cancel: cancel, done: make(chan struct{}), cur: m}
	go s.run(sctx, m)
	return s, nil
}

func (s *Supervisor) run(ctx context.Context, m *Managed) {
	defer close(s.done)
	const minPause, maxPause = 250 * time.Millisecond, time.Minute
	pause := minPause
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m.Stop(stop)
			cancel()
			return
		case <-m.Done():
		}
		if time.Since(started) > maxPause {
			pause = minPause
		}
		s.cfg.Log.Warn("tor ended; starting it again", "tor_pid", m.Pid(), "err", m.Err(), "last_words", m.logTail.String(), "in", pause)
		for {
			if !sleep(ctx, pause) {
				return
			}
			pause = min(2*pause, maxPause)
			next, err := StartManaged(ctx, s.cfg)
			if err == nil {
				m, started = next, time.Now()
				s.mu.Lock()
				s.cur = m
				s.mu.Unlock()
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.cfg.Log.Error("tor does not start; trying again", "err", err, "in", pause)
		}
	}
}

// ControlAddress is the control port's address (the same across restarts).
func (s *Supervisor) ControlAddress() string { return s.Current().ControlAddress() }

// Current is the tor running now (or the last one, while it is being started again).
func (s *Supervisor) Current() *Managed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Stop stops tor (SIGTERM, then SIGKILL after 10 s) and the supervision; it returns
// when tor has ended or ctx ends.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop tor: %w", ctx.Err())
	}
}
