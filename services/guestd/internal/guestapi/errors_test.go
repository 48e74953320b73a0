package guestapi

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"hearth.dev/internal/errdefs"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/launch"
)

// stream stands in for a gRPC stream when a test calls a handler directly: it hands out
// reqs, then waits for ctx; it keeps what the handler sent.
type stream[Req, Resp any] struct {
	grpc.ServerStream // nil: handlers use only Context, Send and Recv
	ctx               context.Context
	reqs              []*Req
	sent              []*Resp
}

func (s *stream[Req, Resp]) Context() context.Context { return s.ctx }

func (s *stream[Req, Resp]) Send(r *Resp) error {
	s.sent = append(s.sent, r)
	return s.ctx.Err()
}

func (s *stream[Req, Resp]) Recv() (*Req, error) {
	if len(s.reqs) > 0 {
		r := s.reqs[0]
		s.reqs = s.reqs[1:]
		return r, nil
	}
	<-s.ctx.Done()
	return nil, io.EOF
}

func execCall(reqs ...*guestv1.ExecRequest) func(*Server) error {
	return func(s *Server) error {
		return s.Exec(&stream[guestv1.ExecRequest, guestv1.ExecResponse]{ctx: context.Background(), reqs: reqs})
	}
}

func startReq(daemon string, argv ...string) *guestv1.ExecRequest {
	return &guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Start{Start: &guestv1.ExecStart{Daemon: daemon, Argv: argv}}}
}

func logsCall(req *guestv1.LogsRequest) func(*Server) error {
	return func(s *Server) error {
		return s.Logs(req, &stream[guestv1.LogsRequest, guestv1.LogsResponse]{ctx: context.Background()})
	}
}

func TestHandlerErrorKinds(t *testing.T) {
	pkg := header + `
daemons:
  app: {image: i, command: ["exec sleep 100"]}
  stubborn: {image: i, command: ["trap '' TERM; echo up; while true; do sleep 0.05; done"], stop: {timeout: 300ms}}
`
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		pkg  string // "" for a container without a package
		// setup changes the server before the call
		setup func(t *testing.T, s *Server)
		call  func(*Server) error
		want  error
		text  string // in the message
	}{
		{"start without a package", "", nil, func(s *Server) error {
			_, err := s.StartDaemon(context.Background(), &guestv1.StartDaemonRequest{Name: "app"})
			return err
		}, errdefs.ErrFailedPrecondition, "runs no package"},
		{"logs without a package", "", nil, logsCall(&guestv1.LogsRequest{}), errdefs.ErrFailedPrecondition, "runs no package"},
		{"exec without a package", "", nil, execCall(startReq("app", "true")), errdefs.ErrFailedPrecondition, "runs no package"},
		{"watch without a package", "", nil, func(s *Server) error {
			return s.WatchStatus(&guestv1.WatchStatusRequest{}, &stream[guestv1.WatchStatusRequest, guestv1.WatchStatusResponse]{ctx: context.Background()})
		}, errdefs.ErrFailedPrecondition, "runs no package"},
		{"start an unknown daemon", pkg, nil, func(s *Server) error {
			_, err := s.StartDaemon(context.Background(), &guestv1.StartDaemonRequest{Name: "nope"})
			return err
		}, errdefs.ErrNotFound, `no daemon or oneshot "nope"; it has app, stubborn`},
		{"start no daemon", pkg, nil, func(s *Server) error {
			_, err := s.StartDaemon(context.Background(), &guestv1.StartDaemonRequest{})
			return err
		}, errdefs.ErrInvalidArgument, "name a daemon or oneshot of p (app, stubborn)"},
		{"stop an unknown daemon", pkg, nil, func(s *Server) error {
			_, err := s.StopDaemon(context.Background(), &guestv1.StopDaemonRequest{Name: "nope"})
			return err
		}, errdefs.ErrNotFound, `"nope"`},
		{"restart an unknown daemon", pkg, nil, func(s *Server) error {
			_, err := s.RestartDaemon(context.Background(), &guestv1.RestartDaemonRequest{Name: "nope"})
			return err
		}, errdefs.ErrNotFound, `"nope"`},
		{"stop given up by the caller", pkg, func(t *testing.T, s *Server) {
			s.sup.StartAll()
			waitFor(t, "stubborn up", func() bool { return len(s.sup.Log("stubborn").Tail(1)) > 0 })
		}, func(s *Server) error {
			_, err := s.StopDaemon(cancelled, &guestv1.StopDaemonRequest{Name: "stubborn"})
			return err
		}, context.Canceled, "stop stubborn"},
		{"logs of an unknown daemon", pkg, nil, logsCall(&guestv1.LogsRequest{Daemon: "nope"}), errdefs.ErrNotFound, `"nope"`},
		{"exec without a start", pkg, nil, execCall(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Stdin{Stdin: []byte("x")}}), errdefs.ErrInvalidArgument, "must say what to run"},
		{"exec without argv", pkg, nil, execCall(startReq("app")), errdefs.ErrInvalidArgument, "must say what to run"},
		{"exec in an unknown daemon", pkg, nil, execCall(startReq("nope", "true")), errdefs.ErrNotFound, `"nope"`},
		{"exec in a daemon without a subcontainer", pkg, func(t *testing.T, s *Server) {
			s.procs = launch.New(nil, rp, nil, nil, quiet) // the real launcher: it made no subcontainer
		}, execCall(startReq("app", "true")), errdefs.ErrFailedPrecondition, "app has no subcontainer: it is not running; start it first"},
		{"exec that cannot start", pkg, func(t *testing.T, s *Server) {
			os.RemoveAll(s.procs.(*hostLaunch).dir) // its working directory
		}, execCall(startReq("app", "true")), errdefs.ErrFailedPrecondition, "start [true]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.pkg)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			err := tc.call(s)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v, want %v with %q", err, tc.want, tc.text)
			}
			if errdefs.Code(err) != errdefs.Code(tc.want) {
				t.Errorf("code %v, want %v", errdefs.Code(err), errdefs.Code(tc.want))
			}
		})
	}
}

func TestGetInfoCounts(t *testing.T) {
	s := newTestServer(t, "")
	info := func() *guestv1.GuestInfo {
		r, err := s.GetInfo(context.Background(), &guestv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetInfo()
	}
	before := info()
	if before.GetGoroutines() == 0 || before.GetOpenFds() < 3 {
		t.Fatalf("info %v: want goroutines and descriptors counted", before)
	}
	var files []*os.File
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	stop := make(chan struct{})
	for range 5 {
		go func() { <-stop }()
	}
	during := info()
	close(stop)
	for _, f := range files {
		f.Close()
	}
	if during.GetOpenFds() != before.GetOpenFds()+10 {
		t.Errorf("with 10 more files open: %d descriptors, want %d", during.GetOpenFds(), before.GetOpenFds()+10)
	}
	if during.GetGoroutines() < before.GetGoroutines()+5 {
		t.Errorf("with 5 more goroutines: %d, want at least %d", during.GetGoroutines(), before.GetGoroutines()+5)
	}
	if s.info.GetGoroutines() != 0 {
		t.Error("GetInfo changed the server's own info")
	}
}
