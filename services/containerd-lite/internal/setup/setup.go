// Package setup assembles containerd-lite from its parts.
package setup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"hearth.dev/internal/budget"
	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver/stdreflection"
	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/baserootfs"
	"hearth.dev/services/containerd-lite/internal/certdclient"
	"hearth.dev/services/containerd-lite/internal/containerapi"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/disks"
	"hearth.dev/services/containerd-lite/internal/guestproxy"
	"hearth.dev/services/containerd-lite/internal/hostapi"
	"hearth.dev/services/containerd-lite/internal/hostfs"
	"hearth.dev/services/containerd-lite/internal/hostsock"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/imageapi"
	"hearth.dev/services/containerd-lite/internal/images"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/netdclient"
	"hearth.dev/services/containerd-lite/internal/packageapi"
	"hearth.dev/services/containerd-lite/internal/packages"
	"hearth.dev/services/containerd-lite/internal/store"
)

// CrashAtEnv names a journaled package step ("install:images") at which containerd-lite
// kills itself: for crash tests only.
const CrashAtEnv = "HEARTH_TEST_CRASH_AT"

// DefaultBaseRootfs is where an installed Hearth keeps the base root file system.
const DefaultBaseRootfs = "/usr/lib/hearth/base-rootfs"

// Spec describes containerd-lite to the daemon runner.
func Spec() daemon.Spec {
	var baseRootfs, maxMemory, maxDisk, defaultDisk, diskReserve, netdSocket, certdSocket, internalDomain string
	var policy limits.Policy
	var m *containers.Manager
	proxy := &guestproxy.Proxy{Dialer: func(name string) (func(context.Context) (net.Conn, error), error) {
		if m == nil {
			return nil, fmt.Errorf("containerd-lite is starting; retry shortly: %w", errdefs.ErrUnavailable)
		}
		return m.GuestDialer(name)
	}}
	return daemon.Spec{
		ServerOptions: proxy.ServerOptions(),
		Reflection:    stdreflection.Register,
		Name:          "containerd-lite",
		Summary: "containerd-lite keeps Hearth's images and runs each package in one unprivileged LXC\n" +
			"container. Containers outlive it: restarting containerd-lite never restarts a service.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&baseRootfs, "base-rootfs", DefaultBaseRootfs, "base root file system every container boots from (busybox and a static guestd; 'make base-rootfs' builds one)")
			fs.StringVar(&netdSocket, "netd-socket", "", "netd's socket, for container networking (default <run-dir>/netd.sock; containers have loopback only while it is absent)")
			fs.StringVar(&certdSocket, "certd-socket", "", "certd's socket, for the certificates packages ask for (default <run-dir>/certd.sock; certificate.get is unavailable while it is absent)")
			fs.StringVar(&internalDomain, "internal-domain", packages.DefaultInternalDomain, "domain of containers on the bridge: <id>.DOMAIN (the same as netd's and certd's --internal-domain)")
			fs.StringVar(&maxMemory, "max-memory", "", "most memory one container may have, such as 4Gi (default: half the host's)")
			fs.Float64Var(&policy.MaxCPUs, "max-cpus", 0, "most CPUs one container may use (default: all)")
			fs.Int64Var(&policy.MaxPids, "max-pids", 0, "most processes one container may run (default 4096)")
			fs.StringVar(&maxDisk, "max-disk", "", "largest disk one package may have: its layers, volumes and logs (default 256Gi)")
			fs.StringVar(&defaultDisk, "default-disk", "", "disk of a package whose manifest asks for no size (default 8Gi)")
			fs.StringVar(&diskReserve, "disk-reserve", "1Gi", "free space the state directory's file system keeps: containers do not start below it (disks are sparse and fill the host as they fill); 0 for none")
		},
		Init: func(ctx context.Context, env *daemon.Env) (daemon.Hooks, error) {
			var reserve int64
			for _, f := range []struct {
				flag, value string
				to          *int64
			}{{"--max-memory", maxMemory, &policy.MaxMemoryBytes}, {"--max-disk", maxDisk, &policy.MaxDiskBytes}, {"--default-disk", defaultDisk, &policy.DefaultDiskBytes}, {"--disk-reserve", diskReserve, &reserve}} {
				if f.value == "" {
					continue
				}
				n, err := bytesize.Parse(f.value)
				if err != nil {
					return daemon.Hooks{}, fmt.Errorf("%s: %w", f.flag, err)
				}
				*f.to = n
			}
			if reserve == 0 {
				reserve = -1 // none
			}
			var err error
			var hooks daemon.Hooks
			if netdSocket == "" {
				netdSocket = filepath.Join(env.RunDir, "netd.sock")
			}
			if certdSocket == "" {
				certdSocket = filepath.Join(env.RunDir, "certd.sock")
			}
			m, hooks, err = initDaemon(env, baseRootfs, policy, reserve, netdclient.Client{Socket: netdSocket},
				packages.EffectsOptions{Certs: certdclient.Client{Socket: certdSocket}, InternalDomain: internalDomain})
			return hooks, err
		},
	}
}

