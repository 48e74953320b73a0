package integration

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"hearth.dev/internal/dial"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

const leaksManifest = `
id: leaks
version: 0.1.0
images:
  bb: {ref: bb}
daemons:
  web:
    image: bb
    command: [/bin/sh, -c, "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ready: {http: {port: 8080, path: /}, interval: 10ms}
  talk:
    image: bb
    command: [/bin/sh, -c, "while true; do echo tick; sleep 0.05; done"]
`

// counts are what leaks would grow: guestd's goroutines and descriptors (it reports them)
// and containerd-lite's descriptors (which forwards every call).
type counts struct{ guestGoroutines, guestFDs, cldFDs int }

// TestGuestdNoLeaks: 1,000 followed logs, 1,000 execs and 1,000 ready probes (an HTTP
// check every 10ms) through containerd-lite leave guestd's goroutines and descriptors, and
// containerd-lite's descriptors, where they were.
func TestGuestdNoLeaks(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	importTestImages(t, l)
	const name = "leaks"
	l.startManifest(t, name, leaksManifest)
	l.waitDaemons(t, name, "up", 30*time.Second, allReady("web", "talk"))
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := guestv1.NewGuestServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "hearth-container", name)
	measure := func() counts {
		t.Helper()
		resp, err := cl.GetInfo(ctx, &guestv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir("/proc/" + itoa32(int32(l.cld.cmd.Process.Pid)) + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		return counts{int(resp.GetInfo().GetGoroutines()), int(resp.GetInfo().GetOpenFds()), len(ents)}
	}
	// Let the first calls' lazily made things (connections, buffers) exist before the baseline.
	for i := 0; i < 3; i++ {
		followOnce(t, ctx, cl)
		execOnce(t, ctx, cl)
	}
	before := measure()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		followOnce(t, ctx, cl)
	}
	for i := 0; i < 1000; i++ {
		execOnce(t, ctx, cl)
	}
	// 1,000 probes at one every 10ms.
	if rest := 10*time.Second + 500*time.Millisecond - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	t.Logf("1,000 follows, 1,000 execs and >= 1,000 probes in %v", time.Since(start).Round(time.Millisecond))
	var after counts
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = measure()
		// A probe may be in flight when measured: one goroutine and descriptor of slack.
		if after.guestGoroutines <= before.guestGoroutines+1 && after.guestFDs <= before.guestFDs+1 && after.cldFDs <= before.cldFDs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1,000 follows, execs and probes: %+v, before: %+v", after, before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("before %+v, after %+v", before, after)
	if ds := l.daemons(t, name); ds["web"].GetRestarts() != 0 || ds["talk"].GetRestarts() != 0 {
		t.Errorf("daemons restarted meanwhile: %v", ds)
	}
}

// followOnce follows the logs until the first line, then leaves.
func followOnce(t *testing.T, ctx context.Context, cl guestv1.GuestServiceClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := cl.Logs(ctx, &guestv1.LogsRequest{Follow: true, Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("follow: %v", err)
	}
}

// execOnce runs true in web's subcontainer and reads it to its exit.
func execOnce(t *testing.T, ctx context.Context, cl guestv1.GuestServiceClient) {
	t.Helper()
	s, err := cl.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Start{Start: &guestv1.ExecStart{Daemon: "web", Argv: []string{"true"}}}}))
	must(t, s.CloseSend())
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("exec ended without an exit")
		}
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		if e := m.GetExit(); e != nil {
			if e.GetCode() != 0 {
				t.Fatalf("true exited %v", e)
			}
			return
		}
	}
}
