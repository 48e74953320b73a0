// Package setup assembles certd from its parts: storage, the local CA, the ACME issuer
// and its challenge solvers, the leaf manager and the gRPC service.
package setup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"hearth.dev/internal/daemon"
	"hearth.dev/internal/grpcserver/stdreflection"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/certd/internal/acme"
	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/certapi"
	"hearth.dev/services/certd/internal/dnsprovider"
	"hearth.dev/services/certd/internal/leaf"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/solver"
	"hearth.dev/services/certd/internal/store"
)

// Config is certd's own flags.
type Config struct {
	InternalDomain string
	LeafLifetime   time.Duration
	RootOverlap    time.Duration
	RenewBackoff   time.Duration
	Policy         names.Policy

	ACMEDirectory string
	ACMEEmail     string
	ACMECARoots   string
	HTTP01Addr    string
	TLSALPN01Addr string
	NetdSocket    string
	DNS01Provider string
	DNS01Resolver string
	DNS01Check    string
	ARIInterval   time.Duration
}

// Flags registers the flags on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.InternalDomain, "internal-domain", names.DefaultInternalDomain, "domain of containers on Hearth's internal network; the local CA certifies names under it and under .local")
	fs.DurationVar(&c.LeafLifetime, "leaf-lifetime", leaf.DefaultLifetime, "lifetime of local certificates; each is renewed two thirds into its life")
	fs.DurationVar(&c.RootOverlap, "root-overlap", 30*24*time.Hour, "after a root rotation, how long the old root stays published and cross-signs the new one")
	fs.DurationVar(&c.RenewBackoff, "renew-backoff", leaf.DefaultRetryBase, "wait after a failed renewal; doubles with each failure, up to 6h")
	fs.Func("grant", "`OWNER=NAME[,NAME...]`: names an owner (package) may have besides its own; repeatable", c.Policy.ParseGrant)
	fs.StringVar(&c.ACMEDirectory, "acme-directory", "", "ACME directory URL (e.g. https://acme-v02.api.letsencrypt.org/directory); empty: no ACME certificates")
	fs.StringVar(&c.ACMEEmail, "acme-email", "", "contact email of the ACME account")
	fs.StringVar(&c.ACMECARoots, "acme-ca-roots", "", "PEM `file` of extra roots to trust for the ACME directory's HTTPS (a test CA such as Pebble)")
	fs.StringVar(&c.HTTP01Addr, "http01-addr", "", "`address` on which certd answers HTTP-01 challenges itself (the CA connects to port 80), until netd does")
	fs.StringVar(&c.TLSALPN01Addr, "tlsalpn01-addr", "", "`address` on which certd answers TLS-ALPN-01 challenges itself (the CA connects to port 443), until netd does")
	fs.StringVar(&c.NetdSocket, "netd-challenges", "", "netd's `socket`: answer HTTP-01 and TLS-ALPN-01 through netd's listeners on ports 80 and 443 (instead of --http01-addr and --tlsalpn01-addr)")
	fs.StringVar(&c.DNS01Provider, "dns01-provider", "", "lego DNS provider `name` for DNS-01 challenges, configured by its environment variables (see lego's documentation)")
	fs.StringVar(&c.DNS01Resolver, "dns01-resolvers", "", "comma-separated `host:port` nameservers on which DNS-01 checks propagation; empty: the system's")
	fs.StringVar(&c.DNS01Check, "dns01-propagation", "authoritative", "where DNS-01 waits for the TXT record: authoritative (the zone's nameservers) or recursive (only --dns01-resolvers)")
	fs.DurationVar(&c.ARIInterval, "ari-interval", 0, "how often to ask the ACME CA when to renew (renewal information); 0 follows the CA's Retry-After")
}

// Spec describes certd to the daemon runner.
func Spec() daemon.Spec {
	var c Config
	return daemon.Spec{
		Name:       "certd",
		Reflection: stdreflection.Register,
		Summary: "certd issues and renews Hearth's certificates: a local root CA for .local names, the internal\n" +
			"domain and private addresses, and ACME certificates for public domains.",
		Flags: c.Flags,
		Init: func(_ context.Context, env *daemon.Env) (daemon.Hooks, error) {
			return c.init(env)
		},
	}
}

