package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	legolog "github.com/go-acme/lego/v4/log"
	"github.com/go-acme/lego/v4/registration"

	"hearth.dev/internal/buildinfo"
	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/leaf"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/solver"
	"hearth.dev/services/certd/internal/store"
	"hearth.dev/services/certd/internal/x509pem"
)

// The challenge types, as the ACME protocol names them.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
	DNS01     = "dns-01"
)

// DefaultARIInterval is how often renewal information is fetched when the CA gives no
// Retry-After.
const DefaultARIInterval = 6 * time.Hour

// Options configure an Issuer.
type Options struct {
	// Directory is the ACME directory URL; Email the account's contact (may be empty).
	Directory string
	Email     string
	// HTTPClient talks to the CA; RootsFile (PEM) adds roots it trusts for the CA's HTTPS.
	HTTPClient *http.Client
	Storage    store.Storage
	// Solvers answer the challenges, by type (HTTP01, TLSALPN01, DNS01).
	Solvers map[string]solver.Solver
	// DNSResolvers are the nameservers (host:port) that DNS-01 checks propagation on;
	// empty for the system's.
	DNSResolvers []string
	// DNSRecursiveOnly checks DNS-01 propagation on DNSResolvers only, not on the zone's
	// authoritative nameservers (for split DNS, or a test server without SOA records).
	DNSRecursiveOnly bool
	// Local are the local CA's constraints: names under them are refused here.
	Local names.Constraints
	// ARIInterval is how often to ask the CA when to renew; zero follows the CA's
	// Retry-After.
	ARIInterval time.Duration
	Logger      *slog.Logger
}

// Issuer obtains certificates from one ACME CA.
type Issuer struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	acct *Account // registered, once used
	// ari asks for renewal information; Obtain gets a client of its own, with the solvers
	// of its request.
	ari *lego.Client
}

var (
	_ leaf.Issuer  = (*Issuer)(nil)
	_ leaf.Advisor = (*Issuer)(nil)
)

