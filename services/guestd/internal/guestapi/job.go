package guestapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/reaper"
)

// Limits of RunJob.
const (
	maxJobStdin  = 1 << 20
	maxJobOutput = 1 << 20
	// jobDrain is how long output a job's leftovers hold open is waited for after it ends.
	jobDrain = 2 * time.Second
)

// subcontainers is what RunJob needs beyond building and spawning: a fresh subcontainer
// of the job's own, and its removal (launch.Launcher).
type subcontainers interface {
	Prepare(ctx context.Context, name string, spec *manifest.Daemon, fresh bool) error
	Release(ctx context.Context, name string) error
	Cleanup(name string)
}

var jobSeq atomic.Uint64

// jobName is a subcontainer name for a job that no job of the package has.
func (s *Server) jobName() string {
	m := s.bundle.Manifest
	for {
		n := fmt.Sprintf("job-%d", jobSeq.Add(1))
		if m.Daemons[n] == nil && m.Oneshots[n] == nil {
			return n
		}
	}
}

// RunJob implements GuestService: a command once, in a fresh subcontainer of its own,
// its input given, its output kept up to maxJobOutput per stream. The subcontainer and
// every process left in it go before RunJob returns.
func (s *Server) RunJob(ctx context.Context, req *guestv1.RunJobRequest) (*guestv1.RunJobResponse, error) {
	if err := s.needPackage(); err != nil {
		return nil, err
	}
	m := s.bundle.Manifest
	if _, ok := m.Images[req.GetImage()]; !ok {
		return nil, fmt.Errorf("%s has no image %q: %w", m.ID, req.GetImage(), errdefs.ErrInvalidArgument)
	}
	if len(req.GetStdin()) > maxJobStdin {
		return nil, fmt.Errorf("stdin is %d bytes, at most %d: %w", len(req.GetStdin()), maxJobStdin, errdefs.ErrInvalidArgument)
	}
	timeout := manifest.DefaultActionTimeout
	if d := req.GetTimeout(); d != nil {
		timeout = d.AsDuration()
		if timeout <= 0 || timeout > manifest.MaxActionTimeout {
			return nil, fmt.Errorf("timeout %v: give one above 0 and at most %v: %w", timeout, manifest.MaxActionTimeout, errdefs.ErrInvalidArgument)
		}
	}
	l, ok := s.procs.(subcontainers)
	if !ok {
		return nil, fmt.Errorf("this guestd cannot make subcontainers for jobs: %w", errdefs.ErrUnimplemented)
	}
	spec := &manifest.Daemon{Image: req.GetImage(), Command: slices.Clone(req.GetArgv()), Env: req.GetEnv(), User: req.GetUser(), Workdir: req.GetWorkdir(),
		Restart: manifest.Restart{Policy: "never"}}
	if len(spec.Command) == 0 {
		spec.Command = nil // the image's entrypoint and cmd
	}
	for _, mt := range req.GetMounts() {
		spec.Mounts = append(spec.Mounts, manifest.Mount{Volume: mt.GetVolume(), Path: mt.GetPath(), ReadOnly: mt.GetReadOnly()})
	}
	name := s.jobName()
	log := s.env.Logger.With("job", req.GetName(), "subcontainer", name)
	if err := l.Prepare(ctx, name, spec, true); err != nil {
		return nil, fmt.Errorf("job %s: %w", req.GetName(), err)
	}
	defer func() {
		l.Cleanup(name)
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Release(rctx, name); err != nil {
			log.Warn("job: remove its subcontainer", "error", err)
		}
	}()
	cmd, err := s.procs.Build(name, spec, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", req.GetName(), err)
	}
	var pipes [3][2]*os.File
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("job %s: pipes: %w", req.GetName(), err)
		}
		opened = append(opened, r, w)
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Attr.Files = []uintptr{pipes[0][0].Fd(), pipes[1][1].Fd(), pipes[2][1].Fd()}
	pid, exited, err := s.procs.Spawn(cmd)
	for _, f := range []*os.File{pipes[0][0], pipes[1][1], pipes[2][1]} {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: start %v: %w: %w", req.GetName(), cmd.Argv, err, errdefs.ErrFailedPrecondition)
	}
	log.Info("job started", "image", req.GetImage(), "argv", cmd.Argv, "pid", pid)
	start := time.Now()
	go func() {
		// A job that never reads its input gets EPIPE here once it ends.
		_, _ = pipes[0][1].Write(req.GetStdin())
		pipes[0][1].Close()
	}()
	outs := [2]*capped{{max: maxJobOutput}, {max: maxJobOutput}}
	var copies sync.WaitGroup
	for i := range outs {
		copies.Go(func() { _, _ = io.Copy(outs[i], pipes[i+1][0]) })
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var e reaper.Exit
	timedOut := false
	select {
	case e = <-exited:
	case <-tctx.Done():
		timedOut = ctx.Err() == nil
		if err := s.procs.Signal(pid, syscall.SIGKILL); err != nil && !errors.Is(err, reaper.ErrReaped) {
			log.Warn("job: kill", "pid", pid, "error", err)
		}
		e = <-exited
	}
	// Processes the job left behind go with it; output they still hold is waited for a
	// little, then cut.
	l.Cleanup(name)
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(jobDrain):
		pipes[1][0].Close()
		pipes[2][0].Close()
		<-copied
	}
	log.Info("job ended", "code", e.Code, "took", time.Since(start).Round(time.Millisecond), "timed_out", timedOut)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("job %s: %w", req.GetName(), ctx.Err())
	}
	return &guestv1.RunJobResponse{Exit: exitProto(e), Stdout: outs[0].buf.Bytes(), Stderr: outs[1].buf.Bytes(),
		StdoutTruncated: outs[0].cut, StderrTruncated: outs[1].cut, TimedOut: timedOut}, nil
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	n, room := len(p), c.max-c.buf.Len()
	if n > room {
		c.cut = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return n, nil
}
