// Package setup assembles containerd-lite from its parts.
package setup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/errdefs"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/baserootfs"
	"hearth.dev/services/containerd-lite/internal/containerapi"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/guestproxy"
	"hearth.dev/services/containerd-lite/internal/hostapi"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/imageapi"
	"hearth.dev/services/containerd-lite/internal/images"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/netdclient"
	"hearth.dev/services/containerd-lite/internal/store"
)

// DefaultBaseRootfs is where an installed Hearth keeps the base root file system.
const DefaultBaseRootfs = "/usr/lib/hearth/base-rootfs"

// Spec describes containerd-lite to the daemon runner.
func Spec() daemon.Spec {
	var baseRootfs, maxMemory, netdSocket string
	var policy limits.Policy
	var m *containers.Manager
	proxy := &guestproxy.Proxy{RPCDir: func(name string) (string, error) {
		if m == nil {
			return "", fmt.Errorf("containerd-lite is starting; retry shortly: %w", errdefs.ErrUnavailable)
		}
		return m.GuestRPCDir(name)
	}}
	return daemon.Spec{
		ServerOptions: proxy.ServerOptions(),
		Name:          "containerd-lite",
		Summary: "containerd-lite keeps Hearth's images and runs each package in one unprivileged LXC\n" +
			"container. Containers outlive it: restarting containerd-lite never restarts a service.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&baseRootfs, "base-rootfs", DefaultBaseRootfs, "base root file system every container boots from (busybox and a static guestd; 'make base-rootfs' builds one)")
			fs.StringVar(&netdSocket, "netd-socket", "", "netd's socket, for container networking (default <run-dir>/netd.sock; containers have loopback only while it is absent)")
			fs.StringVar(&maxMemory, "max-memory", "", "most memory one container may have, such as 4Gi (default: half the host's)")
			fs.Float64Var(&policy.MaxCPUs, "max-cpus", 0, "most CPUs one container may use (default: all)")
			fs.Int64Var(&policy.MaxPids, "max-pids", 0, "most processes one container may run (default 4096)")
		},
		Init: func(ctx context.Context, env *daemon.Env) (daemon.Hooks, error) {
			if maxMemory != "" {
				n, err := bytesize.Parse(maxMemory)
				if err != nil {
					return daemon.Hooks{}, fmt.Errorf("--max-memory: %w", err)
				}
				policy.MaxMemoryBytes = n
			}
			var err error
			var hooks daemon.Hooks
			if netdSocket == "" {
				netdSocket = filepath.Join(env.RunDir, "netd.sock")
			}
			m, hooks, err = initDaemon(env, baseRootfs, policy, netdclient.Client{Socket: netdSocket})
			return hooks, err
		},
	}
}

func initDaemon(env *daemon.Env, baseSrc string, policy limits.Policy, network containers.Network) (*containers.Manager, daemon.Hooks, error) {
	if os.Geteuid() != 0 {
		return nil, daemon.Hooks{}, errors.New("containerd-lite must run as root: it mounts file systems and starts LXC containers")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, daemon.Hooks{}, fmt.Errorf("find own executable: %w", err)
	}
	if err := os.Chmod(env.StateDir, 0o711); err != nil {
		return nil, daemon.Hooks{}, err
	}
	if err := checkTraversable(env.StateDir, idmap.Default.RootUID()); err != nil {
		return nil, daemon.Hooks{}, err
	}
	base, err := baserootfs.Install(baseSrc, filepath.Join(env.StateDir, "base"), idmap.Default)
	if err != nil {
		return nil, daemon.Hooks{}, err
	}
	st, err := store.Open(filepath.Join(env.StateDir, "meta.db"))
	if err != nil {
		return nil, daemon.Hooks{}, err
	}
	lxcPath := filepath.Join(env.StateDir, "lxc")
	if err := os.MkdirAll(lxcPath, 0o711); err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	imgs, err := images.New(images.Options{
		Dir: filepath.Join(env.StateDir, "images"), Store: st, Logger: env.Logger, UsedBy: st.ContainersUsing,
	})
	if err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	userns, err := idmap.Default.OpenUserns(self)
	if err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	var m *containers.Manager
	m = containers.New(containers.Options{
		Userns:      userns,
		Network:     network,
		StateDir:    env.StateDir,
		BaseRootfs:  base,
		Runtime:     &lxcrt.Runtime{Path: lxcPath, Self: self},
		Store:       st,
		Logger:      env.Logger,
		IDMap:       idmap.Default,
		Images:      imgs,
		Policy:      policy,
		CgroupV2:    limits.CgroupV2(),
		HostService: func(c string) hostv1.HostServiceServer { return hostapi.New(c, m) },
	})
	containerv1.RegisterContainerServiceServer(env.Server, containerapi.New(m))
	containerv1.RegisterImageServiceServer(env.Server, imageapi.New(imgs))
	return m, daemon.Hooks{
		Reconcile: func(ctx context.Context) error {
			return errors.Join(imgs.Reconcile(ctx), m.Reconcile(ctx))
		},
		Close: func() error {
			return errors.Join(m.Close(), st.Close())
		},
	}, nil
}

// checkTraversable makes sure the containers' root user can reach the state directory:
// LXC refuses to start an unprivileged container whose root file system it cannot reach.
func checkTraversable(dir string, uid int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o001 == 0 && (!ok || int(st.Uid) != uid) {
			return fmt.Errorf("the containers' root (host uid %d) cannot traverse %s (mode %v), so LXC could not reach their root file systems: run 'chmod o+x %s' or choose a --state-dir below traversable directories", uid, d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
