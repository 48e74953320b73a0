// Package initproc is the contract between a container's init (guestd-init, in C:
// services/guestd/init) and the serving guestd it runs: the environment init passes.
// Init's own tests are here: they build it and run it as the PID 1 of a PID namespace.
package initproc

// Environment passed from init to the serving guestd (guestd-init.c defines the same).
const (
	// BootTimeEnv is when init started, in Unix nanoseconds.
	BootTimeEnv = "HEARTH_GUESTD_BOOT_TIME"
	// RestartsEnv counts the serving guestds init started before this one.
	RestartsEnv = "HEARTH_GUESTD_RESTARTS"
)

// Serving is the serving guestd's file name: init runs the one next to its own executable.
const Serving = "guestd"

// Name is init's file name, next to guestd.
const Name = "guestd-init"
