// Package daemon is the shared start-up of Hearth's daemons: common flags, logging, the
// socket, the gRPC server, the start-up reconcile before SERVING, sd_notify, and a
// graceful stop on SIGINT or SIGTERM. A daemon's main only describes itself.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"hearth.dev/internal/buildinfo"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/logging"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/sdnotify"
	"hearth.dev/internal/unixsock"
)

// Defaults shared by every binary.
const (
	DefaultRunDir   = "/run/hearth"
	DefaultStateDir = "/var/lib/hearth"
	RunDirEnv       = "HEARTH_RUN_DIR"
	GroupEnv        = "HEARTH_GROUP"
)

// Spec describes one daemon.
type Spec struct {
	// Name is the binary's name; the socket is <run-dir>/<Name>.sock by default.
	Name string
	// Summary is the first paragraph of --help.
	Summary string
	// DefaultSocket overrides <run-dir>/<Name>.sock when set.
	DefaultSocket string
	// Flags adds the daemon's own flags.
	Flags func(fs *flag.FlagSet)
	// Authorize overrides the default policy (root, or members of --group).
	Authorize func(env *Env) peercred.Policy
	// ServerOptions are added to the gRPC server's.
	ServerOptions []grpc.ServerOption
	// Reflection registers server reflection (grpcserver.Config.Reflection).
	Reflection func(*grpc.Server)
	// Init registers the daemon's services on env.Server. It must not block.
	Init func(ctx context.Context, env *Env) (Hooks, error)
}

// Hooks are the daemon's parts that run around the server.
type Hooks struct {
	// Reconcile runs while health reports NOT_SERVING; the daemon serves once it returns nil.
	Reconcile func(ctx context.Context) error
	// Run runs beside the server until ctx is done.
	Run func(ctx context.Context) error
	// Close releases what Init took, after the server stopped.
	Close func() error
}

// Env is what Init gets.
type Env struct {
	Name     string
	Logger   *slog.Logger
	RunDir   string
	StateDir string
	Socket   string
	// GID is the group allowed besides root, or -1.
	GID    int
	Server *grpcserver.Server
}

// Main runs the daemon with the process's arguments and exits.
func Main(spec Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := Run(ctx, spec, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
		os.Exit(1)
	}
}

// Run parses args and serves until ctx is done. --help and --version print to stdout;
// flag errors and logs go to stderr.
func Run(ctx context.Context, spec Spec, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	runDir := fs.String("run-dir", envOr(RunDirEnv, DefaultRunDir), "directory of the daemons' sockets (env "+RunDirEnv+")")
	socket := fs.String("socket", "", "socket to serve on (default "+defaultSocketHelp(spec)+")")
	stateDir := fs.String("state-dir", filepath.Join(DefaultStateDir, spec.Name), "directory of the daemon's state")
	group := fs.String("group", os.Getenv(GroupEnv), "group (name or id) whose members may call besides root; owns the socket (env "+GroupEnv+")")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	if spec.Flags != nil {
		spec.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\n%s\n\nFlags:\n", spec.Name, spec.Summary)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a != "-h" && a != "-help" && a != "--help" {
			continue
		}
		fs.Usage()
		return flag.ErrHelp
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: %s takes only flags", fs.Arg(0), spec.Name)
	}
	if *version {
		fmt.Fprintln(stdout, spec.Name, buildinfo.Version())
		return nil
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	log = log.With("daemon", spec.Name)
	gid, err := lookupGroup(*group)
	if err != nil {
		return err
	}
	env := &Env{Name: spec.Name, Logger: log, RunDir: *runDir, StateDir: *stateDir, Socket: *socket, GID: gid}
	if env.Socket == "" {
		env.Socket = spec.DefaultSocket
	}
	if env.Socket == "" {
		env.Socket = filepath.Join(*runDir, spec.Name+".sock")
	}
	if err := os.MkdirAll(env.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	policy := peercred.RootOrGroup(gid)
	if spec.Authorize != nil {
		policy = spec.Authorize(env)
	}
	env.Server = grpcserver.New(grpcserver.Config{Logger: log, Authorize: policy, Options: spec.ServerOptions, Reflection: spec.Reflection})
	return serve(ctx, spec, env)
}

func serve(ctx context.Context, spec Spec, env *Env) error {
	log := env.Logger
	hooks, err := spec.Init(ctx, env)
	if err != nil {
		return err
	}
	if hooks.Close != nil {
		defer func() {
			if err := hooks.Close(); err != nil {
				log.Warn("close", "error", err)
			}
		}()
	}
	l, err := unixsock.Listen(env.Socket, unixsock.Options{UID: -1, GID: env.GID})
	if err != nil {
		return err
	}
	log.Info("listening", "socket", env.Socket, "state_dir", env.StateDir, "version", buildinfo.Version())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return env.Server.Serve(ctx, l) })
	g.Go(func() error {
		start := time.Now()
		if hooks.Reconcile != nil {
			if err := hooks.Reconcile(ctx); err != nil {
				return fmt.Errorf("start-up reconcile: %w", err)
			}
		}
		env.Server.SetServing()
		if err := sdnotify.Ready(); err != nil {
			log.Warn("sd_notify", "error", err)
		}
		log.Info("serving", "startup", time.Since(start).Round(time.Millisecond))
		if hooks.Run != nil {
			if err := hooks.Run(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		_ = sdnotify.Stopping()
		log.Info("stopping")
		return nil
	})
	return g.Wait()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func defaultSocketHelp(spec Spec) string {
	if spec.DefaultSocket != "" {
		return spec.DefaultSocket
	}
	return "<run-dir>/" + spec.Name + ".sock"
}

// lookupGroup resolves a group name or number; "" means none (-1).
func lookupGroup(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(g); err == nil && n >= 0 {
		return n, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return -1, fmt.Errorf("--group %q: %w (give an existing group name or a numeric id)", g, err)
	}
	return strconv.Atoi(grp.Gid)
}
