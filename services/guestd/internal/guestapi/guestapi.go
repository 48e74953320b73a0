// Package guestapi is the serving guestd: it loads the package the host put in the
// container, runs its daemons with the supervisor, and answers GuestService on
// /media/hearth/rpc/guestd.sock.
package guestapi

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/buildinfo"
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/reflectsvc"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/guestd/internal/effects"
	"hearth.dev/services/guestd/internal/hostclient"
	"hearth.dev/services/guestd/internal/initproc"
	"hearth.dev/services/guestd/internal/launch"
	"hearth.dev/services/guestd/internal/logbuf"
	"hearth.dev/services/guestd/internal/memtrim"
	"hearth.dev/services/guestd/internal/netwait"
	"hearth.dev/services/guestd/internal/reaper"
	"hearth.dev/services/guestd/internal/selfstat"
	"hearth.dev/services/guestd/internal/starttrace"
	"hearth.dev/services/guestd/internal/supervisor"
)

// Socket is where guestd serves inside the container.
const Socket = "/media/hearth/rpc/guestd.sock"

// LogDir keeps the daemons' log files, in the container's own layer.
const LogDir = "/var/log/hearth"

// reflectionSet is the file descriptor set of guestd's services, for server reflection
// (grpcurl list, describe) without linking protodesc (see reflectsvc). "go test
// ./internal/guestapi -run TestReflectionSet -update" writes it; the test fails when it
// is stale.
//
//go:embed reflection.binpb
var reflectionSet []byte

// ReflectedServices are the services whose files reflectionSet holds.
var ReflectedServices = []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "hearth.guest.v1.GuestService"}

// Main runs the serving guestd.
func Main() {
	var bundlePath, effectsPath string
	daemon.Main(daemon.Spec{
		Name: "guestd",
		Summary: "guestd manages a package's daemons inside its container and answers the host on\n" +
			Socket + ". Run as the container's init it supervises itself; run by hand\n" +
			"(with --socket and --state-dir) it serves alone, for tests.",
		DefaultSocket: Socket,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&bundlePath, "bundle", manifest.BundleFile, "the package to run (written by the host); none when missing")
			fs.StringVar(&effectsPath, "effects-socket", effects.Socket, "where to serve the effects to package scripts, unless init hands the socket down; \"\" for nowhere")
		},
		Authorize: func(*daemon.Env) peercred.Policy { return HostOrContainerRoot },
		ServerOptions: []grpc.ServerOption{
			grpc.ReadBufferSize(hostclient.ConnBuffer),
			grpc.WriteBufferSize(hostclient.ConnBuffer),
			grpc.SharedWriteBuffer(true),
		},
		Reflection: func(s *grpc.Server) { reflectsvc.Register(s, reflectionSet) },
		Init: func(ctx context.Context, env *daemon.Env) (daemon.Hooks, error) {
			s, err := newServer(env, bundlePath)
			if err != nil {
				return daemon.Hooks{}, err
			}
			if s.effectsL, err = effectsListener(effectsPath); err != nil {
				return daemon.Hooks{}, err
			}
			guestv1.RegisterGuestServiceServer(env.Server, s)
			return daemon.Hooks{Reconcile: s.reconcile, Run: s.run}, nil
		},
	})
}

// HostOrContainerRoot allows the container's root, and callers from outside the container's
// PID namespace: the kernel reports those with PID 0, and only the host can reach the
// socket from outside (its directory is bind-mounted from the host, mode 0750).
func HostOrContainerRoot(c peercred.Cred) error {
	if c.PID == 0 {
		return nil
	}
	return peercred.RootOrGroup(-1)(c)
}

// Server implements GuestService. Its handlers return errors of the kinds in
// internal/errdefs; the server's interceptors turn them into gRPC codes.
type Server struct {
	guestv1.UnimplementedGuestServiceServer
	info   *guestv1.GuestInfo
	env    *daemon.Env
	bundle *manifest.Bundle
	sup    *supervisor.Supervisor // nil for a container without a package
	trace  starttrace.Trace       // the first start's steps, for GetInfo
	procs  processes

	// The effects shim: its listener (nil: none), the launcher and the host client
	// subcontainer.exec uses (nil without a package), and the slots of running execs.
	effectsL  net.Listener
	launcher  *launch.Launcher
	host      hostv1.HostServiceClient
	hostConn  grpc.ClientConnInterface
	execSlots chan struct{}
}

// processes is what Exec needs to run a command in a job's subcontainer: the launcher.
type processes interface {
	Build(name string, spec *manifest.Daemon, argv []string, extra map[string]string) (*launch.Command, error)
	Spawn(c *launch.Command) (pid int, exited <-chan reaper.Exit, err error)
	// Signal signals pid's process group unless pid has been reaped.
	Signal(pid int, sig syscall.Signal) error
}

