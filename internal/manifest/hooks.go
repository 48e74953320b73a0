package manifest

import (
	"fmt"
	"time"
)

// Hooks are jobs run at points of the package's life, each in a fresh subcontainer of one
// of the package's images, with the volumes it mounts.
type Hooks struct {
	// Install runs once, before the daemons first start after an install.
	Install *Hook `yaml:"install,omitempty" json:"install,omitempty"`
	// Migrate runs before the daemons start after an update, or after a restore into a newer
	// version, with HEARTH_FROM_VERSION and HEARTH_TO_VERSION in its environment.
	Migrate *Hook `yaml:"migrate,omitempty" json:"migrate,omitempty"`
	// Backup runs while the package runs, before its volumes are read, to leave a
	// consistent copy of its data in a volume (a pg_dump, say).
	Backup *Hook `yaml:"backup,omitempty" json:"backup,omitempty"`
}

// Hook is one hook's job.
type Hook struct {
	Image   string            `yaml:"image" json:"image"`
	Command []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Args    []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Workdir string            `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	User    string            `yaml:"user,omitempty" json:"user,omitempty"`
	Mounts  []Mount           `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	// Requires lists daemons and oneshots the hook waits for (a database it migrates);
	// Before lists the daemons that wait for it: all of them when neither is given.
	Requires []string `yaml:"requires,omitempty" json:"requires,omitempty"`
	Before   []string `yaml:"before,omitempty" json:"before,omitempty"`
	// Timeout bounds the hook (default 10m).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Hook names.
const (
	HookInstall = "install"
	HookMigrate = "migrate"
	HookBackup  = "backup"
)

// DefaultHookTimeout bounds a hook that names no timeout.
const DefaultHookTimeout = 10 * time.Minute

// HookJobPrefix names a hook's job among the package's jobs (hook-migrate): job names
// cannot start with it.
const HookJobPrefix = "hook-"

// Named returns the hook called name, or nil.
func (h Hooks) Named(name string) *Hook {
	switch name {
	case HookInstall:
		return h.Install
	case HookMigrate:
		return h.Migrate
	case HookBackup:
		return h.Backup
	}
	return nil
}

// Job is the hook as a oneshot job.
func (h *Hook) Job() *Daemon {
	return &Daemon{Image: h.Image, Command: h.Command, Args: h.Args, Env: h.Env, Workdir: h.Workdir, User: h.User, Mounts: h.Mounts,
		Requires: h.Requires, Before: h.Before, Restart: Restart{Policy: "never"}}
}

func (c *checker) hooks(m *Manifest, all map[string]string) {
	for _, name := range []string{HookInstall, HookMigrate, HookBackup} {
		h := m.Hooks.Named(name)
		if h == nil {
			continue
		}
		f := "hooks." + name
		if len(h.Command) == 0 && len(h.Args) == 0 {
			c.add(f+".command", "missing: say what the hook runs")
		}
		if h.Timeout < 0 {
			c.add(f+".timeout", "must be positive")
		}
		c.job(m, f, h.Job(), true, all)
	}
	for n := range all {
		if len(n) > len(HookJobPrefix) && n[:len(HookJobPrefix)] == HookJobPrefix {
			c.add(fmt.Sprintf("%s.%s", all[n], n), "names starting with %q are the hooks' own", HookJobPrefix)
		}
	}
}
