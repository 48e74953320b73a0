package leaf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/keylock"
	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/store"
	"hearth.dev/services/certd/internal/x509pem"
)

// Issuer obtains certificates of one kind.
type Issuer interface {
	// Issue obtains a new certificate for req; prev is the one it replaces, or nil.
	Issue(ctx context.Context, req Request, prev *Record) (*Obtained, error)
}

// Advisor is an Issuer whose CA says when to renew (ACME Renewal Information).
type Advisor interface {
	// Advise returns when to renew rec and when to ask again.
	Advise(ctx context.Context, rec *Record) (renewAt, checkAt time.Time, err error)
}

// Obtained is what an Issuer returns.
type Obtained struct {
	// Chain is the leaf first, then the certificates up to a root.
	Chain  []*x509.Certificate
	KeyPEM []byte
	// RenewAt is when to renew; zero means two thirds into the leaf's life.
	RenewAt time.Time
	// CheckAt is when to ask the issuer's Advise again; zero for never.
	CheckAt time.Time
	URL     string
}

// Options configure a Manager.
type Options struct {
	Storage store.Storage
	Issuers map[Kind]Issuer
	Policy  names.Policy
	// CA, when set, is maintained by Run and rotated by RotateRoot.
	CA     *ca.CA
	Logger *slog.Logger
	// RetryBase and RetryMax bound the backoff after failed renewals.
	RetryBase, RetryMax time.Duration
	// Parallel bounds the renewals Run does at once.
	Parallel int
}

// Defaults for Options.
const (
	DefaultRetryBase = 30 * time.Second
	DefaultRetryMax  = 6 * time.Hour
	idleWake         = time.Hour
)

// Manager keeps the certificates. It is safe for concurrent use.
type Manager struct {
	opts Options
	log  *slog.Logger
	hub  Hub
	kick chan struct{}

	mu    sync.Mutex
	recs  map[string]*Record
	locks keylock.Map
}

// New loads the stored certificates. A damaged record is logged and left out: it is
// issued anew when asked for.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax < opts.RetryBase {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryBase)
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	m := &Manager{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1), recs: map[string]*Record{}}
	dirs, err := opts.Storage.List("certs")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		rec, err := m.load(d)
		if err != nil {
			m.log.Error("skipping a damaged certificate record; it is issued anew when asked for", "dir", d, "error", err)
			continue
		}
		m.recs[rec.ID] = rec
	}
	return m, nil
}

func (m *Manager) load(dir string) (*Record, error) {
	var rec Record
	if err := store.LoadJSON(m.opts.Storage, dir+"/meta.json", &rec); err != nil {
		return nil, err
	}
	if dir != "certs/"+rec.ID {
		return nil, fmt.Errorf("%s/meta.json holds id %q", dir, rec.ID)
	}
	var err error
	if rec.ChainPEM, err = m.opts.Storage.Load(dir + "/" + rec.Serial + ".pem"); err != nil {
		return nil, err
	}
	if rec.KeyPEM, err = m.opts.Storage.Load(dir + "/" + rec.Serial + ".key"); err != nil {
		return nil, err
	}
	certs, err := x509pem.ParseCerts(rec.ChainPEM)
	if err != nil {
		return nil, err
	}
	rec.Leaf = certs[0]
	return &rec, nil
}

// save writes a record: a new certificate's chain and key first, then the metadata that
// names them, then it removes the files of the certificate it replaced.
func (m *Manager) save(rec, prev *Record) error {
	st := m.opts.Storage
	dir := "certs/" + rec.ID
	if prev == nil || prev.Serial != rec.Serial {
		if err := st.Store(dir+"/"+rec.Serial+".key", rec.KeyPEM); err != nil {
			return err
		}
		if err := st.Store(dir+"/"+rec.Serial+".pem", rec.ChainPEM); err != nil {
			return err
		}
	}
	if err := store.StoreJSON(st, dir+"/meta.json", rec); err != nil {
		return err
	}
	if prev != nil && prev.Serial != rec.Serial {
		for _, ext := range []string{".key", ".pem"} {
			if err := st.Delete(dir + "/" + prev.Serial + ext); err != nil {
				m.log.Warn("remove a replaced certificate", "id", rec.ID, "error", err)
			}
		}
	}
	return nil
}

func (m *Manager) get(id string) *Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recs[id]
}

func (m *Manager) put(rec *Record) {
	m.mu.Lock()
	m.recs[rec.ID] = rec
	m.mu.Unlock()
}

// lock serializes the work on one certificate.
func (m *Manager) lock(id string) func() { return m.locks.Lock(id) }

// Subscribe starts a subscription to every change.
func (m *Manager) Subscribe() *Sub { return m.hub.Subscribe() }

// Publish sends an event to the watchers.
func (m *Manager) publish(kind EventKind, rec *Record) {
	m.hub.Publish(Event{Kind: kind, Record: rec})
}

// wake makes Run look at the schedule again.
func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Issue returns the certificate for req: the cached one while it is not due for
// renewal, else a new one. If renewing a cached certificate fails while it is still
// valid, the cached one is returned and the failure kept for the renewal loop.
func (m *Manager) Issue(ctx context.Context, req Request) (*Record, error) {
	if err := m.opts.Policy.Allow(req.Owner, req.Names, req.Held...); err != nil {
		return nil, err
	}
	if _, ok := m.opts.Issuers[req.Kind]; !ok {
		return nil, m.noIssuer(req.Kind)
	}
	id := req.ID()
	defer m.lock(id)()
	old := m.get(id)
	now := time.Now()
	if old != nil && now.Before(old.NotAfter) && (now.Before(old.RenewAt) || old.Failures > 0 && now.Before(old.RetryAt)) {
		return old, nil // cached; or failing, and the renewal loop retries at RetryAt
	}
	if old == nil {
		return m.obtain(ctx, req, nil, EventIssued)
	}
	rec, err := m.obtain(ctx, req, old, EventRenewed)
	if err != nil && now.Before(old.NotAfter) {
		m.fail(old, err)
		return m.get(id), nil
	}
	return rec, err
}

