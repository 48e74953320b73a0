// Package guestclient is containerd-lite's client of the guestd inside a container:
// connections come from a dialer that checks the socket it reaches (hostfs.Tree.DialGuest),
// never from a path the container could have replaced.
package guestclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// Dialer connects to one container's guestd.
type Dialer func(ctx context.Context) (net.Conn, error)

// Conn returns a client connection to the guestd that d reaches.
func Conn(container string, d Dialer, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return dial.Func("guestd-of-"+container, d, opts...)
}

// Info asks guestd who it is.
func Info(ctx context.Context, container string, d Dialer) (*guestv1.GuestInfo, error) {
	conn, err := Conn(container, d)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := guestv1.NewGuestServiceClient(conn).GetInfo(ctx, &guestv1.GetInfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("ask guestd in %q: %w", container, errdefs.FromGRPC(err))
	}
	return resp.GetInfo(), nil
}

// Wait asks guestd until it answers or ctx ends. A start waits here for guestd to boot
// (ten milliseconds or so). Each try first connects to guestd's socket alone, which fails
// in microseconds while there is none; only a connection made is handed to a gRPC client
// for the question (a gRPC client made and dropped per try cost far more CPU, and many
// starts wait at once when the host boots). Tries come every millisecond for
// waitPollFast, then every waitPollMax: the pause after a try is added to the start.
func Wait(ctx context.Context, container string, d Dialer) (*guestv1.GuestInfo, error) {
	start := time.Now()
	for {
		info, err := try(ctx, container, d)
		if err == nil {
			return info, nil
		}
		delay := time.Millisecond
		if time.Since(start) > waitPollFast {
			delay = waitPollMax
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}

// try is one of Wait's questions: a connection, then GetInfo over it.
func try(ctx context.Context, container string, d Dialer) (*guestv1.GuestInfo, error) {
	c, err := d(ctx)
	if err != nil {
		return nil, err
	}
	first := make(chan net.Conn, 1)
	first <- c
	reuse := func(ctx context.Context) (net.Conn, error) {
		select {
		case c := <-first:
			return c, nil
		default:
			return d(ctx)
		}
	}
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := Info(actx, container, reuse)
	select {
	case c := <-first: // the client never dialed
		c.Close()
	default:
	}
	return info, err
}

// waitPollFast is how long Wait tries every millisecond: a guestd that has not answered by
// then is slow (a loaded host), and trying less often leaves it the CPU.
const waitPollFast = 200 * time.Millisecond

// waitPollMax is the pause between two of Wait's tries after waitPollFast.
const waitPollMax = 4 * time.Millisecond

// WaitReady watches guestd until every daemon is ready and every oneshot (the hooks run
// at this start among them) is done. A oneshot that fails ends the wait at once with its
// exit and the last lines of its output; when ctx ends first, the error names each job
// not there yet, its state and its last health result.
func WaitReady(ctx context.Context, container string, d Dialer) error {
	conn, err := Conn(container, d)
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := guestv1.NewGuestServiceClient(conn)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cl.WatchStatus(wctx, &guestv1.WatchStatusRequest{})
	if err != nil {
		return fmt.Errorf("watch the daemons of %q: %w", container, errdefs.FromGRPC(err))
	}
	jobs := map[string]*guestv1.Daemon{}
	// The first messages are every job's state now; a status poll tells how many.
	st, err := cl.GetStatus(ctx, &guestv1.GetStatusRequest{})
	if err != nil {
		return fmt.Errorf("status of %q: %w", container, errdefs.FromGRPC(err))
	}
	for _, j := range st.GetDaemons() {
		jobs[j.GetName()] = j
	}
	for {
		if err := settled(ctx, cl, container, jobs); err != errNotYet {
			return err
		}
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return notReady(container, jobs, ctx.Err())
			}
			return fmt.Errorf("watch the daemons of %q: %w", container, errdefs.FromGRPC(err))
		}
		jobs[m.GetDaemon().GetName()] = m.GetDaemon()
	}
}

var errNotYet = errors.New("not yet")

