package lxcrt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lxc "github.com/lxc/go-lxc"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// State is a container's state as LXC reports it.
type State string

// States.
const (
	Stopped  State = "STOPPED"
	Starting State = "STARTING"
	Running  State = "RUNNING"
	Stopping State = "STOPPING"
	Frozen   State = "FROZEN"
	Missing  State = "MISSING" // not defined in the LXC path
)

// Runtime manages the containers under one LXC path.
type Runtime struct {
	// Path is the LXC path: <Path>/<name>/config.
	Path string
	// Self is the daemon's own executable, re-executed with ForkStartArg.
	Self string
}

// ConfigFile is where a container's configuration lives.
func (r *Runtime) ConfigFile(name string) string { return filepath.Join(r.Path, name, "config") }

// Define writes the container's configuration. The configuration is made from the
// container's record, which is what is kept durably, so it is written without waiting for
// the disk (two syncs, a millisecond of each create, more while the disk is busy): a crash
// of the machine may leave it old or empty, and containerd-lite's start-up writes it again
// where it is not what the record says (Current).
func (r *Runtime) Define(c Config) error {
	text, err := c.Render()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.Path, c.Name), 0o700); err != nil {
		return fmt.Errorf("create LXC directory for %s: %w", c.Name, err)
	}
	return atomicfile.Replace(r.ConfigFile(c.Name), []byte(text), 0o600)
}

// Current reports whether the configuration on disk is c's.
func (r *Runtime) Current(c Config) (bool, error) {
	text, err := c.Render()
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(r.ConfigFile(c.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the LXC configuration of %s: %w", c.Name, err)
	}
	return string(data) == text, nil
}

// Undefine removes the container's LXC directory. The container must be stopped.
func (r *Runtime) Undefine(name string) error {
	if err := os.RemoveAll(filepath.Join(r.Path, name)); err != nil {
		return fmt.Errorf("remove LXC directory of %s: %w", name, err)
	}
	return nil
}

func (r *Runtime) open(name string) (*lxc.Container, error) {
	c, err := lxc.NewContainer(name, r.Path)
	if err != nil {
		return nil, fmt.Errorf("open LXC container %s: %w", name, err)
	}
	return c, nil
}

// State reports the container's state and, when it runs, its init's host PID.
func (r *Runtime) State(name string) (State, int, error) {
	if _, err := os.Stat(r.ConfigFile(name)); errors.Is(err, os.ErrNotExist) {
		return Missing, 0, nil
	}
	c, err := r.open(name)
	if err != nil {
		return "", 0, err
	}
	defer lxc.Release(c)
	st := State(c.State().String())
	pid := 0
	if st != Stopped {
		pid = c.InitPid()
		if pid < 0 {
			pid = 0
		}
	}
	return st, pid, nil
}

// Start starts the container from a separate process, which returns once LXC reports it
// running, for at most timeout or until ctx ends. It returns the container's init PID.
func (r *Runtime) Start(ctx context.Context, name string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.Self, ForkStartArg, name, r.Path)
	cmd.Stderr = &stderr
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("start container %s: %w: %s", name, errors.Join(err, ctx.Err()), strings.TrimSpace(stderr.String()))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(stdout.String()))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("start container %s: the start told no init PID (%q): %w", name, stdout.String(), errdefs.ErrInternal)
	}
	return pid, nil
}

// waitState polls until c is in state st or ctx ends.
func waitState(ctx context.Context, c *lxc.Container, st lxc.State) bool {
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if c.State() == st {
			return true
		}
		select {
		case <-ctx.Done():
			return c.State() == st
		case <-time.After(delay):
		}
	}
}

// Stop asks init to halt (SIGPWR) and waits up to timeout, then kills the container. When
// ctx ends first, the container is killed at once.
func (r *Runtime) Stop(ctx context.Context, name string, timeout time.Duration) error {
	c, err := r.open(name)
	if err != nil {
		return err
	}
	if c.State() == lxc.STOPPED {
		lxc.Release(c)
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout > 0 && ctx.Err() == nil {
		// Shutdown blocks, holding c until it returns; when ctx ends first, c is released
		// once it does, and a handle of its own kills.
		done := make(chan error, 1)
		go func() { done <- c.Shutdown(timeout) }()
		select {
		case err := <-done:
			if err == nil {
				lxc.Release(c)
				return nil
			}
		case <-ctx.Done():
			go func(c *lxc.Container) { <-done; lxc.Release(c) }(c)
			if c, err = r.open(name); err != nil {
				return err
			}
		}
	}
	defer lxc.Release(c)
	if c.State() == lxc.STOPPED {
		return nil
	}
	if err := c.Stop(); err != nil && c.State() != lxc.STOPPED {
		return fmt.Errorf("kill container %s: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !waitState(wctx, c, lxc.STOPPED) {
		return fmt.Errorf("container %s still %s after kill", name, c.State())
	}
	return nil
}

// Defined lists the containers configured under the LXC path.
func (r *Runtime) Defined() []string { return lxc.DefinedContainerNames(r.Path) }

// CgroupItem reads one file of a running container's cgroup, such as "pids.max".
func (r *Runtime) CgroupItem(name, key string) (string, error) {
	c, err := r.open(name)
	if err != nil {
		return "", err
	}
	defer lxc.Release(c)
	v := c.CgroupItem(key)
	if len(v) == 0 {
		return "", fmt.Errorf("container %s: cgroup item %s unavailable (is it running?)", name, key)
	}
	return strings.Join(v, "\n"), nil
}

// SetCgroupItem writes one file of a running container's cgroup, such as "pids.max".
func (r *Runtime) SetCgroupItem(name, key, value string) error {
	c, err := r.open(name)
	if err != nil {
		return err
	}
	defer lxc.Release(c)
	if err := c.SetCgroupItem(key, value); err != nil {
		return fmt.Errorf("container %s: set cgroup %s to %s: %w", name, key, value, err)
	}
	return nil
}

// Freeze stops every process of a running container where it is (the cgroup freezer);
// Unfreeze lets them go on.
func (r *Runtime) Freeze(name string) error {
	c, err := r.open(name)
	if err != nil {
		return err
	}
	defer lxc.Release(c)
	if err := c.Freeze(); err != nil {
		return fmt.Errorf("freeze container %s: %w", name, err)
	}
	return nil
}

// Unfreeze thaws a frozen container.
func (r *Runtime) Unfreeze(name string) error {
	c, err := r.open(name)
	if err != nil {
		return err
	}
	defer lxc.Release(c)
	if c.State() != lxc.FROZEN {
		return nil
	}
	if err := c.Unfreeze(); err != nil {
		return fmt.Errorf("thaw container %s: %w", name, err)
	}
	return nil
}
