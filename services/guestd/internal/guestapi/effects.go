package guestapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/jsonrpc"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/guestd/internal/effects"
	"hearth.dev/services/guestd/internal/effectsock"
	"hearth.dev/services/guestd/internal/launch"
	"hearth.dev/services/guestd/internal/reaper"
)

// The effects socket's limits (see internal/jsonrpc): lines up to jsonrpc.MaxLineBytes
// (1 MiB), batches up to jsonrpc.MaxBatch (1,000 calls).
const (
	effectsMaxConns    = 16
	effectsMaxInFlight = 8
	effectsMaxQueued   = 4 << 20
	effectsIdleTimeout = 30 * time.Second
)

// Exec's limits: output kept per stream, the default and longest timeouts, and how many
// commands run at once (the next calls wait).
const (
	execMaxOutput      = 1 << 20
	execDefaultTimeout = 60
	execMaxTimeout     = 3600
	execMaxRunning     = 4
)

// effectsListener returns the listener of the effects socket: the one init handed down
// (it holds the socket, so that the path bound into subcontainers stays the same socket
// across restarts of the serving guestd), else a new one at path, or nil for "".
func effectsListener(path string) (net.Listener, error) {
	if fd, err := strconv.Atoi(os.Getenv(effectsock.FDEnv)); err == nil && fd > 2 {
		f := os.NewFile(uintptr(fd), "effects.sock")
		defer f.Close()
		l, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("the effects socket init handed down (fd %d): %w", fd, err)
		}
		return l, nil
	}
	if path == "" {
		return nil, nil
	}
	return effectsock.Listen(path)
}

// effectsServer serves the effects on l until ctx ends.
type effectsServer struct {
	srv  *jsonrpc.Server
	l    net.Listener
	done chan error
}

// startEffects builds the effects from the proto and serves them on l.
func (s *Server) startEffects(ctx context.Context, l net.Listener, host grpc.ClientConnInterface) (*effectsServer, error) {
	h := &lazyEffects{build: func() (*effects.Handler, error) { return s.newEffects(host) }}
	es := &effectsServer{
		srv: &jsonrpc.Server{
			Handler: h, Logger: s.env.Logger,
			MaxConns: effectsMaxConns, MaxInFlight: effectsMaxInFlight, MaxQueuedBytes: effectsMaxQueued, IdleTimeout: effectsIdleTimeout,
		},
		l: l, done: make(chan error, 1),
	}
	go func() { es.done <- es.srv.Serve(ctx, l) }()
	s.env.Logger.Info("serving effects", "socket", l.Addr().String())
	return es, nil
}

// lazyEffects builds the effects' handler on the first call: building it reads the
// effects' methods and options from host.proto's descriptors, which the protobuf runtime
// then keeps unmarshalled (~0.3 MiB); a package that never calls an effect never pays.
type lazyEffects struct {
	build func() (*effects.Handler, error)
	once  sync.Once
	h     *effects.Handler
	err   error
}

// Call implements jsonrpc.Handler.
func (l *lazyEffects) Call(ctx context.Context, name string, params json.RawMessage) (any, error) {
	l.once.Do(func() { l.h, l.err = l.build() })
	if l.err != nil {
		return nil, fmt.Errorf("the effects: %w", l.err)
	}
	return l.h.Call(ctx, name, params)
}

// newEffects builds the effects' handler from hostv1's proto.
func (s *Server) newEffects(host grpc.ClientConnInterface) (*effects.Handler, error) {
	return effects.New(host, map[protoreflect.FullName]effects.LocalFunc{
		"hearth.host.v1.SubcontainerService.Exec": s.execEffect,
	}, map[string]effects.BeforeFunc{
		"subcontainer.destroy": func(ctx context.Context, req proto.Message) error {
			if s.launcher == nil {
				return nil
			}
			return s.launcher.Unequip(req.(*hostv1.DestroyOverlayRequest).GetName())
		},
	})
}

// stop lets the calls in flight finish (for up to a few seconds) and stops serving.
func (es *effectsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = es.srv.Shutdown(ctx)
	<-es.done
}

