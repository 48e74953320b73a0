package leaf

import (
	"context"
	"sync"
	"time"
)

// Run renews certificates when they are due, retries failures with backoff, asks
// advising issuers (ACME ARI) when to renew, and maintains the local CA, until ctx ends.
// Then it ends every watch.
func (m *Manager) Run(ctx context.Context) error {
	defer m.hub.closeAll()
	for {
		wait := time.Until(m.nextDue())
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-m.kick:
		case <-t.C:
		}
		t.Stop()
		m.runDue(ctx)
	}
}

// nextDue is the earliest time anything needs work.
func (m *Manager) nextDue() time.Time {
	next := time.Now().Add(idleWake)
	if m.opts.CA != nil {
		if t := m.opts.CA.NextMaintenance(); t.Before(next) {
			next = t
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.recs {
		if d := r.due(); d.Before(next) {
			next = d
		}
	}
	return next
}

// runDue does the work that is due now, a few certificates at a time.
func (m *Manager) runDue(ctx context.Context) {
	now := time.Now()
	if m.opts.CA != nil && !m.opts.CA.NextMaintenance().After(now) {
		if err := m.opts.CA.Maintain(); err != nil {
			m.log.Error("maintain the local CA", "error", err)
		}
	}
	var due []string
	m.mu.Lock()
	for id, r := range m.recs {
		if !r.due().After(now) {
			due = append(due, id)
		}
	}
	m.mu.Unlock()
	sem := make(chan struct{}, m.opts.Parallel)
	var wg sync.WaitGroup
	for _, id := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m.work(ctx, id)
		}()
	}
	wg.Wait()
}

// work renews one certificate or asks its issuer when to, whichever is due.
func (m *Manager) work(ctx context.Context, id string) {
	defer m.lock(id)()
	rec := m.get(id)
	now := time.Now()
	if rec == nil || rec.due().After(now) {
		return // done meanwhile
	}
	renewDue := !now.Before(rec.RenewAt)
	if rec.Failures > 0 {
		renewDue = !now.Before(rec.RetryAt)
	}
	if !renewDue {
		renewDue = m.advise(ctx, rec)
		rec = m.get(id)
	}
	if !renewDue {
		return
	}
	req, err := rec.request()
	if err == nil {
		_, err = m.obtain(ctx, req, rec, EventRenewed)
	}
	if err != nil && ctx.Err() == nil {
		m.fail(rec, err)
	}
}

// advise asks an advising issuer when to renew rec and stores the answer. It reports
// whether the renewal is due now.
func (m *Manager) advise(ctx context.Context, rec *Record) bool {
	adv, ok := m.opts.Issuers[rec.Kind].(Advisor)
	r := *rec
	if !ok {
		r.CheckAt = time.Time{}
	} else if renewAt, checkAt, err := adv.Advise(ctx, rec); err != nil {
		if ctx.Err() != nil {
			return false
		}
		r.CheckAt = time.Now().Add(m.opts.RetryBase)
		m.log.Warn("ask the ACME CA when to renew", "id", rec.ID, "retry_at", r.CheckAt, "error", err)
	} else {
		if !renewAt.Equal(r.RenewAt) {
			m.log.Info("the ACME CA moved the renewal", "id", rec.ID, "renew_at", renewAt, "was", r.RenewAt)
		}
		r.RenewAt, r.CheckAt = renewAt, checkAt
	}
	if err := m.save(&r, rec); err != nil {
		m.log.Error("store renewal advice", "id", rec.ID, "error", err)
	}
	m.put(&r)
	return !time.Now().Before(r.RenewAt)
}