func initDaemon(env *daemon.Env, baseSrc string, policy limits.Policy, reserve int64, netd netdclient.Client, fxOpts packages.EffectsOptions) (*containers.Manager, daemon.Hooks, error) {
	network := containers.Network(netd)
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
	if err := checkTraversable(env.StateDir); err != nil {
		return nil, daemon.Hooks{}, err
	}
	if _, err := os.Stat(lxcrt.SeccompProfile); err != nil {
		return nil, daemon.Hooks{}, fmt.Errorf("LXC's seccomp profile %s: %w; containers would run without a system call filter: install the lxc package", lxcrt.SeccompProfile, err)
	}
	pool, err := idmap.LoadPool(idmap.SystemFiles)
	if err != nil {
		return nil, daemon.Hooks{}, err
	}
	// The base keeps its real owners and is mounted idmapped into each container; no
	// host user reaches it (0700 above it).
	baseDir := filepath.Join(env.StateDir, "base-rootfs")
	if err := os.MkdirAll(baseDir, 0o700); err != nil {
		return nil, daemon.Hooks{}, err
	}
	base, err := baserootfs.Install(baseSrc, baseDir, idmap.Mapping{HostBase: 0, Size: idmap.Size})
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
	dsk, err := disks.New(filepath.Join(env.StateDir, "disks"), env.Logger)
	if err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	containersDir := filepath.Join(env.StateDir, "containers")
	if err := os.MkdirAll(containersDir, 0o711); err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	var m *containers.Manager
	var pkgs *packages.Manager
	var fx *packages.Effects
	hosts := hostsock.New(env.Logger, func(c string) hostv1.HostServiceServer {
		// Nil pointers would be non-nil interfaces (both are set before any container is served).
		d := hostapi.Deps{Overlays: m}
		if pkgs != nil {
			d.Depends, d.Actions = pkgs, packageapi.HostActions{A: pkgs}
		}
		if fx != nil {
			d.Package = fx
		}
		return hostapi.New(c, d)
	}, budget.Limits{})
	// A container's user namespace (for its idmapped mounts) is kept for its next start.
	userns := &idmap.Cache{Max: 256, Open: func(mp idmap.Mapping) (int, error) { return mp.OpenUserns(self) }}
	m = containers.New(containers.Options{
		Userns:     userns.Get,
		Network:    network,
		StateDir:   env.StateDir,
		BaseRootfs: base,
		Runtime:    &lxcrt.Runtime{Path: lxcPath, Self: self},
		Records:    st,
		Logger:     env.Logger,
		Pool:       pool,
		Tree: func(name, data string, mp idmap.Mapping) containers.Tree {
			return hostfs.Tree{Dir: filepath.Join(containersDir, name), Data: data, IDs: mp}
		},
		Disks:       dsk,
		Hosts:       hosts,
		Images:      imgs,
		Policy:      policy,
		CgroupV2:    limits.CgroupV2(),
		DiskReserve: reserve,
	})
	trust, err := hpkg.OpenTrustStore(filepath.Join(env.StateDir, "trust"))
	if err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	pkgs, err = packages.New(packages.Options{
		Containers: m, Images: imgs, Records: st, Verify: packages.HpkgVerifier(trust),
		StateDir: filepath.Join(env.StateDir, "packages"), Logger: env.Logger, Net: netd,
		// For the crash tests only: die at a journaled step.
		CrashAt: os.Getenv(CrashAtEnv),
	})
	if err != nil {
		st.Close()
		return nil, daemon.Hooks{}, err
	}
	fxOpts.Records, fxOpts.WaitingFor = st, pkgs.WaitingFor
	fx = pkgs.Effects(fxOpts)
	containerv1.RegisterContainerServiceServer(env.Server, containerapi.New(m))
	containerv1.RegisterImageServiceServer(env.Server, imageapi.New(imgs))
	psvc := packageapi.New(pkgs, func(ctx context.Context, c string) string {
		i, err := m.Get(ctx, c)
		if err != nil {
			return "missing"
		}
		return strings.ToLower(string(i.State))
	})
	psvc.WithStatus(fx)
	containerv1.RegisterPackageServiceServer(env.Server, psvc)
	containerv1.RegisterNotificationServiceServer(env.Server, &packageapi.Notifications{Records: st})
	containerv1.RegisterBackupServiceServer(env.Server, packageapi.NewBackups(pkgs, psvc))
	containerv1.RegisterKeyServiceServer(env.Server, &packageapi.Keys{Store: trust})
	return m, daemon.Hooks{
		Reconcile: func(ctx context.Context) error {
			// Containers first (adopted, mounts restored), then the package operations a
			// crash cut short are finished or undone.
			if err := errors.Join(imgs.Reconcile(ctx), m.Reconcile(ctx)); err != nil {
				return err
			}
			return pkgs.Reconcile(ctx)
		},
		// Starts the packages that wait for their dependencies (and, at start-up, those
		// that should run and do not).
		Run: pkgs.RunWaiter,
		Close: func() error {
			return errors.Join(m.Close(), st.Close())
		},
	}, nil
}

// checkTraversable makes sure the containers' root users (each container has its own) can
// reach the state directory: LXC refuses to start an unprivileged container whose root
// file system it cannot reach.
func checkTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the containers' root users cannot traverse %s (mode %v), so LXC could not reach their root file systems: run 'chmod o+x %s' or choose a --state-dir below traversable directories", d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