// execEffect implements SubcontainerService.Exec (subcontainer.exec).
func (s *Server) execEffect(ctx context.Context, m proto.Message) (proto.Message, error) {
	req := m.(*hostv1.ExecRequest)
	if s.launcher == nil || s.host == nil {
		return nil, fmt.Errorf("this container runs no package, so it has no images to run commands from: %w", errdefs.ErrFailedPrecondition)
	}
	name := req.GetSubcontainer()
	if name == "" {
		return nil, jsonrpc.InvalidParams("subcontainer", "name the subcontainer to run in (one made with subcontainer.create)")
	}
	if len(req.GetArgv()) == 0 || req.GetArgv()[0] == "" {
		return nil, jsonrpc.InvalidParams("argv", "give the program to run and its arguments, such as [\"/bin/sh\",\"-c\",\"echo hi\"]")
	}
	timeout := req.GetTimeoutSeconds()
	if timeout == 0 {
		timeout = execDefaultTimeout
	}
	if timeout > execMaxTimeout {
		return nil, jsonrpc.InvalidParams("timeout_seconds", fmt.Sprintf("at most %d, got %d", execMaxTimeout, timeout))
	}
	if w := req.GetWorkdir(); w != "" && !path.IsAbs(w) {
		return nil, jsonrpc.InvalidParams("workdir", fmt.Sprintf("want an absolute path inside the subcontainer, got %q", w))
	}
	for k := range req.GetEnv() {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, jsonrpc.InvalidParams("env."+k, "a variable's name holds no '=' or NUL and is not empty")
		}
	}
	list, err := s.host.ListOverlays(ctx, &hostv1.ListOverlaysRequest{})
	if err != nil {
		return nil, fmt.Errorf("list the subcontainers: %w", errdefs.FromGRPC(err))
	}
	var ov *hostv1.Overlay
	var names []string
	for _, o := range list.GetOverlays() {
		names = append(names, o.GetName())
		if o.GetName() == name {
			ov = o
		}
	}
	if ov == nil {
		return nil, fmt.Errorf("no subcontainer %q (there are: %s); make it with subcontainer.create: %w", name, strings.Join(names, ", "), errdefs.ErrNotFound)
	}
	select {
	case s.execSlots <- struct{}{}:
		defer func() { <-s.execSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cmd, err := s.launcher.BuildExec(name, ov.GetImage(), req.GetArgv(), req.GetEnv(), req.GetWorkdir())
	if err != nil {
		return nil, fmt.Errorf("subcontainer.exec in %s: %w", name, err)
	}
	return runCaptured(ctx, s.launcher, cmd, req.GetStdin(), time.Duration(timeout)*time.Second, func(e error) error {
		return fmt.Errorf("subcontainer.exec %q in %s: %w", req.GetArgv(), name, e)
	})
}

// spawner starts built commands and signals them (the launcher).
type spawner interface {
	Spawn(c *launch.Command) (int, <-chan reaper.Exit, error)
	Signal(pid int, sig syscall.Signal) error
}

// runCaptured runs cmd with stdin, keeps up to execMaxOutput of each output stream, and
// kills its process group when timeout passes or ctx ends.
func runCaptured(ctx context.Context, sp spawner, cmd *launch.Command, stdin string, timeout time.Duration, wrap func(error) error) (*hostv1.ExecResponse, error) {
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	var pipes [3][2]*os.File
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, wrap(err)
		}
		opened = append(opened, r, w)
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Attr.Files = []uintptr{pipes[0][0].Fd(), pipes[1][1].Fd(), pipes[2][1].Fd()}
	pid, exited, err := sp.Spawn(cmd)
	pipes[0][0].Close()
	pipes[1][1].Close()
	pipes[2][1].Close()
	if err != nil {
		return nil, wrap(fmt.Errorf("start: %w: %w", err, errdefs.ErrFailedPrecondition))
	}
	go func() {
		_, _ = io.WriteString(pipes[0][1], stdin)
		pipes[0][1].Close()
	}()
	var truncated atomic.Bool
	outs := make([][]byte, 2)
	var copies sync.WaitGroup
	for i, r := range []*os.File{pipes[1][0], pipes[2][0]} {
		copies.Go(func() {
			buf := make([]byte, 0, 4096)
			chunk := make([]byte, 32<<10)
			for {
				n, err := r.Read(chunk)
				if n > 0 {
					keep := min(n, execMaxOutput-len(buf))
					buf = append(buf, chunk[:keep]...)
					if keep < n {
						truncated.Store(true)
					}
				}
				if err != nil {
					outs[i] = buf
					return
				}
			}
		})
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var e reaper.Exit
	var failure error
	select {
	case e = <-exited:
	case <-tctx.Done():
		_ = sp.Signal(pid, syscall.SIGKILL)
		e = <-exited
		failure = ctx.Err()
		if failure == nil {
			failure = fmt.Errorf("still running after %v, killed: %w", timeout, context.DeadlineExceeded)
		}
	}
	// Output that descendants still hold open flows for a second more at most.
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(time.Second):
		pipes[1][0].Close()
		pipes[2][0].Close()
		<-copied
	}
	if failure != nil {
		return nil, wrap(failure)
	}
	resp := &hostv1.ExecResponse{
		ExitCode:  int32(e.Code),
		Stdout:    strings.ToValidUTF8(string(outs[0]), "\uFFFD"),
		Stderr:    strings.ToValidUTF8(string(outs[1]), "\uFFFD"),
		Truncated: truncated.Load(),
	}
	if e.Code < 0 {
		resp.Signal = unix.SignalName(e.Signal)
	}
	return resp, nil
}