var _ guestv1.GuestServiceServer = (*Server)(nil)

// networkWait bounds the wait for the container's network before its jobs start (the
// host attaches it within milliseconds of the start; netd may have gone meanwhile).
const networkWait = 10 * time.Second

// resolvConf is the container's resolver configuration.
var resolvConf = "/etc/resolv.conf"

func newServer(env *daemon.Env, bundlePath string) (*Server, error) {
	s := &Server{env: env, info: Info(time.Now()), execSlots: make(chan struct{}, execMaxRunning)}
	data, err := os.ReadFile(bundlePath)
	if errors.Is(err, os.ErrNotExist) {
		env.Logger.Info("no package to run", "bundle", bundlePath)
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if s.bundle, err = manifest.ReadBundle(data); err != nil {
		return nil, fmt.Errorf("%s: %w", bundlePath, err)
	}
	s.trace.Mark("bundle")
	// The hooks the host asks for at this start run as the first jobs.
	if s.bundle.Manifest, err = s.bundle.WithHooks(); err != nil {
		return nil, fmt.Errorf("%s: %w", bundlePath, err)
	}
	m := s.bundle.Manifest
	s.info.Package = m.ID + " " + m.Version
	// Every subcontainer gets a copy of the container's resolv.conf.
	if rc := s.bundle.ResolvConf(); rc != nil {
		if err := os.WriteFile(resolvConf, rc, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", resolvConf, err)
		}
	}
	return s, nil
}

// Info describes this guestd. Boot time and restart count come from init's environment.
func Info(start time.Time) *guestv1.GuestInfo {
	boot := start
	if ns, err := strconv.ParseInt(os.Getenv(initproc.BootTimeEnv), 10, 64); err == nil {
		boot = time.Unix(0, ns)
	}
	restarts, _ := strconv.Atoi(os.Getenv(initproc.RestartsEnv))
	host, _ := os.Hostname()
	return &guestv1.GuestInfo{
		Version: buildinfo.Version(), Pid: int32(os.Getpid()), StartedAt: timestamppb.New(start),
		BootTime: timestamppb.New(boot), Hostname: host, Restarts: uint32(restarts),
	}
}

// reconcile clears what an earlier guestd left (its daemons, their mounts and overlays)
// and readies the supervisor. Daemons start once guestd serves.
func (s *Server) reconcile(ctx context.Context) error {
	if s.bundle == nil {
		// No package: the effects the host serves are still there for scripts.
		conn, err := dial.Func(hostclient.Socket, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", hostclient.Socket)
		}, hostclient.DialOptions()...)
		if err != nil {
			return err
		}
		s.hostConn = conn
		return nil
	}
	log := s.env.Logger
	r, err := reaper.Start()
	if err != nil {
		return err
	}
	cl, conn, err := hostclient.Dial(hostclient.Socket)
	if err != nil {
		return fmt.Errorf("the host socket: %w", err)
	}
	// Connect now, not at the first call: the daemons' first overlays are asked for in a
	// moment, and the connection is made while the rest of the reconcile runs.
	conn.Connect()
	s.host, s.hostConn = cl, conn // they live as long as guestd
	m := s.bundle.Manifest
	var names []string
	for n := range m.Daemons {
		names = append(names, n)
	}
	for n := range m.Oneshots {
		names = append(names, n)
	}
	// A guestd that died left its daemons running: they go, and start again below.
	if n := killLeftovers(); n > 0 {
		log.Warn("killed the daemons an earlier guestd left", "processes", n)
	}
	l := launch.New(hostclient.Host{Client: cl}, r, s.bundle.Images, names, log)
	s.procs, s.launcher = l, l
	s.sup = supervisor.New(m, l, func(name string) *logbuf.Log {
		l, err := logbuf.New(filepath.Join(LogDir, name+".log"), 1000, 1<<20)
		if err != nil {
			log.Warn("log file", "job", name, "error", err)
			l, _ = logbuf.New("", 1000, 0)
		}
		return l
	}, log)
	s.sup.Trace = &s.trace
	s.trace.Mark("reconcile")
	return nil
}

