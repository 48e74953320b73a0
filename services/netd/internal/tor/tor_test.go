package tor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/testtool"
)

// These tests run Debian's tor with DisableNetwork 1: it takes ADD_ONION and answers
// with the service id offline, and reaches nothing.

func needTor(t *testing.T) {
	t.Helper()
	testtool.Need(t, "tor")
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startTor starts a managed tor in dir, stopped (by its pid) when the test ends.
func startTor(t *testing.T, cfg ManagedConfig) *Managed {
	t.Helper()
	cfg.DisableNetwork = true
	cfg.StartTimeout = 30 * time.Second
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	start := time.Now()
	m, err := StartManaged(ctx, cfg)
	if err != nil {
		t.Fatalf("start tor: %v", err)
	}
	t.Logf("tor pid %d started in %s", m.Pid(), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("stop tor: %v", err)
		}
	})
	return m
}

// shortDir is a temporary directory with a path short enough for a Unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tor")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newController(t *testing.T, cfg Config) *Controller {
	t.Helper()
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	cfg.CommandTimeout = 5 * time.Second
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	c, err := NewController(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func current(t *testing.T, c *Controller) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ids, err := c.Current(ctx)
	if err != nil {
		t.Fatalf("onions/current: %v", err)
	}
	return ids
}

// TestOnionServiceLifecycle is issue 11's Tor proof: a private tor takes the stored key,
// the address derived here is the one tor makes, and after tor restarts the services are
// added again.
func TestOnionServiceLifecycle(t *testing.T) {
	needTor(t)
	variants := []struct {
		name string
		cfg  func(t *testing.T) ManagedConfig
	}{
		{"unix socket", func(t *testing.T) ManagedConfig { return ManagedConfig{} }},
		{"loopback port", func(t *testing.T) ManagedConfig { return ManagedConfig{ControlPort: freeLoopbackPort(t)} }},
		{"as debian-tor", func(t *testing.T) ManagedConfig {
			if os.Getuid() != 0 {
				t.Skip("tor's User option needs root")
			}
			if _, err := user.Lookup("debian-tor"); err != nil {
				testtool.Missing(t, "no debian-tor user (Debian's tor package makes it)")
			}
			return ManagedConfig{User: "debian-tor", Dir: filepath.Join(shortDir(t), "tor"), ControlPort: freeLoopbackPort(t)}
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cfg := v.cfg(t)
			if cfg.Dir == "" {
				cfg.Dir = filepath.Join(shortDir(t), "tor")
			} else {
				// The user tor becomes must pass through its directory's parent.
				if err := os.Chmod(filepath.Dir(cfg.Dir), 0o711); err != nil {
					t.Fatal(err)
				}
			}
			m := startTor(t, cfg)

			keys, err := OpenKeyStore(filepath.Join(filepath.Dir(cfg.Dir), "keys"))
			if err != nil {
				t.Fatal(err)
			}
			web, _, err := keys.LoadOrCreate("hello-pg.web")
			if err != nil {
				t.Fatal(err)
			}
			if m := mode(t, keys.Path("hello-pg.web")); m != 0o600 {
				t.Fatalf("key file mode %o", m)
			}
			c := newController(t, Config{Address: m.ControlAddress()})
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			addr, err := c.Add(ctx, Service{Key: web, Ports: []Port{{80, "10.88.0.5:8080"}}})
			took := time.Since(start)
			if err != nil {
				t.Fatalf("add: %v", err)
			}
			t.Logf("ADD_ONION took %s", took)
			if addr != web.Address() {
				t.Fatalf("Add returned %s, want %s", addr, web.Address())
			}
			if ids := current(t, c); !slices.Equal(ids, []string{web.ServiceID()}) {
				t.Fatalf("onions/current %q, want %s", ids, web.ServiceID())
			}
			// Adding again is a no-op; new ports replace the old.
			if _, err := c.Add(ctx, Service{Key: web, Ports: []Port{{80, "10.88.0.5:8080"}}}); err != nil {
				t.Fatalf("add again: %v", err)
			}
			if _, err := c.Add(ctx, Service{Key: web, Ports: []Port{{80, "10.88.0.5:8080"}, {443, "10.88.0.5:8443"}}}); err != nil {
				t.Fatalf("add with new ports: %v", err)
			}
			if st := c.Services(); len(st) != 1 || !st[0].Added || len(st[0].Ports) != 2 {
				t.Fatalf("services %+v", st)
			}

			// tor dies; a service added meanwhile is kept and waits.
			oldPid := m.Pid()
			m.Kill()
			deadline := time.Now().Add(10 * time.Second)
			for st := c.Services(); st[0].Added; st = c.Services() {
				if time.Now().After(deadline) {
					t.Fatal("the controller did not notice that tor died")
				}
				time.Sleep(10 * time.Millisecond)
			}
			ssh, _, err := keys.LoadOrCreate("gitea.ssh")
			if err != nil {
				t.Fatal(err)
			}
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = c.Add(short, Service{Key: ssh, Ports: []Port{{22, "10.88.0.6:22"}}})
			cancelShort()
			if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), m.ControlAddress()) || !strings.Contains(err.Error(), "will be added") {
				t.Fatalf("add while tor is down: %v", err)
			}

			// The same directory again: the controller reconnects and adds both.
			restart := time.Now()
			m = startTor(t, cfg)
			if m.Pid() == oldPid {
				t.Fatal("same pid")
			}
			want := []string{web.ServiceID(), ssh.ServiceID()}
			slices.Sort(want)
			for {
				st := c.Services()
				if len(st) == 2 && st[0].Added && st[1].Added {
					break
				}
				if time.Since(restart) > 30*time.Second {
					t.Fatalf("services not added again after tor restarted: %+v", st)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("tor restart to services added again: %s", time.Since(restart).Round(time.Millisecond))
			if ids := current(t, c); !slices.Equal(ids, want) {
				t.Fatalf("onions/current after restart %q, want %q", ids, want)
			}

			// DEL_ONION.
			if err := c.Remove(ctx, web.Address()); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if err := c.Remove(ctx, web.ServiceID()); err != nil {
				t.Fatalf("remove again: %v", err)
			}
			if ids := current(t, c); !slices.Equal(ids, []string{ssh.ServiceID()}) {
				t.Fatalf("onions/current after remove %q", ids)
			}
			if err := c.Remove(ctx, ssh.ServiceID()); err != nil {
				t.Fatal(err)
			}
			if ids := current(t, c); len(ids) != 0 {
				t.Fatalf("onions/current after removing all %q", ids)
			}
			if st := c.Services(); len(st) != 0 {
				t.Fatalf("services after removing all: %+v", st)
			}
		})
	}
}

