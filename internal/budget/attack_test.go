package budget

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestAttackerProcess is the attacker of TestHeldConnections, run as a child process so
// that the server's descriptors are counted alone: it waits for a line on stdin, opens
// BUDGET_ATTACK_CONNS connections to BUDGET_ATTACK_SOCKET, starts HTTP/2 on each, says
// how many it holds, and holds them until stdin closes.
func TestAttackerProcess(t *testing.T) {
	path := os.Getenv("BUDGET_ATTACK_SOCKET")
	if path == "" {
		t.Skip("the attacker of TestHeldConnections; runs only as its child")
	}
	n, err := strconv.Atoi(os.Getenv("BUDGET_ATTACK_CONNS"))
	if err != nil {
		t.Fatal(err)
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	hello := append([]byte(clientPreface), frameBytes(0x4, 0, 0, nil)...)
	conns := make([]net.Conn, 0, n)
	busy := 0
	for len(conns) < n {
		c, err := net.Dial("unix", path)
		if err != nil {
			// EAGAIN: the backlog is full, the server is accepting (and closing) as fast
			// as it can.
			if busy++; !errors.Is(err, syscall.EAGAIN) || busy > 200_000 {
				t.Fatalf("after %d connections: %v", len(conns), err)
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		c.Write(hello) // most are closed by the server already; the client does not care
		conns = append(conns, c)
	}
	fmt.Printf("held %d\n", len(conns))
	io.Copy(io.Discard, in)
	for _, c := range conns {
		c.Close()
	}
}

// attacker is a running TestAttackerProcess.
type attacker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startAttacker(t *testing.T, path string, conns int) *attacker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttackerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BUDGET_ATTACK_SOCKET="+path, "BUDGET_ATTACK_CONNS="+strconv.Itoa(conns))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &attacker{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(a.stop)
	return a
}

// held waits for the attacker to say how many connections it holds.
func (a *attacker) held(t *testing.T, timeout time.Duration) int {
	t.Helper()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		for {
			s, err := a.out.ReadString('\n')
			if err != nil || strings.HasPrefix(s, "held ") {
				ch <- line{s, err}
				return
			}
		}
	}()
	select {
	case l := <-ch:
		if l.err != nil {
			t.Fatalf("attacker: %v", l.err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l.s, "held ")))
		if err != nil {
			t.Fatalf("attacker said %q", l.s)
		}
		return n
	case <-time.After(timeout):
		t.Fatalf("the attacker did not open its connections within %s", timeout)
		return 0
	}
}

// stop ends the attacker: stdin closed, then killed by its pid if it lingers.
func (a *attacker) stop() {
	if a.cmd.ProcessState != nil {
		return
	}
	a.stdin.Close()
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-done
	}
}

func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestHeldConnections is issue 9's S3 and S4: a container opens 20,000 connections to its
// host.sock and holds them. The server's descriptors and memory stay within the budget,
// another container's server answers in under a second throughout, and the memory comes
// back when the attacker goes.
func TestHeldConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	const total = 20000
	// Enough processes for each to stay under the descriptor limit.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	per := int(lim.Max) - 100
	if per < 1000 {
		t.Skipf("the descriptor limit (%d) is too low for 20,000 connections in at most 20 processes", lim.Max)
	}
	attackers := (total + per - 1) / per
	if attackers < 2 {
		attackers = 2
	}
	l := DefaultLimits()
	s, other := serve(t, l), serve(t, l)
	vc := other.client(t)
	if _, err := vc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	var as []*attacker
	for range attackers {
		as = append(as, startAttacker(t, s.path, total/attackers))
	}

	baseFDs, baseHeap, baseRSS := openFDs(t), heapAfterGC(), rssBytes()
	stop := make(chan struct{})
	most := sampler(t, stop)
	live := liveSampler(stop)
	lat := victim(vc, stop)
	start := time.Now()
	for _, a := range as {
		io.WriteString(a.stdin, "go\n")
	}
	held := 0
	for _, a := range as {
		held += a.held(t, 2*time.Minute)
	}
	opened := time.Since(start)
	time.Sleep(2 * time.Second) // the attack holds
	during := s.b.Stats()
	peakRSS := rssBytes()
	close(stop)
	peak, peakLive, latencies := <-most, <-live, <-lat

	for _, a := range as {
		a.stop()
	}
	waitFor(t, 10*time.Second, "the attacker's connections are closed", func() bool {
		st := s.b.Stats()
		return st.Conns == 0 && st.ExcessConns == 0
	})
	afterFDs, afterHeap := openFDs(t), heapAfterGC()

	median, slowest := summary(latencies)
	t.Logf("attackers held %d connections (opened in %s); budget during: %+v", held, opened.Round(time.Millisecond), during)
	t.Logf("descriptors: %d before, %d at most, %d after", baseFDs, peak[0], afterFDs)
	t.Logf("heap+stacks: %.1f MiB before, %.1f MiB at most (%.1f MiB live after GC), %.1f MiB after; MaxBytes %.1f MiB",
		float64(baseHeap)/mib, float64(peak[1])/mib, float64(peakLive)/mib, float64(afterHeap)/mib, float64(s.b.MaxBytes())/mib)
	t.Logf("RSS: %.1f MiB before, %.1f MiB during", float64(baseRSS)/mib, float64(peakRSS)/mib)
	t.Logf("other container: %d checks, median %s, slowest %s", len(latencies), median, slowest)

	if held != total {
		t.Errorf("attackers held %d connections, want %d", held, total)
	}
	if during.DroppedConns < total-int64(l.MaxConns+l.ExcessConns)*10 {
		t.Errorf("only %d connections dropped at accept", during.DroppedConns)
	}
	// The served and excess slots, plus the connection being closed at accept and slack.
	if bound := baseFDs + l.MaxConns + l.ExcessConns + 4; int(peak[0]) > bound {
		t.Errorf("the server held %d descriptors, want at most %d", peak[0], bound)
	}
	if bound := baseHeap + uint64(s.b.MaxBytes()); peakLive > bound {
		t.Errorf("live heap reached %.1f MiB, want at most %.1f MiB (start + MaxBytes)", float64(peakLive)/mib, float64(bound)/mib)
	}
	// Counting garbage not yet collected: the collector lets the heap reach 4 MiB at least.
	if bound := baseHeap + uint64(s.b.MaxBytes()) + 4*mib; peak[1] > bound {
		t.Errorf("heap in use reached %.1f MiB, want at most %.1f MiB (start + MaxBytes + 4 MiB)", float64(peak[1])/mib, float64(bound)/mib)
	}
	if len(latencies) < 50 || slowest >= time.Second {
		t.Errorf("other container: %d checks, slowest %s; want them all under 1s", len(latencies), slowest)
	}
	if afterFDs > baseFDs {
		t.Errorf("descriptors: %d after the attack, %d before", afterFDs, baseFDs)
	}
	if afterHeap > baseHeap+mib {
		t.Errorf("heap after the attack %.1f MiB, before %.1f MiB: the memory did not come back", float64(afterHeap)/mib, float64(baseHeap)/mib)
	}
}

// liveSampler records the most heap left after a collection, every 100ms, until stop.
func liveSampler(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var most uint64
		for {
			most = max(most, heapAfterGC())
			select {
			case <-stop:
				out <- most
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
}
