// Package ca is certd's local certificate authority: an ECDSA P-256 root that lives for
// years and an intermediate that signs the leaves, both name-constrained to the names of
// the LAN, kept through a store.Storage.
//
// Storage layout (every file 0600):
//
//	ca/index.json                    which root and intermediate are current, which old roots are still published
//	ca/<root id>/root.pem, root.key
//	ca/<root id>/intermediate-<n>.pem, intermediate-<n>.key
//	ca/<root id>/cross.pem           this root signed by the previous one, during a rotation's overlap
//
// New files are written before the index that names them, so a crash leaves the old
// state or the new one.
package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/store"
	"hearth.dev/services/certd/internal/x509pem"
)

// Default lifetimes.
const (
	DefaultRootLifetime         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateLifetime = 365 * 24 * time.Hour
	// backdate covers clocks a little behind ours.
	backdate = time.Minute
)

// Options configure a CA.
type Options struct {
	Storage     store.Storage
	Constraints names.Constraints
	// RootLifetime and IntermediateLifetime default to the constants above.
	RootLifetime         time.Duration
	IntermediateLifetime time.Duration
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// CA is the local certificate authority. It is safe for concurrent use.
type CA struct {
	opts Options

	mu       sync.RWMutex
	idx      index
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate
	interKey crypto.Signer
	cross    *x509.Certificate // nil outside a rotation's overlap
	previous []*x509.Certificate
}

type index struct {
	Version      int        `json:"version"`
	Current      string     `json:"current"`
	Intermediate int        `json:"intermediate"`
	Previous     []previous `json:"previous,omitempty"`
}

type previous struct {
	ID             string    `json:"id"`
	PublishedUntil time.Time `json:"published_until"`
}

const indexKey = "ca/index.json"

// Open loads the CA from storage, or makes a new root and intermediate on first start.
func Open(opts Options) (*CA, error) {
	if opts.RootLifetime == 0 {
		opts.RootLifetime = DefaultRootLifetime
	}
	if opts.IntermediateLifetime == 0 {
		opts.IntermediateLifetime = DefaultIntermediateLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &CA{opts: opts}
	err := store.LoadJSON(opts.Storage, indexKey, &c.idx)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		if err := c.create(); err != nil {
			return nil, fmt.Errorf("make the local root CA: %w", err)
		}
		opts.Logger.Info("made a new local root CA", "root", c.root.Subject.CommonName, "sha256", Fingerprint(c.root))
		return c, nil
	case err != nil:
		return nil, err
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("load the local CA from %s: %w", indexKey, err)
	}
	return c, nil
}

func (c *CA) create() error {
	g, err := c.newGeneration(c.opts.Now())
	if err != nil {
		return err
	}
	idx := index{Version: 1, Current: g.id, Intermediate: 1}
	if err := store.StoreJSON(c.opts.Storage, indexKey, idx); err != nil {
		return err
	}
	c.idx, c.root, c.rootKey, c.inter, c.interKey = idx, g.root, g.rootKey, g.inter, g.interKey
	return nil
}

// generation is a root and its first intermediate.
type generation struct {
	id                string
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

// newGeneration makes and stores a new root and its first intermediate; no index names
// them yet.
func (c *CA) newGeneration(now time.Time) (*generation, error) {
	g := &generation{}
	var err error
	if g.root, g.rootKey, err = c.newRoot(now); err != nil {
		return nil, err
	}
	g.id = rootID(g.root)
	if err := c.storeCert(g.id+"/root", g.root, g.rootKey); err != nil {
		return nil, err
	}
	if g.inter, g.interKey, err = c.newIntermediate(now, g.root, g.rootKey, g.id, 1); err != nil {
		return nil, err
	}
	if err := c.storeCert(g.id+"/intermediate-1", g.inter, g.interKey); err != nil {
		return nil, err
	}
	return g, nil
}

func (c *CA) load() error {
	id := c.idx.Current
	root, rootKey, err := c.loadCert(id + "/root")
	if err != nil {
		return err
	}
	inter, interKey, err := c.loadCert(fmt.Sprintf("%s/intermediate-%d", id, c.idx.Intermediate))
	if err != nil {
		return err
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("intermediate %d is not signed by root %s: %w", c.idx.Intermediate, id, err)
	}
	c.root, c.rootKey, c.inter, c.interKey = root, rootKey, inter, interKey
	if b, err := c.opts.Storage.Load("ca/" + id + "/cross.pem"); err == nil {
		certs, err := x509pem.ParseCerts(b)
		if err != nil {
			return fmt.Errorf("cross certificate of %s: %w", id, err)
		}
		c.cross = certs[0]
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	for _, p := range c.idx.Previous {
		b, err := c.opts.Storage.Load("ca/" + p.ID + "/root.pem")
		if err != nil {
			return fmt.Errorf("previous root %s: %w", p.ID, err)
		}
		certs, err := x509pem.ParseCerts(b)
		if err != nil {
			return fmt.Errorf("previous root %s: %w", p.ID, err)
		}
		c.previous = append(c.previous, certs[0])
	}
	return nil
}

// storeCert writes <name>.pem and, with a key, <name>.key below ca/.
func (c *CA) storeCert(name string, cert *x509.Certificate, key crypto.Signer) error {
	if key != nil {
		kp, err := x509pem.EncodeKey(key)
		if err != nil {
			return err
		}
		if err := c.opts.Storage.Store("ca/"+name+".key", kp); err != nil {
			return err
		}
	}
	return c.opts.Storage.Store("ca/"+name+".pem", x509pem.EncodeCerts(cert))
}

func (c *CA) loadCert(name string) (*x509.Certificate, crypto.Signer, error) {
	b, err := c.opts.Storage.Load("ca/" + name + ".pem")
	if err != nil {
		return nil, nil, err
	}
	certs, err := x509pem.ParseCerts(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.pem: %w", name, err)
	}
	kb, err := c.opts.Storage.Load("ca/" + name + ".key")
	if err != nil {
		return nil, nil, err
	}
	key, err := x509pem.ParseKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.key: %w", name, err)
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("%s.key does not belong to %s.pem", name, name)
	}
	return certs[0], key, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// caTemplate is the shape of every CA certificate: name-constrained (critical) to the
// LAN's names.
func (c *CA) caTemplate(cn string, notBefore, notAfter time.Time, maxPathLen int) (*x509.Certificate, error) {
	serial, err := Serial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: cn, Organization: []string{"Hearth"}},
		NotBefore:                   notBefore,
		NotAfter:                    notAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  maxPathLen,
		MaxPathLenZero:              maxPathLen == 0,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         c.opts.Constraints.X509Domains(),
		PermittedIPRanges:           c.opts.Constraints.X509Ranges(),
	}, nil
}

// newRoot makes a self-signed root. Its path length allows an intermediate and, during a
// rotation, the next root cross-signed by it.
func (c *CA) newRoot(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := x509pem.NewKey()
	if err != nil {
		return nil, nil, err
	}
	skid := sha256.Sum256(must(x509.MarshalPKIXPublicKey(key.Public())))
	cn := fmt.Sprintf("Hearth Local Root CA %s %s", now.UTC().Format("2006-01-02"), hex.EncodeToString(skid[:4]))
	tmpl, err := c.caTemplate(cn, now.Add(-backdate), now.Add(c.opts.RootLifetime), 2)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SubjectKeyId = skid[:20]
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	return cert, key, err
}

func (c *CA) newIntermediate(now time.Time, root *x509.Certificate, rootKey crypto.Signer, id string, n int) (*x509.Certificate, crypto.Signer, error) {
	key, err := x509pem.NewKey()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(c.opts.IntermediateLifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl, err := c.caTemplate(fmt.Sprintf("Hearth Local Intermediate CA %s-%d", id, n), now.Add(-backdate), notAfter, 0)
	if err != nil {
		return nil, nil, err
	}
	cert, err := sign(tmpl, root, key.Public(), rootKey)
	return cert, key, err
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("sign %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// Serial returns a random positive 128-bit serial number.
func Serial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return s.Add(s, big.NewInt(1)), nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Fingerprint returns the SHA-256 of a certificate's DER, hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func rootID(root *x509.Certificate) string { return Fingerprint(root)[:16] }

// Root is a published root.
type Root struct {
	Cert    *x509.Certificate
	Current bool
	// PublishedUntil is set for a rotated-out root.
	PublishedUntil time.Time
}

// Roots returns the roots users should trust: the current one first, then those being
// rotated out whose overlap has not ended.
func (c *CA) Roots() []Root {
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := c.opts.Now()
	out := []Root{{Cert: c.root, Current: true}}
	for i, p := range c.idx.Previous {
		if now.Before(p.PublishedUntil) {
			out = append(out, Root{Cert: c.previous[i], PublishedUntil: p.PublishedUntil})
		}
	}
	return out
}

// Issued is a freshly signed leaf.
type Issued struct {
	Leaf *x509.Certificate
	// Chain is the leaf and the certificates up to (not including) a root.
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// Issue makes a key and signs a server certificate for the names, valid for lifetime
// (cut at the intermediate's end). Names outside the constraints are refused.
func (c *CA) Issue(s names.Set, lifetime time.Duration) (*Issued, error) {
	if err := c.opts.Constraints.Permits(s); err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("certificate lifetime %v: give a positive duration: %w", lifetime, errdefs.ErrInvalidArgument)
	}
	key, err := x509pem.NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := Serial()
	if err != nil {
		return nil, err
	}
	c.mu.RLock()
	inter, interKey, chainTail := c.inter, c.interKey, c.chainTailLocked()
	c.mu.RUnlock()
	now := c.opts.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(inter.NotAfter) {
		notAfter = inter.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     s.DNS,
	}
	if len(s.DNS) > 0 {
		tmpl.Subject.CommonName = s.DNS[0]
	}
	for _, ip := range s.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	leaf, err := sign(tmpl, inter, key.Public(), interKey)
	if err != nil {
		return nil, err
	}
	return &Issued{Leaf: leaf, Chain: append([]*x509.Certificate{leaf}, chainTail...), Key: key}, nil
}

// chainTailLocked returns what follows a leaf in its chain: the intermediate and, during
// a rotation's overlap, the current root cross-signed by the previous one, so that devices
// trusting only the old root still verify new leaves.
func (c *CA) chainTailLocked() []*x509.Certificate {
	tail := []*x509.Certificate{c.inter}
	if c.cross != nil && c.opts.Now().Before(c.cross.NotAfter) {
		tail = append(tail, c.cross)
	}
	return tail
}

// Rotate makes a new root and intermediate. The old root stays published, and
// cross-signs the new one, for overlap; its keys are removed.
func (c *CA) Rotate(overlap time.Duration) error {
	if overlap < 0 {
		return fmt.Errorf("overlap %v: give zero or a positive duration: %w", overlap, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	g, err := c.newGeneration(now)
	if err != nil {
		return err
	}
	root, id := g.root, g.id
	until := now.Add(overlap)
	if until.After(c.root.NotAfter) {
		until = c.root.NotAfter
	}
	var cross *x509.Certificate
	if overlap > 0 {
		tmpl, err := c.caTemplate(root.Subject.CommonName, now.Add(-backdate), until, 1)
		if err != nil {
			return err
		}
		tmpl.Subject = root.Subject
		tmpl.SubjectKeyId = root.SubjectKeyId
		if cross, err = sign(tmpl, c.root, root.PublicKey, c.rootKey); err != nil {
			return err
		}
		if err := c.storeCert(id+"/cross", cross, nil); err != nil {
			return err
		}
	}
	idx := index{Version: 1, Current: id, Intermediate: 1}
	prev := []*x509.Certificate{}
	if overlap > 0 {
		idx.Previous = append(idx.Previous, previous{ID: c.idx.Current, PublishedUntil: until})
		prev = append(prev, c.root)
	}
	for i, p := range c.idx.Previous {
		if now.Before(p.PublishedUntil) {
			idx.Previous = append(idx.Previous, p)
			prev = append(prev, c.previous[i])
		}
	}
	if err := store.StoreJSON(c.opts.Storage, indexKey, idx); err != nil {
		return err
	}
	old := c.idx
	c.idx, c.root, c.rootKey, c.inter, c.interKey, c.cross, c.previous = idx, root, g.rootKey, g.inter, g.interKey, cross, prev
	c.removeUnpublished(old, overlap > 0)
	c.opts.Logger.Info("rotated the local root CA", "root", root.Subject.CommonName, "sha256", Fingerprint(root), "old_root_published_until", until)
	return nil
}

// removeUnpublished deletes the keys of the root old.Current (or, if it is no longer
// published, all of it) and every previous root that idx no longer names.
func (c *CA) removeUnpublished(old index, keepOldCert bool) {
	st := c.opts.Storage
	if keepOldCert {
		keys, err := st.List("ca/" + old.Current)
		for _, k := range keys {
			if strings.HasSuffix(k, ".key") {
				err = errors.Join(err, st.Delete(k))
			}
		}
		if err != nil {
			c.opts.Logger.Warn("remove the old root's keys", "error", err)
		}
	} else if err := st.Delete("ca/" + old.Current); err != nil {
		c.opts.Logger.Warn("remove the old root", "error", err)
	}
	for _, p := range old.Previous {
		if !c.idx.names(p.ID) {
			if err := st.Delete("ca/" + p.ID); err != nil {
				c.opts.Logger.Warn("remove a retired root", "root", p.ID, "error", err)
			}
		}
	}
}

func (idx index) names(id string) bool {
	if idx.Current == id {
		return true
	}
	for _, p := range idx.Previous {
		if p.ID == id {
			return true
		}
	}
	return false
}

// NextMaintenance returns when Maintain next has work: the intermediate's renewal at two
// thirds of its life, or the end of an overlap.
func (c *CA) NextMaintenance() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	next := renewTime(c.inter.NotBefore.Add(backdate), c.inter.NotAfter)
	for _, p := range c.idx.Previous {
		if p.PublishedUntil.Before(next) {
			next = p.PublishedUntil
		}
	}
	return next
}

// renewTime is two thirds of the way from issued to notAfter.
func renewTime(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) * 2 / 3)
}

// Maintain renews the intermediate once two thirds of its life are gone and stops
// publishing old roots whose overlap has ended.
func (c *CA) Maintain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	idx := c.idx
	idx.Previous = nil
	var prev []*x509.Certificate
	for i, p := range c.idx.Previous {
		if now.Before(p.PublishedUntil) {
			idx.Previous = append(idx.Previous, p)
			prev = append(prev, c.previous[i])
		}
	}
	inter, interKey := c.inter, c.interKey
	if !now.Before(renewTime(c.inter.NotBefore.Add(backdate), c.inter.NotAfter)) {
		idx.Intermediate++
		var err error
		inter, interKey, err = c.newIntermediate(now, c.root, c.rootKey, idx.Current, idx.Intermediate)
		if err != nil {
			return err
		}
		if err := c.storeCert(fmt.Sprintf("%s/intermediate-%d", idx.Current, idx.Intermediate), inter, interKey); err != nil {
			return err
		}
	}
	if len(idx.Previous) == len(c.idx.Previous) && idx.Intermediate == c.idx.Intermediate {
		return nil
	}
	if err := store.StoreJSON(c.opts.Storage, indexKey, idx); err != nil {
		return err
	}
	old := c.idx
	c.idx, c.inter, c.interKey, c.previous = idx, inter, interKey, prev
	if idx.Intermediate != old.Intermediate {
		if err := c.opts.Storage.Delete(fmt.Sprintf("ca/%s/intermediate-%d.key", old.Current, old.Intermediate)); err != nil {
			c.opts.Logger.Warn("remove the old intermediate's key", "error", err)
		}
		c.opts.Logger.Info("renewed the local intermediate CA", "intermediate", inter.Subject.CommonName, "not_after", inter.NotAfter)
	}
	for _, p := range old.Previous {
		if !idx.names(p.ID) {
			if err := c.opts.Storage.Delete("ca/" + p.ID); err != nil {
				c.opts.Logger.Warn("remove a retired root", "root", p.ID, "error", err)
			}
			c.opts.Logger.Info("stopped publishing a rotated-out root", "root", p.ID)
		}
	}
	return nil
}