// New returns an Issuer. It does not reach the CA: the account is loaded or registered
// on first use, so certd starts without the CA.
func New(opts Options) (*Issuer, error) {
	if opts.Directory == "" {
		return nil, fmt.Errorf("no ACME directory URL: %w", errdefs.ErrInvalidArgument)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	if len(opts.Solvers) == 0 {
		return nil, fmt.Errorf("no ACME challenge solver: give --http01-addr, --tlsalpn01-addr or --dns01-provider: %w", errdefs.ErrInvalidArgument)
	}
	// lego logs every step; those lines are debug detail in certd's log.
	legolog.Logger = slog.NewLogLogger(opts.Logger.With("component", "lego").Handler(), slog.LevelDebug)
	return &Issuer{opts: opts, log: opts.Logger}, nil
}

// HTTPClient returns a client for the CA's API that trusts the system's roots and those
// in rootsFile (PEM), if given: Pebble's, in tests.
func HTTPClient(rootsFile string) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if rootsFile != "" {
		b, err := os.ReadFile(rootsFile)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-roots: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--acme-ca-roots %s: no PEM certificate in it: %w", rootsFile, errdefs.ErrInvalidArgument)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Timeout: 2 * time.Minute, Transport: tr}, nil
}

// Challenges returns the challenge types the issuer answers, sorted.
func (i *Issuer) Challenges() []string {
	var out []string
	for t := range i.opts.Solvers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// check refuses what no public ACME CA would certify, and challenges certd does not
// answer, before asking the CA.
func (i *Issuer) check(req leaf.Request) error {
	if len(req.Names.IPs) > 0 {
		return fmt.Errorf("ACME certificates are for public DNS names, not addresses like %s: ask the local CA for addresses: %w", req.Names.IPs[0], errdefs.ErrInvalidArgument)
	}
	for _, n := range req.Names.DNS {
		if i.opts.Local.PermitsAny(names.Set{DNS: []string{n}}) {
			return fmt.Errorf("%s is a LAN name no public CA certifies: ask the local CA for it: %w", n, errdefs.ErrInvalidArgument)
		}
	}
	if req.Challenge != "" {
		if _, ok := i.opts.Solvers[req.Challenge]; !ok {
			return fmt.Errorf("certd answers no %s challenges (it answers %s): start it with %s: %w",
				req.Challenge, strings.Join(i.Challenges(), ", "), flagFor[req.Challenge], errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

var flagFor = map[string]string{HTTP01: "--http01-addr", TLSALPN01: "--tlsalpn01-addr", DNS01: "--dns01-provider"}

// account returns the registered account, registering it on first use.
func (i *Issuer) account() (*Account, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.acct != nil {
		return i.acct, nil
	}
	acct, err := loadAccount(i.opts.Storage, i.opts.Directory, i.opts.Email)
	if err != nil {
		return nil, err
	}
	if acct.Email != i.opts.Email {
		i.log.Warn("the stored ACME account has another email; keeping the account", "directory", i.opts.Directory, "account_email", acct.Email, "flag_email", i.opts.Email)
	}
	if acct.Registration == nil {
		c, err := i.client(acct)
		if err != nil {
			return nil, err
		}
		reg, err := c.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("register an ACME account at %s: %w: %w", i.opts.Directory, err, errdefs.ErrUnavailable)
		}
		acct.Registration = reg
		if err := storeAccount(i.opts.Storage, acct); err != nil {
			return nil, err
		}
		i.log.Info("registered an ACME account", "directory", i.opts.Directory, "account", reg.URI, "email", acct.Email)
	} else {
		i.log.Info("using the stored ACME account", "directory", i.opts.Directory, "account", acct.Registration.URI)
	}
	i.acct = acct
	return acct, nil
}

func (i *Issuer) client(acct *Account) (*lego.Client, error) {
	cfg := lego.NewConfig(acct)
	cfg.CADirURL = i.opts.Directory
	cfg.HTTPClient = i.opts.HTTPClient
	cfg.UserAgent = "hearth-certd/" + buildinfo.Version()
	cfg.Certificate.KeyType = certcrypto.EC256
	c, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w: %w", i.opts.Directory, err, errdefs.ErrUnavailable)
	}
	return c, nil
}

// Issue implements leaf.Issuer.
func (i *Issuer) Issue(ctx context.Context, req leaf.Request, prev *leaf.Record) (*leaf.Obtained, error) {
	if err := i.check(req); err != nil {
		return nil, err
	}
	acct, err := i.account()
	if err != nil {
		return nil, err
	}
	c, err := i.client(acct)
	if err != nil {
		return nil, err
	}
	if err := i.setSolvers(c, req.Challenge); err != nil {
		return nil, err
	}
	obtain := certificate.ObtainRequest{Domains: req.Names.DNS, Bundle: true}
	if prev != nil && prev.Leaf != nil {
		if id, err := certificate.MakeARICertID(prev.Leaf); err == nil {
			obtain.ReplacesCertID = id
		}
	}
	res, err := c.Certificate.Obtain(obtain)
	if err != nil && obtain.ReplacesCertID != "" && ctx.Err() == nil {
		// "replaces" is advice to the CA; one that no longer knows the old certificate
		// (a test CA restarted) refuses it, so ask once more without.
		i.log.Warn("ACME order replacing the old certificate failed; ordering without replaces", "names", req.Names.DNS, "error", err)
		obtain.ReplacesCertID = ""
		res, err = c.Certificate.Obtain(obtain)
	}
	if err != nil {
		return nil, fmt.Errorf("obtain a certificate for %s from %s: %w: %w", strings.Join(req.Names.DNS, ", "), i.opts.Directory, err, errdefs.ErrUnavailable)
	}
	chain, err := x509pem.ParseCerts(res.Certificate)
	if err != nil {
		return nil, fmt.Errorf("certificate from %s: %w", i.opts.Directory, err)
	}
	o := &leaf.Obtained{Chain: chain, KeyPEM: res.PrivateKey, URL: res.CertURL}
	now := time.Now()
	info, err := c.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: chain[0]})
	switch {
	case errors.Is(err, api.ErrNoARI):
	case err != nil:
		i.log.Warn("ask the ACME CA when to renew", "names", req.Names.DNS, "error", err)
		o.CheckAt = now.Add(time.Minute)
	default:
		o.RenewAt, o.CheckAt = i.schedule(info, time.Time{}, chain[0].NotAfter, now)
	}
	return o, nil
}

// setSolvers gives the client the solver for the challenge asked for, or all of them.
func (i *Issuer) setSolvers(c *lego.Client, only string) error {
	for typ, s := range i.opts.Solvers {
		if only != "" && typ != only {
			continue
		}
		var err error
		switch typ {
		case HTTP01:
			err = c.Challenge.SetHTTP01Provider(s)
		case TLSALPN01:
			err = c.Challenge.SetTLSALPN01Provider(s)
		case DNS01:
			var opts []dns01.ChallengeOption
			if len(i.opts.DNSResolvers) > 0 {
				opts = append(opts, dns01.AddRecursiveNameservers(i.opts.DNSResolvers))
			}
			if i.opts.DNSRecursiveOnly {
				opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement(), dns01.RecursiveNSsPropagationRequirement())
			}
			err = c.Challenge.SetDNS01Provider(s, opts...)
		default:
			err = fmt.Errorf("unknown challenge type %q", typ)
		}
		if err != nil {
			return fmt.Errorf("set the %s solver: %w", typ, err)
		}
	}
	return nil
}

// Advise implements leaf.Advisor with the CA's renewal information (RFC 9773); without
// it, the renewal stays at two thirds of the life.
func (i *Issuer) Advise(_ context.Context, rec *leaf.Record) (time.Time, time.Time, error) {
	c, err := i.ariClient()
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	info, err := c.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: rec.Leaf})
	if errors.Is(err, api.ErrNoARI) {
		return leaf.RenewTime(rec.IssuedAt, rec.NotAfter), time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("renewal information for %s: %w", rec.ID, err)
	}
	renewAt, checkAt := i.schedule(info, rec.RenewAt, rec.NotAfter, time.Now())
	return renewAt, checkAt, nil
}

