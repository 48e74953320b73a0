// Package idmap gives each Hearth container its own user-namespace mapping: ids 0..65535
// inside are a range of host ids that no other container shares, taken from root's
// subordinate ids in /etc/subuid and /etc/subgid. Escaping one container as its root then
// gives a host uid that owns nothing of any other container.
package idmap

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Size is how many ids each container maps: the full 16-bit range images expect.
const Size = 65536

// Mapping shifts container ids to host ids.
type Mapping struct {
	// HostBase is the host id of the container's id 0.
	HostBase uint32
	// Size is how many ids are mapped.
	Size uint32
}

// At returns the mapping of a container whose root is host id base.
func At(base uint32) Mapping { return Mapping{HostBase: base, Size: Size} }

// ToHost returns the host id for a container id, and whether it is mapped.
func (m Mapping) ToHost(id uint32) (uint32, bool) {
	if id >= m.Size {
		return 0, false
	}
	return m.HostBase + id, true
}

// RootUID is the host uid (and gid) of the container's root.
func (m Mapping) RootUID() int { return int(m.HostBase) }

// Overlaps reports whether two mappings share a host id.
func (m Mapping) Overlaps(o Mapping) bool {
	return uint64(m.HostBase) < uint64(o.HostBase)+uint64(o.Size) && uint64(o.HostBase) < uint64(m.HostBase)+uint64(m.Size)
}

func (m Mapping) String() string {
	return fmt.Sprintf("%d-%d", m.HostBase, uint64(m.HostBase)+uint64(m.Size)-1)
}

// HoldArg is the hidden argument with which the daemon re-executes itself to hold a user
// namespace open while OpenUserns takes a descriptor of it.
const HoldArg = "userns-hold"

// OpenUserns returns a descriptor of a new user namespace with this mapping. Idmapped
// mounts made through it are what they would be through the container's own namespace
// (the mapping is the same), so images can be mounted before the container starts. The
// namespace needs a process in it until its descriptor is open: the system's cat, which
// starts in about a millisecond, or else self (the daemon's executable, run with HoldArg).
func (m Mapping) OpenUserns(self string) (int, error) {
	cmd := exec.Command(self, HoldArg)
	if cat, err := exec.LookPath("cat"); err == nil {
		cmd = exec.Command(cat)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostBase), Size: int(m.Size)}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostBase), Size: int(m.Size)}},
	}
	hold, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start a user namespace holder for ids %s: %w", m, err)
	}
	defer func() { hold.Close(); _ = cmd.Wait() }()
	fd, err := syscall.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the user namespace: %w", err)
	}
	return fd, nil
}

// Hold is the body of "containerd-lite userns-hold": it waits for stdin to close.
func Hold() int {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