func (c *Config) init(env *daemon.Env) (_ daemon.Hooks, err error) {
	log := env.Logger
	if c.LeafLifetime <= 0 {
		return daemon.Hooks{}, fmt.Errorf("--leaf-lifetime %v: give a positive duration such as 168h", c.LeafLifetime)
	}
	if c.RootOverlap < 0 {
		return daemon.Hooks{}, fmt.Errorf("--root-overlap %v: give zero or a positive duration", c.RootOverlap)
	}
	cons, err := names.Local(c.InternalDomain)
	if err != nil {
		return daemon.Hooks{}, fmt.Errorf("--internal-domain: %w", err)
	}
	c.Policy.InternalDomain = cons.Domains[1]
	st, err := store.NewFS(env.StateDir)
	if err != nil {
		return daemon.Hooks{}, err
	}
	localCA, err := ca.Open(ca.Options{Storage: st, Constraints: cons, Logger: log})
	if err != nil {
		return daemon.Hooks{}, err
	}
	issuers := map[leaf.Kind]leaf.Issuer{leaf.Local: leaf.LocalIssuer{CA: localCA, Lifetime: c.LeafLifetime}}
	var p parts
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	switch {
	case c.ACMEDirectory != "":
		iss, err := c.acmeIssuer(st, cons, log, &p)
		if err != nil {
			return daemon.Hooks{}, err
		}
		issuers[leaf.ACME] = iss
		log.Info("ACME issuer", "directory", c.ACMEDirectory, "challenges", iss.Challenges())
	case c.HTTP01Addr != "" || c.TLSALPN01Addr != "" || c.DNS01Provider != "" || c.NetdSocket != "":
		return daemon.Hooks{}, errors.New("--http01-addr, --tlsalpn01-addr, --netd-challenges and --dns01-provider answer ACME challenges: give --acme-directory too")
	}
	m, err := leaf.New(leaf.Options{
		Storage: st, Issuers: issuers, Policy: c.Policy, CA: localCA, Logger: log.With("component", "leaf"),
		RetryBase: c.RenewBackoff,
	})
	if err != nil {
		return daemon.Hooks{}, err
	}
	log.Info("certificates loaded", "count", len(m.List("")), "root", localCA.Roots()[0].Cert.Subject.CommonName, "grants", c.Policy.GrantStrings())
	certv1.RegisterCertificateServiceServer(env.Server, certapi.New(m, localCA, c.RootOverlap))
	p.serve = append(p.serve, m.Run)
	return daemon.Hooks{Run: p.run, Close: p.close}, nil
}

// parts are what runs beside the gRPC server: the challenge listeners and the renewal
// loop.
type parts struct {
	listeners []net.Listener
	serve     []func(context.Context) error
}

func (p *parts) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, f := range p.serve {
		g.Go(func() error { return f(ctx) })
	}
	return g.Wait()
}

func (p *parts) close() error {
	var errs []error
	for _, l := range p.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// acmeIssuer makes the ACME issuer and the challenge solvers it answers with, binding
// the solvers' listeners now so that a taken port stops certd at start.
func (c *Config) acmeIssuer(st store.Storage, cons names.Constraints, log *slog.Logger, p *parts) (*acme.Issuer, error) {
	if c.DNS01Check != "authoritative" && c.DNS01Check != "recursive" {
		return nil, fmt.Errorf("--dns01-propagation %q: use authoritative or recursive", c.DNS01Check)
	}
	challenges := &solver.Challenges{Logger: log.With("component", "solver")}
	solvers := map[string]solver.Solver{}
	for _, s := range []struct {
		typ, addr string
		solver    solver.Solver
		serve     func(context.Context, net.Listener) error
	}{
		{acme.HTTP01, c.HTTP01Addr, challenges.HTTP01(), challenges.ServeHTTP01},
		{acme.TLSALPN01, c.TLSALPN01Addr, challenges.TLSALPN01(), challenges.ServeTLSALPN01},
	} {
		if s.addr == "" {
			continue
		}
		l, err := solver.Listen(s.addr, s.typ)
		if err != nil {
			return nil, err
		}
		p.listeners = append(p.listeners, l)
		p.serve = append(p.serve, func(ctx context.Context) error { return s.serve(ctx, l) })
		solvers[s.typ] = s.solver
	}
	if c.NetdSocket != "" {
		if c.HTTP01Addr != "" || c.TLSALPN01Addr != "" {
			return nil, errors.New("--netd-challenges answers HTTP-01 and TLS-ALPN-01 through netd: drop --http01-addr and --tlsalpn01-addr")
		}
		solvers[acme.HTTP01] = solver.Remote{Socket: c.NetdSocket, Type: netv1.ChallengeType_CHALLENGE_TYPE_HTTP_01}
		solvers[acme.TLSALPN01] = solver.Remote{Socket: c.NetdSocket, Type: netv1.ChallengeType_CHALLENGE_TYPE_TLS_ALPN_01}
	}
	if c.DNS01Provider != "" {
		dp, err := dnsprovider.New(c.DNS01Provider)
		if err != nil {
			return nil, err
		}
		solvers[acme.DNS01] = dp
	}
	client, err := acme.HTTPClient(c.ACMECARoots)
	if err != nil {
		return nil, err
	}
	var resolvers []string
	if c.DNS01Resolver != "" {
		resolvers = strings.Split(c.DNS01Resolver, ",")
	}
	return acme.New(acme.Options{
		Directory: c.ACMEDirectory, Email: c.ACMEEmail, HTTPClient: client, Storage: st,
		Solvers: solvers, DNSResolvers: resolvers, DNSRecursiveOnly: c.DNS01Check == "recursive",
		Local: cons, ARIInterval: c.ARIInterval, Logger: log.With("component", "acme"),
	})
}
