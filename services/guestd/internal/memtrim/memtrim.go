// Package memtrim gives a quiet process's free memory back to the kernel. guestd lives in
// every container and is idle most of the time; its heap goal is set by its soft memory
// limit (a Go binary linking crypto counts a 32 MiB entropy buffer among its globals, so
// GOGC alone would let the heap grow far), so after a burst of work (starting the package,
// a run of effect calls) it keeps garbage and free pages resident until the next burst.
// Trimming then (a collection, and every free page returned) costs one collection per
// burst, never one during it: the effects' latency is untouched.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"hearth.dev/services/guestd/internal/exetrim"
	"hearth.dev/services/guestd/internal/pagemerge"
)

// Policy says when to trim: every Period, the allocations since the last look are
// compared with Quiet (fewer: the process is quiet) and those since the last trim with
// Worth (more: there is garbage worth collecting).
type Policy struct {
	Period time.Duration
	Quiet  uint64
	Worth  uint64
	// GCPercent is set at the first kick's trim (the end of the start burst, during which
	// the process collects only at its memory limit), and kept: 0 leaves it as it is.
	GCPercent int
	// KickDelay is how long after a kick its trim runs. The host's first calls follow the
	// end of a start at once, and a trim (a collection, smaps read, hundreds of page
	// advices) ahead of them on guestd's one P delayed the host's first answer by ~4 ms.
	// And when the host starts many services at once (at boot), the starts come tens of
	// milliseconds apart for seconds: trims of the services started first took a tenth
	// of the CPU the others' starts needed.
	KickDelay time.Duration
}

// Default suits guestd: a look every 2 s; quiet below 512 KiB in that time (a burst of
// effect calls allocates more than 1 MiB a second; a daemon's HTTP ready check every 100 ms,
// about 100 KiB); a trim once 1 MiB was allocated since the last. Without the trims, such a
// check's garbage would pile up to the soft memory limit, the GC's only pacer in guestd.
var Default = Policy{Period: 2 * time.Second, Quiet: 512 << 10, Worth: 1 << 20, GCPercent: 50, KickDelay: 2 * time.Second}

// Due reports whether to trim, given the allocations since the last look and since the
// last trim.
func (p Policy) Due(sinceLook, sinceTrim uint64) bool {
	return sinceLook < p.Quiet && sinceTrim >= p.Worth
}

// Run trims by p until ctx ends, and p.KickDelay after each receive from kick (nil:
// never): the caller knows when a burst (the package's start) is over. A trim is a
// collection, every free page returned, and the executable's resident pages dropped
// (exetrim.Drop). The first kick's trim also sets p.GCPercent.
func Run(ctx context.Context, p Policy, kick <-chan struct{}) {
	t := time.NewTicker(p.Period)
	defer t.Stop()
	// From 0: what the process allocated while it started counts, so the first quiet
	// look after the start trims.
	c := p.Counter(0)
	var kicked <-chan time.Time // the kick's trim is due
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
			kicked = time.After(p.KickDelay)
		case <-kicked:
			kicked = nil
			// Not counted as a trim: what the end of the burst allocates after the
			// kick (the host's calls that follow a start) is still collected at the
			// next quiet look.
			if p.GCPercent != 0 {
				debug.SetGCPercent(p.GCPercent)
			}
			trim()
		case <-t.C:
			if c.Look(allocated()) {
				trim()
				c.Trimmed(allocated()) // the trim's own allocations are not the process's
			}
		}
	}
}

// trim collects first: a collection touches code and read-only data (the type and
// function tables) that the process's idle work does not, so the pages go after it. Then,
// while the host runs KSM, it offers the process's memory to the kernel's same-page
// merging (pagemerge), mappings made since the last trim included.
func trim() {
	debug.FreeOSMemory()
	_, _ = exetrim.Drop() // /proc unreadable: nothing dropped, nothing lost
	if pagemerge.Running() {
		_, _ = pagemerge.Offer()
	}
}

// Counter follows the allocation counter from look to look.
type Counter struct {
	p             Policy
	look, trimmed uint64
}

// Counter starts following the counter at now.
func (p Policy) Counter(now uint64) *Counter { return &Counter{p: p, look: now, trimmed: now} }

// Look takes the counter's value at a look and reports whether to trim now.
func (c *Counter) Look(now uint64) bool {
	due := c.p.Due(now-c.look, now-c.trimmed)
	c.look = now
	return due
}

// Trimmed records a trim, done when the counter was at now.
func (c *Counter) Trimmed(now uint64) { c.look, c.trimmed = now, now }

// allocated is the bytes allocated on the heap since the process started.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
