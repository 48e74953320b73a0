// Package idmap is the user-namespace mapping every Hearth container gets: ids 0..65535
// inside are 100000..165535 on the host.
package idmap

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Mapping shifts container ids to host ids.
type Mapping struct {
	// HostBase is the host id of the container's id 0.
	HostBase uint32
	// Size is how many ids are mapped.
	Size uint32
}

// Default is the mapping of every container: root inside is uid 100000 outside.
var Default = Mapping{HostBase: 100000, Size: 65536}

// ToHost returns the host id for a container id, and whether it is mapped.
func (m Mapping) ToHost(id uint32) (uint32, bool) {
	if id >= m.Size {
		return 0, false
	}
	return m.HostBase + id, true
}

// RootUID is the host uid of the container's root.
func (m Mapping) RootUID() int { return int(m.HostBase) }

// HoldArg is the hidden argument with which the daemon re-executes itself to hold a user
// namespace open while OpenUserns takes a descriptor of it.
const HoldArg = "userns-hold"

// OpenUserns returns a descriptor of a new user namespace with this mapping. Idmapped
// mounts made through it are what they would be through any container's namespace (all
// share the mapping), so images can be mounted before a container starts. self is the
// daemon's executable, run with HoldArg.
func (m Mapping) OpenUserns(self string) (int, error) {
	cmd := exec.Command(self, HoldArg)
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
		return -1, fmt.Errorf("start a user namespace holder: %w", err)
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