func (i *Issuer) ariClient() (*lego.Client, error) {
	acct, err := i.account()
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ari == nil {
		if i.ari, err = i.client(acct); err != nil {
			return nil, err
		}
	}
	return i.ari, nil
}

// schedule turns renewal information into when to renew and when to ask again. A
// renewal time already inside the suggested window is kept, else one is drawn at random
// inside it (in the past means now).
func (i *Issuer) schedule(info *certificate.RenewalInfoResponse, current, notAfter, now time.Time) (renewAt, checkAt time.Time) {
	w := info.SuggestedWindow
	if !current.IsZero() && !current.Before(w.Start) && !current.After(w.End) {
		renewAt = current
	} else if t := info.ShouldRenewAt(now, notAfter.Sub(now)+time.Second); t != nil {
		renewAt = *t
	} else {
		renewAt = w.Start
	}
	interval := i.opts.ARIInterval
	if interval <= 0 {
		interval = info.RetryAfter
	}
	if interval <= 0 {
		interval = DefaultARIInterval
	}
	checkAt = now.Add(interval)
	if !checkAt.Before(renewAt) || !checkAt.Before(notAfter) {
		checkAt = time.Time{} // nothing to learn before renewing
	}
	return renewAt, checkAt
}

// ChallengeNames lists the challenge types a --flag may name.
var ChallengeNames = []string{HTTP01, TLSALPN01, DNS01}

// ValidChallenge reports whether t is a challenge type certd knows.
func ValidChallenge(t string) bool { return slices.Contains(ChallengeNames, t) }