func (m *Manager) noIssuer(k Kind) error {
	if k == ACME {
		return fmt.Errorf("certd has no ACME CA configured: start it with --acme-directory URL (and --acme-email): %w", errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("no issuer %q: %w", k, errdefs.ErrFailedPrecondition)
}

// obtain gets a new certificate for req from its issuer, stores it and tells watchers.
// The caller holds the certificate's lock.
func (m *Manager) obtain(ctx context.Context, req Request, prev *Record, kind EventKind) (*Record, error) {
	iss, ok := m.opts.Issuers[req.Kind]
	if !ok {
		return nil, m.noIssuer(req.Kind)
	}
	start := time.Now()
	o, err := iss.Issue(ctx, req, prev)
	if err != nil {
		return nil, err
	}
	leaf := o.Chain[0]
	rec := &Record{
		ID:        req.ID(),
		Kind:      req.Kind,
		Owner:     req.Owner,
		DNSNames:  req.Names.DNS,
		IPs:       req.Names.IPStrings(),
		Challenge: req.Challenge,
		Serial:    fmt.Sprintf("%032x", leaf.SerialNumber),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		IssuedAt:  start,
		RenewAt:   o.RenewAt,
		CheckAt:   o.CheckAt,
		URL:       o.URL,
		ChainPEM:  x509pem.EncodeCerts(o.Chain...),
		KeyPEM:    o.KeyPEM,
		Leaf:      leaf,
	}
	if rec.RenewAt.IsZero() {
		rec.RenewAt = RenewTime(start, leaf.NotAfter)
	}
	if err := m.save(rec, prev); err != nil {
		return nil, err
	}
	m.put(rec)
	m.log.Info("certificate "+eventVerb[kind], "id", rec.ID, "owner", rec.Owner, "names", req.Names.Strings(), "issuer", rec.Kind,
		"serial", rec.Serial, "not_after", rec.NotAfter, "renew_at", rec.RenewAt, "took", time.Since(start).Round(time.Millisecond))
	m.publish(kind, rec)
	m.wake()
	return rec, nil
}

var eventVerb = map[EventKind]string{EventIssued: "issued", EventRenewed: "renewed", EventReissued: "re-issued"}

// fail records a failed renewal of rec and schedules a retry with backoff.
func (m *Manager) fail(rec *Record, err error) {
	r := *rec
	r.Failures++
	r.LastError = err.Error()
	r.RetryAt = time.Now().Add(Backoff(r.Failures, m.opts.RetryBase, m.opts.RetryMax))
	if serr := m.save(&r, rec); serr != nil {
		m.log.Error("store a failed renewal", "id", r.ID, "error", serr)
	}
	m.put(&r)
	m.log.Warn("certificate renewal failed", "id", r.ID, "failures", r.Failures, "retry_at", r.RetryAt, "not_after", r.NotAfter, "error", err)
	m.publish(EventRenewalFailed, &r)
	m.wake()
}

// Get returns one certificate. With an owner, another owner's certificate is refused.
func (m *Manager) Get(id, owner string) (*Record, error) {
	rec := m.get(id)
	if rec == nil {
		return nil, fmt.Errorf("certificate %q: %w (hearthctl cert ls lists them)", id, errdefs.ErrNotFound)
	}
	if owner != "" && rec.Owner != owner {
		return nil, fmt.Errorf("certificate %q belongs to %q, not %q: %w", id, rec.Owner, owner, errdefs.ErrPermissionDenied)
	}
	return rec, nil
}

// List returns the certificates, of one owner if owner is set, sorted by id.
func (m *Manager) List(owner string) []*Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Record, 0, len(m.recs))
	for _, r := range m.recs {
		if owner == "" || r.Owner == owner {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Renew renews a certificate now.
func (m *Manager) Renew(ctx context.Context, id, owner string) (*Record, error) {
	if _, err := m.Get(id, owner); err != nil {
		return nil, err
	}
	defer m.lock(id)()
	rec := m.get(id)
	req, err := rec.request()
	if err != nil {
		return nil, err
	}
	return m.obtain(ctx, req, rec, EventRenewed)
}

// RotateRoot rotates the local root (see ca.CA.Rotate) and re-issues every local
// certificate under the new intermediate. It returns how many were re-issued.
func (m *Manager) RotateRoot(ctx context.Context, overlap time.Duration) (int, error) {
	if m.opts.CA == nil {
		return 0, fmt.Errorf("no local CA: %w", errdefs.ErrFailedPrecondition)
	}
	if err := m.opts.CA.Rotate(overlap); err != nil {
		return 0, err
	}
	m.hub.Publish(Event{Kind: EventRootRotated, Roots: m.opts.CA.Roots()})
	n := 0
	var errs []error
	for _, rec := range m.List("") {
		if rec.Kind != Local {
			continue
		}
		if err := m.reissue(ctx, rec.ID); err != nil {
			errs = append(errs, fmt.Errorf("re-issue %s: %w", rec.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (m *Manager) reissue(ctx context.Context, id string) error {
	defer m.lock(id)()
	rec := m.get(id)
	req, err := rec.request()
	if err != nil {
		return err
	}
	_, err = m.obtain(ctx, req, rec, EventReissued)
	if err != nil {
		m.fail(rec, err)
	}
	return err
}