// settled says whether the jobs are all there (nil), one failed (its error), or not yet.
func settled(ctx context.Context, cl guestv1.GuestServiceClient, container string, jobs map[string]*guestv1.Daemon) error {
	all := true
	for _, n := range slices.Sorted(maps.Keys(jobs)) {
		j := jobs[n]
		switch {
		case j.GetOneshot() && j.GetState() == guestv1.DaemonState_DAEMON_STATE_FAILED:
			return fmt.Errorf("%s %s failed (%s)%s: %w", kind(n), strings.TrimPrefix(n, manifest.HookJobPrefix), exitText(j.GetLastExit()), output(ctx, cl, n), errdefs.ErrFailedPrecondition)
		case j.GetOneshot() && j.GetState() != guestv1.DaemonState_DAEMON_STATE_DONE:
			all = false
		case !j.GetOneshot() && j.GetState() != guestv1.DaemonState_DAEMON_STATE_READY:
			all = false
		}
	}
	if all {
		return nil
	}
	return errNotYet
}

func kind(job string) string {
	if strings.HasPrefix(job, manifest.HookJobPrefix) {
		return "hook"
	}
	return "oneshot"
}

func exitText(e *guestv1.Exit) string {
	switch {
	case e == nil:
		return "no exit status"
	case e.GetSignal() != "":
		return "killed by " + e.GetSignal()
	}
	return fmt.Sprintf("exit status %d", e.GetCode())
}

// output quotes the last lines a job wrote.
func output(ctx context.Context, cl guestv1.GuestServiceClient, job string) string {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := cl.Logs(lctx, &guestv1.LogsRequest{Daemon: job, Tail: 20})
	if err != nil {
		return ""
	}
	var lines []string
	for {
		m, err := s.Recv()
		if err != nil {
			break
		}
		lines = append(lines, "  | "+m.GetText())
	}
	if len(lines) == 0 {
		return ", with no output"
	}
	return ", its output ending:\n" + strings.Join(lines, "\n") + "\n"
}

func notReady(container string, jobs map[string]*guestv1.Daemon, cause error) error {
	var waiting []string
	for _, n := range slices.Sorted(maps.Keys(jobs)) {
		j := jobs[n]
		if (j.GetOneshot() && j.GetState() == guestv1.DaemonState_DAEMON_STATE_DONE) || (!j.GetOneshot() && j.GetState() == guestv1.DaemonState_DAEMON_STATE_READY) {
			continue
		}
		w := fmt.Sprintf("%s is %s", n, strings.ToLower(strings.TrimPrefix(j.GetState().String(), "DAEMON_STATE_")))
		if j.GetHealth() != "" {
			w += " (" + j.GetHealth() + ")"
		}
		if j.GetRestarts() > 0 {
			w += fmt.Sprintf(", restarted %d times, last %s", j.GetRestarts(), exitText(j.GetLastExit()))
		}
		waiting = append(waiting, w)
	}
	return fmt.Errorf("%q not ready in time: %s: %w", container, strings.Join(waiting, "; "), errors.Join(cause, errdefs.ErrUnavailable))
}

// Exec runs argv in the subcontainer of the container's daemon (as its user, with env
// added to its environment) and returns its exit code and its output (stdout then
// stderr, each cut to its last 64 KiB).
func Exec(ctx context.Context, container string, d Dialer, daemon string, argv []string, env map[string]string) (int, string, error) {
	conn, err := Conn(container, d)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	s, err := guestv1.NewGuestServiceClient(conn).Exec(ctx)
	if err != nil {
		return 0, "", errdefs.FromGRPC(err)
	}
	if err := s.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Start{Start: &guestv1.ExecStart{Daemon: daemon, Argv: argv, Env: env}}}); err != nil {
		return 0, "", errdefs.FromGRPC(err)
	}
	if err := s.CloseSend(); err != nil {
		return 0, "", errdefs.FromGRPC(err)
	}
	var out, errOut []byte
	keep := func(b, add []byte) []byte {
		b = append(b, add...)
		if len(b) > 64<<10 {
			b = b[len(b)-64<<10:]
		}
		return b
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return 0, string(out) + string(errOut), fmt.Errorf("exec in %s/%s: %w", container, daemon, errdefs.FromGRPC(err))
		}
		switch {
		case m.GetStdout() != nil:
			out = keep(out, m.GetStdout())
		case m.GetStderr() != nil:
			errOut = keep(errOut, m.GetStderr())
		case m.GetExit() != nil:
			e := m.GetExit()
			code := int(e.GetCode())
			if e.GetSignal() != "" && code == 0 {
				code = -1
			}
			return code, string(out) + string(errOut), nil
		}
	}
}
