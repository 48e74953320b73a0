package backup

import (
	"sync"
	"sync/atomic"
	"time"
)

// reporter counts what an operation did and calls its Progress callback with the counts,
// at most every 200 ms and once at the end, one call at a time.
type reporter struct {
	cb     func(Progress)
	files  atomic.Int64
	bytes  atomic.Int64
	stored atomic.Int64
	last   atomic.Int64 // unix nanoseconds of the last report
	cbMu   sync.Mutex
}

const reportEvery = 200 * time.Millisecond

func (p *reporter) report(final bool) {
	if p.cb == nil {
		return
	}
	now := time.Now().UnixNano()
	last := p.last.Load()
	if !final && (now-last < int64(reportEvery) || !p.last.CompareAndSwap(last, now)) {
		return
	}
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	p.cb(Progress{Files: p.files.Load(), Bytes: p.bytes.Load(), Stored: p.stored.Load()})
}
