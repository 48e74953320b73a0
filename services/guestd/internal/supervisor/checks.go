package supervisor

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

type checkResult struct {
	ok  bool
	msg string
}

// Until a daemon's first check passes, failing checks are retried quickly: every
// quickRetry for quickTries tries (most daemons are ready a few milliseconds after
// their exec), then after waits that double from 2*quickRetry up to readyPoll (or the
// interval, when it is shorter).
const (
	quickRetry = time.Millisecond
	quickTries = 10
	readyPoll  = time.Second
)

// DefaultInterval is the wait between the checks of a daemon that was ready once, when
// its manifest sets none (a daemon not ready yet is checked far more often: nextWait).
// A daemon that exits is seen at once (guestd is its parent); the checks are there for
// one that hangs. At 100 services, checks every second cost 0.3 CPU here (a busybox
// httpd forks for each request), every 10 seconds a tenth of that; Kubernetes' default
// period is also 10 s.
const DefaultInterval = 10 * time.Second

// nextWait is the wait before the next check, after tries failing checks in a row since
// the daemon started (passed: one has passed since). Checking only every interval would
// cost up to an interval on every start; once a check has passed, checks come every
// interval: health failures count at the pace the manifest set.
func nextWait(tries int, passed bool, interval time.Duration) time.Duration {
	poll := min(readyPoll, interval)
	switch {
	case passed:
		return interval
	case tries <= quickTries:
		return min(quickRetry, poll)
	case tries-quickTries >= 30: // no shift overflows
		return poll
	default:
		return min(quickRetry<<(tries-quickTries), poll)
	}
}

// checks runs j's ready check at once, then again after each wait nextWait gives, until
// ctx ends.
func (s *Supervisor) checks(ctx context.Context, j *job) <-chan checkResult {
	r := j.spec.Ready
	interval := r.Interval.D(DefaultInterval)
	timeout := r.Timeout.D(2 * time.Second)
	out := make(chan checkResult)
	go func() {
		var wait time.Duration
		passed, tries := false, 0
		for {
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			res := s.check(cctx, j)
			cancel()
			passed = passed || res.ok
			tries++
			wait = nextWait(tries, passed, interval)
			select {
			case out <- res:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *Supervisor) check(ctx context.Context, j *job) checkResult {
	r := j.spec.Ready
	switch {
	case r.TCP > 0:
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.TCP))
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return checkResult{msg: fmt.Sprintf("tcp %s: %v", addr, err)}
		}
		c.Close()
		return checkResult{ok: true, msg: "tcp " + addr + " answers"}
	case r.HTTP != nil:
		scheme := "http"
		if r.HTTP.HTTPS {
			scheme = "https"
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.HTTP.Port))
		url := scheme + "://" + addr + r.HTTP.Path
		req, err := probeRequest(addr, r.HTTP.Path)
		if err != nil {
			return checkResult{msg: fmt.Sprintf("GET %s: %v", url, err)}
		}
		code, status, err := httpProbe(ctx, addr, req, r.HTTP.HTTPS)
		if err != nil {
			return checkResult{msg: fmt.Sprintf("GET %s: %v", url, err)}
		}
		return checkResult{ok: code < 400, msg: fmt.Sprintf("GET %s: %s", url, status)}
	default:
		e, err := s.launcher.Run(ctx, j.Name, j.spec, r.Exec)
		if err != nil {
			return checkResult{msg: fmt.Sprintf("exec %v: %v", r.Exec, err)}
		}
		if !e.Success() {
			return checkResult{msg: fmt.Sprintf("exec %v: %v", r.Exec, e)}
		}
		return checkResult{ok: true, msg: fmt.Sprintf("exec %v: ok", r.Exec)}
	}
}