// killLeftovers kills every process rooted in a subcontainer.
func killLeftovers() int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == os.Getpid() {
			continue
		}
		if root, err := os.Readlink("/proc/" + e.Name() + "/root"); err == nil && strings.HasPrefix(root, launch.SubcontainersDir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// run starts the package and, when guestd is told to stop, stops it in reverse order.
// The effects are served from before the package starts until after it stopped, so
// that its hooks and stop scripts can call them.
func (s *Server) run(ctx context.Context) error {
	// Free memory goes back to the kernel once guestd falls quiet (not during a burst).
	kick := make(chan struct{}, 1)
	go memtrim.Run(ctx, memtrim.Default, kick)
	if s.effectsL != nil {
		// The effects outlive ctx: they stop after the package.
		es, err := s.startEffects(context.WithoutCancel(ctx), s.effectsL, s.hostConn)
		if err != nil {
			return err
		}
		defer es.stop()
	}
	if s.sup == nil || s.bundle.Idle {
		kick <- struct{}{} // nothing to start: the start is over
		<-ctx.Done()
		return nil
	}
	if len(s.bundle.Nameservers) > 0 {
		// netd is there (it named the resolver): the host attaches the container to its
		// bridge right after starting it. The jobs wait for that, so that a hook or
		// daemon reaching out at once finds a route.
		wctx, cancel := context.WithTimeout(ctx, networkWait)
		if err := netwait.Wait(wctx, netwait.RouteFile); err != nil {
			s.env.Logger.Warn("starting the package without its network", "error", err)
		}
		cancel()
		s.trace.Mark("network")
	}
	s.sup.StartAll()
	// Once the start is over, what it allocated and the code only it ran go back.
	// A start that has not settled after a minute (a daemon failing again and again) is
	// over too, as far as memory goes.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	_ = s.sup.Settled(sctx)
	cancel()
	kick <- struct{}{}
	<-ctx.Done()
	s.env.Logger.Info("stopping the package")
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s.sup.StopAll(stopCtx)
	return nil
}

// GetInfo implements GuestService.
func (s *Server) GetInfo(context.Context, *guestv1.GetInfoRequest) (*guestv1.GetInfoResponse, error) {
	info := proto.CloneOf(s.info)
	info.Goroutines = uint32(selfstat.Goroutines())
	for _, m := range s.trace.Marks() {
		info.StartTrace = append(info.StartTrace, &guestv1.Mark{Name: m.Name, At: timestamppb.New(m.At)})
	}
	if n, err := selfstat.OpenFDs(); err == nil {
		info.OpenFds = uint32(n)
	}
	return &guestv1.GetInfoResponse{Info: info}, nil
}

func (s *Server) needPackage() error {
	if s.sup == nil {
		return fmt.Errorf("this container runs no package, so it has no daemons: %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// job returns the spec of the package's daemon or oneshot called name.
func (s *Server) job(name string) (*manifest.Daemon, error) {
	if err := s.needPackage(); err != nil {
		return nil, err
	}
	m := s.bundle.Manifest
	if name == "" {
		return nil, fmt.Errorf("name a daemon or oneshot of %s (%s): %w", m.ID, strings.Join(s.sup.Names(), ", "), errdefs.ErrInvalidArgument)
	}
	if d := m.Daemons[name]; d != nil {
		return d, nil
	}
	if d := m.Oneshots[name]; d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("%s has no daemon or oneshot %q; it has %s: %w", m.ID, name, strings.Join(s.sup.Names(), ", "), errdefs.ErrNotFound)
}

// GetStatus implements GuestService.
func (s *Server) GetStatus(context.Context, *guestv1.GetStatusRequest) (*guestv1.GetStatusResponse, error) {
	resp := &guestv1.GetStatusResponse{}
	if s.sup == nil {
		return resp, nil
	}
	resp.Package, resp.Version = s.bundle.Manifest.ID, s.bundle.Manifest.Version
	for _, st := range s.sup.Status() {
		resp.Daemons = append(resp.Daemons, daemonProto(st))
	}
	return resp, nil
}

// WatchStatus implements GuestService.
func (s *Server) WatchStatus(_ *guestv1.WatchStatusRequest, stream grpc.ServerStreamingServer[guestv1.WatchStatusResponse]) error {
	if err := s.needPackage(); err != nil {
		return err
	}
	ch, cancel := s.sup.Watch()
	defer cancel()
	for _, st := range s.sup.Status() {
		if err := stream.Send(&guestv1.WatchStatusResponse{Daemon: daemonProto(st)}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case st := <-ch:
			if err := stream.Send(&guestv1.WatchStatusResponse{Daemon: daemonProto(st)}); err != nil {
				return err
			}
		}
	}
}

func (s *Server) control(verb, name string, f func() error) error {
	if _, err := s.job(name); err != nil {
		return err
	}
	if err := f(); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return nil
}

// StartDaemon implements GuestService.
func (s *Server) StartDaemon(ctx context.Context, req *guestv1.StartDaemonRequest) (*guestv1.StartDaemonResponse, error) {
	if err := s.control("start", req.GetName(), func() error { return s.sup.Start(req.GetName()) }); err != nil {
		return nil, err
	}
	return &guestv1.StartDaemonResponse{}, nil
}

// StopDaemon implements GuestService.
func (s *Server) StopDaemon(ctx context.Context, req *guestv1.StopDaemonRequest) (*guestv1.StopDaemonResponse, error) {
	if err := s.control("stop", req.GetName(), func() error { return s.sup.Stop(ctx, req.GetName()) }); err != nil {
		return nil, err
	}
	return &guestv1.StopDaemonResponse{}, nil
}

// RestartDaemon implements GuestService.
func (s *Server) RestartDaemon(ctx context.Context, req *guestv1.RestartDaemonRequest) (*guestv1.RestartDaemonResponse, error) {
	if err := s.control("restart", req.GetName(), func() error { return s.sup.Restart(ctx, req.GetName()) }); err != nil {
		return nil, err
	}
	return &guestv1.RestartDaemonResponse{}, nil
}

// Logs implements GuestService. A follow takes one follower channel per daemon and one
// goroutine forwarding each; all of them end before Logs returns.
func (s *Server) Logs(req *guestv1.LogsRequest, stream grpc.ServerStreamingServer[guestv1.LogsResponse]) error {
	if err := s.needPackage(); err != nil {
		return err
	}
	names := s.sup.Names()
	if req.GetDaemon() != "" {
		if _, err := s.job(req.GetDaemon()); err != nil {
			return err
		}
		names = []string{req.GetDaemon()}
	}
	type tagged struct {
		name string
		line logbuf.Line
	}
	send := func(t tagged) error {
		return stream.Send(&guestv1.LogsResponse{Daemon: t.name, Time: timestamppb.New(t.line.Time), Stream: t.line.Stream, Text: t.line.Text})
	}
	var tails []tagged
	var follows []<-chan logbuf.Line
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, n := range names {
		var tail []logbuf.Line
		if req.GetFollow() {
			var ch <-chan logbuf.Line
			var stop func()
			tail, ch, stop = s.sup.Log(n).TailAndFollow(int(req.GetTail()))
			follows, stops = append(follows, ch), append(stops, stop)
		} else {
			tail = s.sup.Log(n).Tail(int(req.GetTail()))
		}
		for _, l := range tail {
			tails = append(tails, tagged{n, l})
		}
	}
	// The tails of several daemons, interleaved by time.
	sortByTime(tails, func(t tagged) time.Time { return t.line.Time })
	for _, t := range tails {
		if err := send(t); err != nil {
			return err
		}
	}
	if !req.GetFollow() {
		return nil
	}
	ctx, cancel := context.WithCancel(stream.Context())
	merged := make(chan tagged, 1024)
	var forwarders sync.WaitGroup
	// Stop forwarding (cancel) and wait for the forwarders; the deferred stops then close
	// the follower channels.
	defer forwarders.Wait()
	defer cancel()
	for i, ch := range follows {
		forwarders.Go(func() {
			for {
				select {
				case line, ok := <-ch:
					if !ok {
						return
					}
					select {
					case merged <- tagged{names[i], line}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-merged:
			if err := send(t); err != nil {
				return err
			}
		}
	}
}

var states = map[supervisor.State]guestv1.DaemonState{
	supervisor.Waiting: guestv1.DaemonState_DAEMON_STATE_WAITING, supervisor.Starting: guestv1.DaemonState_DAEMON_STATE_STARTING,
	supervisor.Ready: guestv1.DaemonState_DAEMON_STATE_READY, supervisor.Failing: guestv1.DaemonState_DAEMON_STATE_FAILING,
	supervisor.Backoff: guestv1.DaemonState_DAEMON_STATE_BACKOFF, supervisor.Stopping: guestv1.DaemonState_DAEMON_STATE_STOPPING,
	supervisor.Stopped: guestv1.DaemonState_DAEMON_STATE_STOPPED, supervisor.Done: guestv1.DaemonState_DAEMON_STATE_DONE,
	supervisor.Failed: guestv1.DaemonState_DAEMON_STATE_FAILED,
}

func daemonProto(st supervisor.Status) *guestv1.Daemon {
	d := &guestv1.Daemon{Name: st.Name, Oneshot: st.Oneshot, State: states[st.State], Pid: int32(st.PID),
		Restarts: uint32(st.Restarts), Health: st.Health, Requires: st.Requires}
	if !st.StartedAt.IsZero() {
		d.StartedAt = timestamppb.New(st.StartedAt)
	}
	if e := st.LastExit; e != nil {
		d.LastExit = exitProto(*e)
	}
	return d
}

func exitProto(e reaper.Exit) *guestv1.Exit {
	x := &guestv1.Exit{Code: int32(e.Code), At: timestamppb.New(e.At)}
	if e.Code < 0 {
		x.Signal = e.Signal.String()
	}
	return x
}
