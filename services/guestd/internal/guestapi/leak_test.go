package guestapi

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/leakcheck"
	"hearth.dev/services/guestd/internal/supervisor"
)

// 1,000 followed logs, started and cancelled over a real socket while two daemons write,
// leave guestd's goroutines, descriptors and followers as they found them.
func TestLogFollowsLeakNothing(t *testing.T) {
	s := newTestServer(t, header+`
daemons:
  a: {image: i, command: ["while true; do echo a; sleep 0.05; done"]}
  b: {image: i, command: ["while true; do echo b >&2; sleep 0.05; done"]}
`)
	s.sup.StartAll()
	waitFor(t, "both daemons logged", func() bool { return len(s.sup.Log("a").Tail(1)) > 0 && len(s.sup.Log("b").Tail(1)) > 0 })
	c := serve(t, s)
	if _, err := c.GetInfo(context.Background(), &guestv1.GetInfoRequest{}); err != nil {
		t.Fatal(err) // the connection is up before counting
	}
	base := leakcheck.Take(t)
	start := time.Now()
	const n = 1000
	for i := range n {
		req := &guestv1.LogsRequest{Follow: true, Tail: 1}
		if i%2 == 1 {
			req.Daemon = "b"
		}
		ctx, cancel := context.WithCancel(context.Background())
		st, err := c.Logs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		// The tail (a line of each daemon asked for) comes once every follower is in
		// place; now and then wait for a line written after it too.
		lines := 2
		if req.Daemon != "" {
			lines = 1
		}
		if i%100 == 0 {
			lines++
		}
		for range lines {
			if _, err := st.Recv(); err != nil {
				t.Fatalf("follow %d: %v", i, err)
			}
		}
		cancel()
		if _, err := st.Recv(); status.Code(err) != codes.Canceled {
			// Lines already in flight may come first.
			for err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != codes.Canceled {
				t.Fatalf("follow %d after cancel: %v", i, err)
			}
		}
	}
	after := leakcheck.Settle(t, base, 5*time.Second)
	for _, name := range []string{"a", "b"} {
		if f := s.sup.Log(name).Followers(); f != 0 {
			t.Errorf("%s's log has %d followers after the calls ended", name, f)
		}
	}
	t.Logf("%d follows in %v; %v before, %v after", n, time.Since(start).Round(time.Millisecond), base, after)
}

// 1,000 execs over a real socket, some run to their end, some left by their caller with a
// child in the background, some on a terminal: every process is reaped, and guestd's
// goroutines and descriptors come back to where they were.
func TestExecsLeakNothing(t *testing.T) {
	s := newTestServer(t, header+"daemons:\n  app: {image: i, command: [\"exec sleep 100\"]}\n")
	s.sup.StartAll()
	waitFor(t, "app running", func() bool { return s.sup.Status()[0].State == supervisor.Ready })
	c := serve(t, s)
	if _, err := c.GetInfo(context.Background(), &guestv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		stdout, stderr string
		exit           *guestv1.Exit
		err            error
	}
	// exec runs argv; with leave, it cancels the call once the first output came.
	exec := func(argv []string, tty, leave bool) result {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := c.Exec(ctx)
		if err != nil {
			return result{err: err}
		}
		start := &guestv1.ExecStart{Daemon: "app", Argv: argv, Tty: tty}
		if err := st.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Start{Start: start}}); err != nil {
			return result{err: err}
		}
		if !tty {
			_ = st.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_CloseStdin{CloseStdin: true}})
		}
		var r result
		for {
			m, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					r.err = err
				}
				return r
			}
			r.stdout += string(m.GetStdout())
			r.stderr += string(m.GetStderr())
			if m.GetExit() != nil {
				r.exit = m.GetExit()
			}
			if leave && r.stdout != "" {
				cancel()
			}
		}
	}
	base := leakcheck.Take(t)
	start := time.Now()
	const n = 1000
	for i := range n {
		switch i % 4 {
		case 0, 1: // runs to its end
			r := exec([]string{"sh", "-c", "echo out; echo err >&2; exit 3"}, false, false)
			if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" || r.exit.GetCode() != 3 {
				t.Fatalf("exec %d: %+v", i, r)
			}
		case 2: // the caller goes away; the command has a child holding its output
			r := exec([]string{"sh", "-c", "sleep 100 & echo started; wait"}, false, true)
			if status.Code(r.err) != codes.Canceled || r.stdout != "started\n" {
				t.Fatalf("exec %d: %+v", i, r)
			}
		case 3: // on a terminal, the caller goes away
			r := exec([]string{"sh", "-c", "echo started; sleep 100"}, true, true)
			if status.Code(r.err) != codes.Canceled || !hasPrefix([]byte(r.stdout), "started") {
				t.Fatalf("exec %d (tty): %+v", i, r)
			}
		}
	}
	after := leakcheck.Settle(t, base, 5*time.Second)
	t.Logf("%d execs in %v; %v before, %v after", n, time.Since(start).Round(time.Millisecond), base, after)
}