// TestTorMakesTheDerivedAddress checks the key format both ways tor reads it: the
// ServiceID of a raw ADD_ONION, and the hostname tor writes for a HiddenServiceDir that
// holds TorSecretKeyFile.
func TestTorMakesTheDerivedAddress(t *testing.T) {
	needTor(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := []Key{rfcKey(t)}
	for range 3 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}

	dir := shortDir(t)
	m := startTor(t, ManagedConfig{Dir: filepath.Join(dir, "tor")})
	cn, err := dialControl(ctx, m.ControlAddress(), auth{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.close(errors.New("test done"))
	for _, k := range keys {
		r, err := cn.do("ADD_ONION", "ADD_ONION "+k.ControlBlob()+" Flags=DiscardPK Port=80,127.0.0.1:1")
		if err != nil {
			t.Fatalf("ADD_ONION: %v", err)
		}
		if got := strings.TrimPrefix(r[0].text, "ServiceID="); got != k.ServiceID() {
			t.Errorf("tor's ServiceID %s, derived %s", got, k.ServiceID())
		}
		for _, l := range r {
			if strings.HasPrefix(l.text, "PrivateKey=") {
				t.Error("tor sent the key back despite DiscardPK")
			}
		}
	}

	// A tor with HiddenServiceDir: it reads hs_ed25519_secret_key and writes hostname.
	for i, k := range keys[:2] {
		hs := filepath.Join(dir, fmt.Sprintf("hs%d", i))
		if err := os.MkdirAll(hs, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hs, "hs_ed25519_secret_key"), k.TorSecretKeyFile(), 0o600); err != nil {
			t.Fatal(err)
		}
		data := filepath.Join(dir, fmt.Sprintf("hsdata%d", i))
		cmd := exec.CommandContext(ctx, "tor", "--defaults-torrc", filepath.Join(dir, "tor", managedDefaults), "-f", "-",
			"DataDirectory", data, "SocksPort", "0", "DisableNetwork", "1",
			"HiddenServiceDir", hs, "HiddenServicePort", "80 127.0.0.1:1", "Log", "warn stdout")
		cmd.Stdin = strings.NewReader("")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var host []byte
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if host, err = os.ReadFile(filepath.Join(hs, "hostname")); err == nil && len(host) > 0 {
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if got := strings.TrimSpace(string(host)); got != k.Address() {
			t.Errorf("tor's hostname for the key file is %q, derived %s; tor said: %s", got, k.Address(), out)
		}
	}
}

// TestControlErrors: what a caller is told when the control port is wrong.
func TestControlErrors(t *testing.T) {
	notTor, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notTor.Close()
	go func() {
		for {
			c, err := notTor.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	missing := filepath.Join(t.TempDir(), "control.sock")
	refused := freeLoopbackPort(t)
	for _, tc := range []struct {
		name, addr string
		kind       error
		words      []string
	}{
		{"no socket", "unix:" + missing, errdefs.ErrUnavailable, []string{missing, "no such file"}},
		{"refused", refused, errdefs.ErrUnavailable, []string{refused, "connection refused"}},
		{"not tor", notTor.Addr().String(), errdefs.ErrUnavailable, []string{notTor.Addr().String(), "not tor's control protocol", "HTTP/1.1 400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newController(t, Config{Address: tc.addr})
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			err := c.Ready(ctx)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Ready: %v, want %v", err, tc.kind)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			t.Logf("error: %v", err)
		})
	}
	if _, err := NewController(Config{Address: "tor.sock"}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("a relative address: %v", err)
	}
}

// TestWrongCookie: a cookie that is not tor's is refused by tor's own proof, before
// ours is sent.
func TestWrongCookie(t *testing.T) {
	needTor(t)
	m := startTor(t, ManagedConfig{Dir: filepath.Join(shortDir(t), "tor")})
	fake := filepath.Join(t.TempDir(), "cookie")
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(fake, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newController(t, Config{Address: m.ControlAddress(), CookieFile: fake})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := c.Ready(ctx); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "SAFECOOKIE") {
		t.Fatalf("Ready with a wrong cookie: %v", err)
	}
}

// TestManagedTorFailures: a tor that cannot start says why.
func TestManagedTorFailures(t *testing.T) {
	needTor(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name  string
		cfg   ManagedConfig
		kind  error
		words string
	}{
		{"no binary", ManagedConfig{Binary: "no-such-tor"}, errdefs.ErrFailedPrecondition, "not installed"},
		{"public control port", ManagedConfig{ControlPort: "0.0.0.0:9051"}, errdefs.ErrInvalidArgument, "loopback"},
		{"public socks port", ManagedConfig{SocksPort: "0.0.0.0:9050"}, errdefs.ErrInvalidArgument, "loopback"},
		{"long directory", ManagedConfig{Dir: "/" + strings.Repeat("d", 100)}, errdefs.ErrInvalidArgument, "Unix socket"},
		{"no user", ManagedConfig{User: "no-such-user-here", ControlPort: "127.0.0.1:9051"}, errdefs.ErrInvalidArgument, "no-such-user-here"},
		{"user and unix socket offline", ManagedConfig{User: "root", DisableNetwork: true}, errdefs.ErrInvalidArgument, "loopback ControlPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Dir == "" {
				tc.cfg.Dir = filepath.Join(shortDir(t), "tor")
			}
			tc.cfg.Log = testLog(t)
			m, err := StartManaged(ctx, tc.cfg)
			if err == nil {
				m.Kill()
				t.Fatal("started")
			}
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("%v, want %v saying %q", err, tc.kind, tc.words)
			}
		})
	}

	// A second tor in a running tor's directory stops the first (one directory, one tor).
	dir := filepath.Join(shortDir(t), "tor")
	first := startTor(t, ManagedConfig{Dir: dir})
	second := startTor(t, ManagedConfig{Dir: dir})
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first tor still runs")
	}
	c := newController(t, Config{Address: second.ControlAddress()})
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisedTorComesBack: a supervised tor killed from outside is started again, and
// the controller adds its services again without being asked.
func TestSupervisedTorComesBack(t *testing.T) {
	needTor(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := Supervise(ctx, ManagedConfig{Dir: filepath.Join(shortDir(t), "tor"), DisableNetwork: true, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current()
	defer func() {
		stop, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.Stop(stop); err != nil {
			t.Error(err)
		}
		if cur := s.Current(); cur.Err() == nil && !isDone(cur) {
			t.Errorf("tor pid %d still runs after Stop", cur.Pid())
		}
	}()
	c := newController(t, Config{Address: s.ControlAddress()})
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(ctx, Service{Key: k, Ports: []Port{{80, "127.0.0.1:8080"}}}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	first.Kill()
	for {
		if cur := s.Current(); cur != first {
			if st := c.Services(); st[0].Added {
				break
			}
		}
		if time.Since(killed) > 20*time.Second {
			t.Fatal("tor did not come back with the service")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("tor killed to service added again on the new tor (pid %d): %s", s.Current().Pid(), time.Since(killed).Round(time.Millisecond))
	if ids := current(t, c); !slices.Equal(ids, []string{k.ServiceID()}) {
		t.Fatalf("onions/current %q", ids)
	}
}

func isDone(m *Managed) bool {
	select {
	case <-m.Done():
		return true
	default:
		return false
	}
}

// TestManyServices adds services concurrently, reports how long ADD_ONION takes, and
// how long a restarted tor takes to have them all again.
func TestManyServices(t *testing.T) {
	needTor(t)
	const n = 50
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cfg := ManagedConfig{Dir: filepath.Join(shortDir(t), "tor"), Log: slog.New(slog.DiscardHandler)}
	m := startTor(t, cfg)
	c := newController(t, Config{Address: m.ControlAddress(), Log: slog.New(slog.DiscardHandler)})
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	svcs := make([]Service, n)
	want := make([]string, n)
	for i := range svcs {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		svcs[i] = Service{Key: k, Ports: []Port{{80, fmt.Sprintf("10.88.0.%d:8080", i+2)}}}
		want[i] = k.ServiceID()
	}
	slices.Sort(want)
	// One at a time, for the latency of one ADD_ONION.
	var took []time.Duration
	for _, s := range svcs[:n/2] {
		start := time.Now()
		if _, err := c.Add(ctx, s); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("Add, one at a time: p50 %s, max %s", took[len(took)/2], took[len(took)-1])
	// The rest at once.
	errs := make(chan error, n)
	start := time.Now()
	for _, s := range svcs[n/2:] {
		go func() {
			_, err := c.Add(ctx, s)
			errs <- err
		}()
	}
	for range n - n/2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("Add, %d at once: %s", n-n/2, time.Since(start).Round(time.Microsecond))
	if ids := current(t, c); !slices.Equal(ids, want) {
		t.Fatalf("onions/current holds %d services, want %d", len(ids), n)
	}

	m.Kill()
	restart := time.Now()
	m = startTor(t, cfg)
	started := time.Since(restart)
	for {
		added := 0
		for _, st := range c.Services() {
			if st.Added {
				added++
			}
		}
		if added == n {
			break
		}
		if time.Since(restart) > 30*time.Second {
			t.Fatalf("%d of %d services added again", added, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("tor restarted in %s; all %d services added again %s after the restart began", started.Round(time.Millisecond), n, time.Since(restart).Round(time.Millisecond))
	if ids := current(t, c); !slices.Equal(ids, want) {
		t.Fatalf("onions/current after restart holds %d services, want %d", len(ids), n)
	}
}

// TestKeyHeldElsewhere: a key whose service another control connection holds is refused
// with AlreadyExists, and is not kept wanted.
func TestKeyHeldElsewhere(t *testing.T) {
	needTor(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m := startTor(t, ManagedConfig{Dir: filepath.Join(shortDir(t), "tor")})
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc := Service{Key: k, Ports: []Port{{80, "127.0.0.1:8080"}}}
	a := newController(t, Config{Address: m.ControlAddress()})
	b := newController(t, Config{Address: m.ControlAddress()})
	if _, err := a.Add(ctx, svc); err != nil {
		t.Fatal(err)
	}
	_, err = b.Add(ctx, svc)
	if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), k.Address()) {
		t.Fatalf("second holder: %v", err)
	}
	t.Logf("error: %v", err)
	if st := b.Services(); len(st) != 0 {
		t.Fatalf("a refused service is still wanted: %+v", st)
	}
	// Once the first holder lets it go, the second gets it.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Tor drops the first holder's services when it reads the end of that connection,
	// which it does on its own schedule: until then the key is still held.
	for {
		_, err := b.Add(ctx, svc)
		if err == nil {
			break
		}
		if !errors.Is(err, errdefs.ErrAlreadyExists) || ctx.Err() != nil {
			t.Fatalf("after the first holder closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ids := current(t, b); !slices.Equal(ids, []string{k.ServiceID()}) {
		t.Fatalf("onions/current %q", ids)
	}
}
