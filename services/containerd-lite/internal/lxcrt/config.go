// Package lxcrt runs Hearth's containers with LXC through go-lxc: it writes a container's
// configuration, starts it from a fresh process (so LXC's fork never runs in the
// multi-threaded daemon), reports its state, and stops it.
package lxcrt

import (
	"fmt"
	"os"
	"strings"

	"hearth.dev/services/containerd-lite/internal/idmap"
)

// SeccompProfile is LXC's default seccomp policy (it denies kexec, open_by_handle_at,
// init_module and the like). We take it, and the capability drops, from LXC's common.conf
// one by one rather than including that file: it pulls in lxcfs's mount and post-stop
// hooks, which cost half a second per container stop and do nothing without lxcfs.
const SeccompProfile = "/usr/share/lxc/config/common.seccomp"

// Config is what a Hearth container is made of.
type Config struct {
	Name string
	// Rootfs is the host path of the container's mounted root file system.
	Rootfs string
	// MediaDir is the host directory brought in at /media/hearth (a shared mount on the
	// host, so that mounts made below it while the container runs appear inside).
	MediaDir string
	// RPCDir is the host directory brought in at /media/hearth/rpc.
	RPCDir string
	// LogFile receives LXC's own log; ConsoleLog what init writes.
	LogFile    string
	ConsoleLog string
	IDMap      idmap.Mapping
	// Init is the command run as the container's PID 1.
	Init []string
	// Cgroup holds cgroup settings as LXC configuration items (key, value).
	Cgroup [][2]string
	// ShmBytes and RunBytes size the tmpfs at /dev/shm and /run (defaults when zero).
	ShmBytes, RunBytes int64
	// Seccomp is the seccomp profile (SeccompProfile when empty); it must exist.
	Seccomp string
}

// Default sizes of the container's memory-backed directories.
const (
	DefaultShmBytes = 64 << 20
	DefaultRunBytes = 16 << 20
)

func tmpfsSize(n, def int64) string {
	if n <= 0 {
		n = def
	}
	return fmt.Sprintf("%dk", (n+1023)/1024)
}

// Render returns the LXC configuration text.
func (c Config) Render() (string, error) {
	for _, p := range []string{c.Rootfs, c.MediaDir, c.RPCDir, c.LogFile, c.ConsoleLog} {
		if strings.ContainsAny(p, " \n\t") {
			return "", fmt.Errorf("path %q contains white space, which LXC's configuration cannot hold: choose a --state-dir without it", p)
		}
	}
	if len(c.Init) == 0 {
		return "", fmt.Errorf("container %s: no init command", c.Name)
	}
	var b strings.Builder
	line := func(k, v string, a ...any) { fmt.Fprintf(&b, "%s = %s\n", k, fmt.Sprintf(v, a...)) }
	b.WriteString("# Written by containerd-lite; changes are overwritten.\n")
	seccomp := c.Seccomp
	if seccomp == "" {
		seccomp = SeccompProfile
	}
	if _, err := os.Stat(seccomp); err != nil {
		return "", fmt.Errorf("seccomp profile %s: %w; containers do not start without a system call filter (install the lxc package)", seccomp, err)
	}
	// net_admin and net_raw too: a container's root could otherwise take another
	// container's address (change its own, or forge ARP) and intercept its traffic; netd
	// configures eth0 from outside.
	line("lxc.cap.drop", "mac_admin mac_override sys_time sys_module sys_rawio net_admin net_raw")
	line("lxc.seccomp.profile", "%s", seccomp)
	line("lxc.pty.max", "1024")
	line("lxc.uts.name", "%s", c.Name)
	line("lxc.rootfs.path", "dir:%s", c.Rootfs)
	line("lxc.idmap", "u 0 %d %d", c.IDMap.HostBase, c.IDMap.Size)
	line("lxc.idmap", "g 0 %d %d", c.IDMap.HostBase, c.IDMap.Size)
	// Loopback only; netd adds a veth when it runs. "up" brings lo up.
	line("lxc.net.0.type", "empty")
	line("lxc.net.0.flags", "up")
	line("lxc.autodev", "1")
	line("lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed")
	// MediaDir is a shared mount on the host, owned by the host: brought in as a slave, the
	// images and overlays the host mounts below it while the container runs appear inside
	// at once, and nothing propagates out. Its mount points exist: the container's root
	// cannot make directories there.
	line("lxc.mount.entry", "%s media/hearth none rbind,rslave 0 0", c.MediaDir)
	line("lxc.mount.entry", "%s media/hearth/rpc none bind 0 0", c.RPCDir)
	// Memory-backed directories are bounded (their pages count against the memory limit too).
	line("lxc.mount.entry", "tmpfs dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=%s,create=dir 0 0", tmpfsSize(c.ShmBytes, DefaultShmBytes))
	line("lxc.mount.entry", "tmpfs run tmpfs rw,nosuid,nodev,mode=755,size=%s,create=dir 0 0", tmpfsSize(c.RunBytes, DefaultRunBytes))
	for _, kv := range c.Cgroup {
		if strings.ContainsAny(kv[0]+kv[1], "\n=") {
			return "", fmt.Errorf("cgroup setting %q = %q is malformed", kv[0], kv[1])
		}
		line(kv[0], "%s", kv[1])
	}
	line("lxc.init.cmd", "%s", strings.Join(c.Init, " "))
	line("lxc.signal.halt", "SIGPWR")
	line("lxc.log.file", "%s", c.LogFile)
	line("lxc.log.level", "WARN")
	line("lxc.console.logfile", "%s", c.ConsoleLog)
	line("lxc.console.size", "1MB")
	line("lxc.tty.max", "0")
	return b.String(), nil
}
