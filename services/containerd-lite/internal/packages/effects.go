package packages

// The host side of the package's own effects (hostapi.PackageEffects): status, health
// results, progress, bindings, certificates, the container's address, notifications and
// the data version. Each effect is called with the container whose host.sock the call
// came in on; a package's id is its container's name, so that is the only package an
// effect acts for.
//
// Authorization. A request names no package: it can reach another package's resources
// only by their names. Naming what belongs to another package (an interface written
// "other/web", a domain bound to another package's interface, a certificate name that is
// not the caller's) is PermissionDenied, naming it; naming something of the caller's own
// that does not exist (an interface its manifest does not declare, a binding it does not
// have) is NotFound. An exposure the caller's manifest does not allow is
// PermissionDenied too.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/guestclient"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Limits of what packages leave with the host.
const (
	// MaxNotifications a package has kept; the oldest go first.
	MaxNotifications = 100
	// MaxHealthResults and MaxProgress a container has at once.
	MaxHealthResults = 32
	MaxProgress      = 16
	// DefaultInternalDomain is the bridge's domain: <id>.hearth.internal.
	DefaultInternalDomain = "hearth.internal"
	maxNameLen            = 64
	maxMessage            = 1024
	maxTitle              = 200
	maxNotifyMessage      = 4096
	maxDataVersion        = 64
	maxCertNames          = 16
)

// Certs is certd (certdclient.Client).
type Certs interface {
	Issue(ctx context.Context, req *certv1.IssueCertificateRequest) (*certv1.Certificate, error)
	Roots(ctx context.Context) ([][]byte, error)
}

// EffectRecords are the store's notifications and data versions.
type EffectRecords interface {
	AddNotification(n store.Notification, keep int) (store.Notification, error)
	ListNotifications(pkg string, all bool) ([]store.Notification, error)
	DismissNotifications(ids []string, pkg string) (int, error)
	DeleteNotifications(pkg string) error
	DataVersion(id string) (string, error)
	SetDataVersion(id, version string) error
}

// WaitingFor reports the dependencies a package waits for (nil: none).
type WaitingFor func(ctx context.Context, pkg string) []*hostv1.Wait

// EffectsOptions configure the effects.
type EffectsOptions struct {
	Records EffectRecords
	Certs   Certs
	// InternalDomain is the bridge's domain (DefaultInternalDomain when empty).
	InternalDomain string
	// WaitingFor may be nil, or be set later with SetWaitingFor.
	WaitingFor WaitingFor
}

// Effects carry out the package's own effects.
type Effects struct {
	m    *Manager
	o    EffectsOptions
	log  *slog.Logger
	mu   sync.Mutex
	live map[string]*liveState
	wait WaitingFor
}

// liveState is what a container's scripts set that lasts while the container does.
type liveState struct {
	created  time.Time
	health   map[string]*hostv1.HealthResult
	progress map[string]*hostv1.Progress
}

// Effects returns the manager's effects; the manager forwards purges to them.
func (m *Manager) Effects(o EffectsOptions) *Effects {
	if o.InternalDomain == "" {
		o.InternalDomain = DefaultInternalDomain
	}
	e := &Effects{m: m, o: o, log: m.log, live: map[string]*liveState{}, wait: o.WaitingFor}
	m.effects.Store(e)
	return e
}

// SetWaitingFor plugs in the dependencies' answer.
func (e *Effects) SetWaitingFor(f WaitingFor) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wait = f
}

// invalid is a bad parameter: it names the parameter and the fix.
func invalid(param, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", param, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// checkName checks a health result's or phase's name.
func checkName(param, v string) error {
	if v == "" {
		return invalid(param, "empty: give a name of lower-case letters, digits, '.', '_' and '-'")
	}
	if len(v) > maxNameLen {
		return invalid(param, "%d characters: at most %d", len(v), maxNameLen)
	}
	if strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
		return invalid(param, "%q: use lower-case letters, digits, '.', '_' and '-' only", v)
	}
	return nil
}

// checkText checks text shown to the user: UTF-8, no control characters but newlines
// and tabs, at most max bytes (required: not empty).
func checkText(param, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalid(param, "empty: give a few words for the user")
	}
	if len(v) > max {
		return invalid(param, "%d bytes: at most %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return invalid(param, "not UTF-8 text")
	}
	for _, r := range v {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return invalid(param, "control character %U: plain text only (newlines and tabs allowed)", r)
		}
	}
	return nil
}

// CheckDataVersion checks a data version: 1 to 64 bytes of printable ASCII.
func CheckDataVersion(v string) error {
	if v == "" {
		return invalid("version", "empty: give the version of the package's data, such as 2 or 1.4.0")
	}
	if len(v) > maxDataVersion {
		return invalid("version", "%d bytes: at most %d", len(v), maxDataVersion)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return invalid("version", "byte %#x at %d: printable ASCII only", v[i], i)
		}
	}
	return nil
}

var healthResults = []string{"passing", "failing", "starting", "disabled"}

// CheckHealth checks a health.set request.
func CheckHealth(req *hostv1.SetHealthRequest) error {
	if err := checkName("name", req.GetName()); err != nil {
		return err
	}
	if !slices.Contains(healthResults, req.GetResult()) {
		return invalid("result", "%q: give passing, failing, starting or disabled", req.GetResult())
	}
	return checkText("message", req.GetMessage(), maxMessage, false)
}

// CheckProgress checks a progress.set request.
func CheckProgress(req *hostv1.SetProgressRequest) error {
	if err := checkName("phase", req.GetPhase()); err != nil {
		return err
	}
	if req.GetTotal() > 0 && req.GetDone() > req.GetTotal() {
		return invalid("done", "%d is more than total %d", req.GetDone(), req.GetTotal())
	}
	return checkText("message", req.GetMessage(), maxMessage, false)
}

var notifyLevels = []string{"info", "success", "warning", "error"}

// CheckNotify checks a notify request; an empty level is info.
func CheckNotify(req *hostv1.NotifyRequest) error {
	if l := req.GetLevel(); l != "" && !slices.Contains(notifyLevels, l) {
		return invalid("level", "%q: give info, success, warning or error", l)
	}
	if err := checkText("title", req.GetTitle(), maxTitle, true); err != nil {
		return err
	}
	if strings.ContainsAny(req.GetTitle(), "\n\t") {
		return invalid("title", "one line: put the rest in message")
	}
	return checkText("message", req.GetMessage(), maxNotifyMessage, false)
}

// state returns the container's live state, fresh when the container is new (another
// container of the same name had the old one), and nil when the container is gone.
func (e *Effects) state(ctx context.Context, container string, create bool) (*liveState, containers.Info, error) {
	info, err := e.m.opts.Containers.Get(ctx, container)
	e.mu.Lock()
	defer e.mu.Unlock()
	if errors.Is(err, errdefs.ErrNotFound) {
		delete(e.live, container)
		return nil, info, err
	}
	if err != nil {
		return nil, info, err
	}
	s := e.live[container]
	if s != nil && !s.created.Equal(info.CreatedAt) {
		s = nil
	}
	if s == nil && create {
		s = &liveState{created: info.CreatedAt, health: map[string]*hostv1.HealthResult{}, progress: map[string]*hostv1.Progress{}}
		e.live[container] = s
	}
	return s, info, nil
}

// Forget drops what a container's scripts set (its container is deleted).
func (e *Effects) Forget(container string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.live, container)
}

// SetHealth implements hostapi.PackageEffects.
func (e *Effects) SetHealth(ctx context.Context, container string, req *hostv1.SetHealthRequest) (*hostv1.SetHealthResponse, error) {
	if err := CheckHealth(req); err != nil {
		return nil, err
	}
	s, _, err := e.state(ctx, container, true)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := s.health[req.GetName()]; !ok && len(s.health) >= MaxHealthResults {
		return nil, fmt.Errorf("%s has %d health results, the most it may have: set one of them again instead of %q: %w", container, MaxHealthResults, req.GetName(), errdefs.ErrResourceExhausted)
	}
	s.health[req.GetName()] = &hostv1.HealthResult{Name: req.GetName(), Result: req.GetResult(), Message: req.GetMessage(), UpdatedAt: timestamppb.Now()}
	return &hostv1.SetHealthResponse{}, nil
}

// SetProgress implements hostapi.PackageEffects. done = total (> 0) ends the phase;
// while one of the package's operations runs (install, update, restore), its progress
// goes to that operation's caller too.
func (e *Effects) SetProgress(ctx context.Context, container string, req *hostv1.SetProgressRequest) (*hostv1.SetProgressResponse, error) {
	if err := CheckProgress(req); err != nil {
		return nil, err
	}
	s, _, err := e.state(ctx, container, true)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	phase := req.GetPhase()
	if req.GetTotal() > 0 && req.GetDone() == req.GetTotal() {
		delete(s.progress, phase)
	} else if _, ok := s.progress[phase]; !ok && len(s.progress) >= MaxProgress {
		e.mu.Unlock()
		return nil, fmt.Errorf("%s has %d phases under way, the most it may have: end one (done = total) before %q: %w", container, MaxProgress, phase, errdefs.ErrResourceExhausted)
	} else {
		s.progress[phase] = &hostv1.Progress{Phase: phase, Done: req.GetDone(), Total: req.GetTotal(), Message: req.GetMessage(), UpdatedAt: timestamppb.Now()}
	}
	e.mu.Unlock()
	e.m.scriptProgress(container, ProgressLine(phase, req.GetDone(), req.GetTotal(), req.GetMessage()))
	return &hostv1.SetProgressResponse{}, nil
}

// ProgressLine is one phase's progress as a line of text: "migration 3/10: copying".
func ProgressLine(phase string, done, total uint64, message string) string {
	s := phase
	switch {
	case total > 0:
		s += fmt.Sprintf(" %d/%d", done, total)
	case done > 0:
		s += fmt.Sprintf(" %d", done)
	}
	if message != "" {
		s += ": " + message
	}
	return s
}

// Status reports a package's status (GetPackageStatus, status.get).
func (e *Effects) Status(ctx context.Context, container string) (*hostv1.GetStatusResponse, error) {
	s, info, err := e.state(ctx, container, false)
	if err != nil {
		return nil, err
	}
	// A bare container (no package installed in it) reports what its guestd runs.
	out := &hostv1.GetStatusResponse{State: containerState(info)}
	if p, err := e.pkgOf(container); err == nil {
		out.Package, out.Version = p.ID, p.Version
	}
	if info.State == lxcrt.Running {
		st, err := e.m.guestStatus(ctx, container)
		if err != nil {
			return nil, err
		}
		if out.Package == "" {
			out.Package, out.Version = st.GetPackage(), st.GetVersion()
		}
		for _, d := range st.GetDaemons() {
			out.Daemons = append(out.Daemons, &hostv1.DaemonStatus{Name: d.GetName(), Oneshot: d.GetOneshot(),
				State: stateWord(d.GetState()), Restarts: d.GetRestarts(), Health: d.GetHealth()})
		}
	}
	if s != nil {
		e.mu.Lock()
		for _, n := range slices.Sorted(maps.Keys(s.health)) {
			out.Health = append(out.Health, s.health[n])
		}
		for _, n := range slices.Sorted(maps.Keys(s.progress)) {
			out.Progress = append(out.Progress, s.progress[n])
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	wait := e.wait
	e.mu.Unlock()
	if wait != nil && out.Package != "" {
		out.WaitingFor = wait(ctx, out.Package)
	}
	return out, nil
}

// guestConn connects to a container's guestd.
func (m *Manager) guestConn(container string) (*grpc.ClientConn, error) {
	d, err := m.opts.Containers.GuestDialer(container)
	if err != nil {
		return nil, err
	}
	return guestclient.Conn(container, d)
}

// guestStatus asks a running container's guestd for its daemons, as hearthctl status
// does (5 s at most).
func (m *Manager) guestStatus(ctx context.Context, container string) (*guestv1.GetStatusResponse, error) {
	conn, err := m.guestConn(container)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := guestv1.NewGuestServiceClient(conn).GetStatus(sctx, &guestv1.GetStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("ask guestd in %q for its daemons: %w", container, errdefs.FromGRPC(err))
	}
	return st, nil
}

func containerState(i containers.Info) string {
	switch {
	case i.State == lxcrt.Running:
		return "running"
	case i.State == lxcrt.Stopped && i.StartedAt.IsZero():
		return "created"
	}
	return strings.ToLower(string(i.State))
}

// GetStatus implements hostapi.PackageEffects.
func (e *Effects) GetStatus(ctx context.Context, container string, _ *hostv1.GetStatusRequest) (*hostv1.GetStatusResponse, error) {
	return e.Status(ctx, container)
}

// pkgOf is the container's package: installed, or being installed (its journal's new
// record, so that an install hook's effects work).
func (e *Effects) pkgOf(container string) (store.Package, error) {
	p, err := e.m.opts.Records.GetPackage(container)
	if errors.Is(err, errdefs.ErrNotFound) {
		if j, jerr := e.m.opts.Records.GetJournal(container); jerr == nil && j.To != nil {
			return *j.To, nil
		}
		return p, fmt.Errorf("container %q runs no installed package: this effect is for packages (hearthctl install): %w", container, errdefs.ErrFailedPrecondition)
	}
	return p, err
}

// ownInterface resolves an interface the caller names: its own ("web", or "<own id>/web");
// another package's ("other/web") is PermissionDenied, one its manifest does not declare
// NotFound.
func (e *Effects) ownInterface(p store.Package, name string) (string, manifest.Interface, error) {
	if name == "" {
		return "", manifest.Interface{}, invalid("interface", "empty: give one of the package's interfaces (its manifest's interfaces)")
	}
	if pkg, iface, ok := strings.Cut(name, "/"); ok {
		if pkg != p.ID {
			return "", manifest.Interface{}, fmt.Errorf("interface %q is package %s's, not %s's: a package binds only its own interfaces: %w", name, pkg, p.ID, errdefs.ErrPermissionDenied)
		}
		name = iface
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return "", manifest.Interface{}, err
	}
	it, ok := mf.Interfaces[name]
	if !ok {
		return "", it, fmt.Errorf("interface %q: %s declares no such interface (it has: %s): %w", name, p.ID, strings.Join(slices.Sorted(maps.Keys(mf.Interfaces)), ", "), errdefs.ErrNotFound)
	}
	return name, it, nil
}

var exposures = map[string]netv1.Exposure{"lan": netv1.Exposure_EXPOSURE_LAN, "domain": netv1.Exposure_EXPOSURE_DOMAIN, "tor": netv1.Exposure_EXPOSURE_TOR}

func exposureOf(kind string, allowEmpty bool) (netv1.Exposure, error) {
	if kind == "" && allowEmpty {
		return netv1.Exposure_EXPOSURE_UNSPECIFIED, nil
	}
	ex, ok := exposures[kind]
	if !ok {
		return ex, invalid("kind", "%q: give lan, tor or domain", kind)
	}
	return ex, nil
}

// bindings lists the bindings of every package (netd's), for checking names against
// other packages'.
func (e *Effects) bindings(ctx context.Context, container string) (own, others []*netv1.Binding, err error) {
	if e.m.opts.Net == nil {
		return nil, nil, fmt.Errorf("this containerd-lite has no netd: %w", errdefs.ErrUnavailable)
	}
	all, err := e.m.opts.Net.Bindings(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	for _, b := range all {
		if b.GetContainer() == container {
			own = append(own, b)
		} else {
			others = append(others, b)
		}
	}
	return own, others, nil
}

// domainOf checks a domain the caller names and that no other package holds it.
func domainOf(domain string, others []*netv1.Binding) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	for _, b := range others {
		if b.GetExposure() == netv1.Exposure_EXPOSURE_DOMAIN && strings.EqualFold(b.GetDomain(), d) {
			return "", fmt.Errorf("domain %s is bound to package %s's interface: a package binds only domains no other package holds: %w", d, b.GetContainer(), errdefs.ErrPermissionDenied)
		}
	}
	return d, nil
}

// target resolves what a bind or unbind names: the caller's package, its interface and
// the kind of binding (any kind, when anyKind and kind is empty).
func (e *Effects) target(container, iface, kind string, anyKind bool) (p store.Package, name string, it manifest.Interface, ex netv1.Exposure, err error) {
	if p, err = e.pkgOf(container); err != nil {
		return
	}
	if name, it, err = e.ownInterface(p, iface); err != nil {
		return
	}
	ex, err = exposureOf(kind, anyKind)
	return
}

// BindInterface implements hostapi.PackageEffects.
func (e *Effects) BindInterface(ctx context.Context, container string, req *hostv1.BindInterfaceRequest) (*hostv1.BindInterfaceResponse, error) {
	p, name, it, ex, err := e.target(container, req.GetInterface(), req.GetKind(), false)
	if err != nil {
		return nil, err
	}
	domain := req.GetDomain()
	switch {
	case ex == netv1.Exposure_EXPOSURE_DOMAIN && domain == "":
		return nil, invalid("domain", "empty: give the public domain to bind %s to", name)
	case ex != netv1.Exposure_EXPOSURE_DOMAIN && domain != "":
		return nil, invalid("domain", "a domain goes with kind domain only")
	case ex == netv1.Exposure_EXPOSURE_DOMAIN:
		_, others, err := e.bindings(ctx, container)
		if err != nil {
			return nil, err
		}
		if domain, err = domainOf(domain, others); err != nil {
			return nil, err
		}
	}
	if !slices.Contains(it.Expose, req.GetKind()) {
		return nil, fmt.Errorf("interface %s may be exposed on %s only (its manifest's expose), not on %s: %w", name, orText(strings.Join(it.Expose, ", "), "nothing"), req.GetKind(), errdefs.ErrPermissionDenied)
	}
	b, err := e.m.Bind(ctx, p.ID, name, ex, domain, false)
	if err != nil {
		return nil, err
	}
	return &hostv1.BindInterfaceResponse{Addresses: []*hostv1.Address{addressOf(b)}}, nil
}

// UnbindInterface implements hostapi.PackageEffects.
func (e *Effects) UnbindInterface(ctx context.Context, container string, req *hostv1.UnbindInterfaceRequest) (*hostv1.UnbindInterfaceResponse, error) {
	_, name, _, ex, err := e.target(container, req.GetInterface(), req.GetKind(), true)
	if err != nil {
		return nil, err
	}
	if req.GetDomain() != "" && ex != netv1.Exposure_EXPOSURE_DOMAIN && ex != netv1.Exposure_EXPOSURE_UNSPECIFIED {
		return nil, invalid("domain", "a domain goes with kind domain (or no kind) only")
	}
	own, others, err := e.bindings(ctx, container)
	if err != nil {
		return nil, err
	}
	domain := ""
	if req.GetDomain() != "" {
		if domain, err = domainOf(req.GetDomain(), others); err != nil {
			return nil, err
		}
	}
	var removed uint32
	for _, b := range own {
		if b.GetInterface() != name || (ex != netv1.Exposure_EXPOSURE_UNSPECIFIED && b.GetExposure() != ex) ||
			(domain != "" && !strings.EqualFold(b.GetDomain(), domain)) {
			continue
		}
		if _, err := e.m.opts.Net.Unbind(ctx, b.GetId(), ""); err != nil {
			return nil, err
		}
		removed++
	}
	if removed == 0 && domain != "" {
		return nil, fmt.Errorf("interface %s is not bound to domain %s (interface.addresses lists its bindings): %w", name, domain, errdefs.ErrNotFound)
	}
	return &hostv1.UnbindInterfaceResponse{Removed: removed}, nil
}

// GetAddresses implements hostapi.PackageEffects.
func (e *Effects) GetAddresses(ctx context.Context, container string, req *hostv1.GetAddressesRequest) (*hostv1.GetAddressesResponse, error) {
	p, err := e.pkgOf(container)
	if err != nil {
		return nil, err
	}
	name := ""
	if req.GetInterface() != "" {
		if name, _, err = e.ownInterface(p, req.GetInterface()); err != nil {
			return nil, err
		}
	}
	if e.m.opts.Net == nil {
		return nil, fmt.Errorf("this containerd-lite has no netd: %w", errdefs.ErrUnavailable)
	}
	bs, err := e.m.opts.Net.Bindings(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	out := &hostv1.GetAddressesResponse{}
	for _, b := range bs {
		if name == "" || b.GetInterface() == name {
			out.Addresses = append(out.Addresses, addressOf(b))
		}
	}
	return out, nil
}

// addressOf is a binding as a package sees it.
func addressOf(b *netv1.Binding) *hostv1.Address {
	a := &hostv1.Address{Interface: b.GetInterface(), Address: b.GetAddress(), HostPort: b.GetHostPort(), Status: orText(b.GetStatus(), "active")}
	for w, ex := range exposures {
		if ex == b.GetExposure() {
			a.Kind = w
		}
	}
	switch b.GetExposure() {
	case netv1.Exposure_EXPOSURE_DOMAIN:
		a.Name = b.GetDomain()
	case netv1.Exposure_EXPOSURE_LAN:
		a.Name = b.GetName()
	default:
		host := strings.TrimPrefix(strings.TrimPrefix(b.GetAddress(), "https://"), "http://")
		a.Name, _, _ = strings.Cut(host, ":")
	}
	return a
}

// GetCertificate implements hostapi.PackageEffects: names under <id>.local and
// <id>.<internal domain> come from the local CA, the package's domains from the ACME CA;
// one call asks for one kind.
func (e *Effects) GetCertificate(ctx context.Context, container string, req *hostv1.GetCertificateRequest) (*hostv1.GetCertificateResponse, error) {
	p, err := e.pkgOf(container)
	if err != nil {
		return nil, err
	}
	if len(req.GetNames()) == 0 {
		return nil, invalid("names", "empty: give the names the certificate is for, such as %s.local", p.ID)
	}
	if len(req.GetNames()) > maxCertNames {
		return nil, invalid("names", "%d names: at most %d", len(req.GetNames()), maxCertNames)
	}
	own, _, err := e.bindings(ctx, container)
	if errors.Is(err, errdefs.ErrUnavailable) {
		own = nil // without netd the package holds its own names only
	} else if err != nil {
		return nil, err
	}
	var local, acme, held []string
	for _, raw := range req.GetNames() {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(raw), "."))
		kind, isHeld, ok := e.holds(p.ID, own, n)
		if !ok {
			return nil, fmt.Errorf("name %q is not %s's: a package gets certificates for %s.local, %s.%s and the names below them, and for the names and domains bound to its interfaces (interface.addresses): %w",
				raw, p.ID, p.ID, p.ID, e.o.InternalDomain, errdefs.ErrPermissionDenied)
		}
		if kind == "acme" {
			acme = append(acme, n)
		} else {
			local = append(local, n)
		}
		if isHeld {
			held = append(held, n)
		}
	}
	if len(local) > 0 && len(acme) > 0 {
		return nil, invalid("names", "%s are the local CA's and %s a public CA's: ask for each in its own call", strings.Join(local, ", "), strings.Join(acme, ", "))
	}
	if e.o.Certs == nil {
		return nil, fmt.Errorf("this containerd-lite has no certd: %w", errdefs.ErrUnavailable)
	}
	issuer := certv1.Issuer_ISSUER_LOCAL
	names := local
	if len(acme) > 0 {
		issuer, names = certv1.Issuer_ISSUER_ACME, acme
	}
	c, err := e.o.Certs.Issue(ctx, &certv1.IssueCertificateRequest{DnsNames: names, Issuer: issuer, Owner: p.ID, HeldNames: held})
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", strings.Join(names, ", "), err)
	}
	out := &hostv1.GetCertificateResponse{CertificatePem: string(c.GetChainPem()), PrivateKeyPem: string(c.GetKeyPem()), NotAfter: c.GetNotAfter()}
	if issuer == certv1.Issuer_ISSUER_LOCAL {
		roots, err := e.o.Certs.Roots(ctx)
		if err != nil {
			return nil, fmt.Errorf("the local CA's roots: %w", err)
		}
		for _, r := range roots {
			out.RootsPem += string(r)
		}
	}
	return out, nil
}

// holds says whether package id holds name: its own names (and those below them) are
// the local CA's; a LAN name netd announces for it (renamed on a conflict) is the local
// CA's and held; a domain bound to one of its interfaces is a public CA's and held.
func (e *Effects) holds(id string, own []*netv1.Binding, n string) (kind string, held, ok bool) {
	base := strings.TrimPrefix(n, "*.")
	for _, d := range []string{id + ".local", id + "." + e.o.InternalDomain} {
		if base == d || strings.HasSuffix(base, "."+d) {
			return "local", false, true
		}
	}
	for _, b := range own {
		switch {
		case b.GetExposure() == netv1.Exposure_EXPOSURE_LAN && b.GetName() != "" && strings.EqualFold(b.GetName(), n):
			return "local", true, true
		case b.GetExposure() == netv1.Exposure_EXPOSURE_DOMAIN && strings.EqualFold(b.GetDomain(), n):
			return "acme", true, true
		}
	}
	return "", false, false
}

// GetContainerAddress implements hostapi.PackageEffects.
func (e *Effects) GetContainerAddress(ctx context.Context, container string, _ *hostv1.GetContainerAddressRequest) (*hostv1.GetContainerAddressResponse, error) {
	i, err := e.m.opts.Containers.Get(ctx, container)
	if err != nil {
		return nil, err
	}
	out := &hostv1.GetContainerAddressResponse{Name: container + "." + e.o.InternalDomain}
	if i.State == lxcrt.Running {
		out.Ipv4 = i.Address
	}
	return out, nil
}

// Notify implements hostapi.PackageEffects.
func (e *Effects) Notify(ctx context.Context, container string, req *hostv1.NotifyRequest) (*hostv1.NotifyResponse, error) {
	if err := CheckNotify(req); err != nil {
		return nil, err
	}
	if _, err := e.m.opts.Containers.Get(ctx, container); err != nil {
		return nil, err
	}
	n, err := e.o.Records.AddNotification(store.Notification{Package: container, Level: orText(req.GetLevel(), "info"),
		Title: req.GetTitle(), Message: req.GetMessage(), CreatedAt: time.Now().UTC()}, MaxNotifications)
	if err != nil {
		return nil, err
	}
	e.log.Info("package notification", "package", container, "id", n.ID, "level", n.Level, "title", n.Title)
	return &hostv1.NotifyResponse{Id: n.ID}, nil
}

// GetDataVersion implements hostapi.PackageEffects.
func (e *Effects) GetDataVersion(_ context.Context, container string, _ *hostv1.GetDataVersionRequest) (*hostv1.GetDataVersionResponse, error) {
	if _, err := e.pkgOf(container); err != nil {
		return nil, err
	}
	v, err := e.o.Records.DataVersion(container)
	if err != nil {
		return nil, err
	}
	return &hostv1.GetDataVersionResponse{Version: v}, nil
}

// SetDataVersion implements hostapi.PackageEffects.
func (e *Effects) SetDataVersion(_ context.Context, container string, req *hostv1.SetDataVersionRequest) (*hostv1.SetDataVersionResponse, error) {
	if err := CheckDataVersion(req.GetVersion()); err != nil {
		return nil, err
	}
	if _, err := e.pkgOf(container); err != nil {
		return nil, err
	}
	if err := e.o.Records.SetDataVersion(container, req.GetVersion()); err != nil {
		return nil, err
	}
	e.log.Info("package data version set", "package", container, "data_version", req.GetVersion())
	return &hostv1.SetDataVersionResponse{}, nil
}

// progressSink sends the package's scripts' progress to op while the operation runs;
// the returned func stops it.
func (m *Manager) progressSink(id string, op Op) func() {
	if op.Progress == nil {
		return func() {}
	}
	m.sinks.Store(id, op.Progress)
	return func() { m.sinks.Delete(id) }
}

// scriptProgress gives a script's progress line to the operation under way, if any.
func (m *Manager) scriptProgress(id, line string) {
	if f, ok := m.sinks.Load(id); ok {
		f.(func(Progress))(Progress{Phase: line})
	}
}

// uninstalled drops what the package's scripts set; a purge forgets its notifications
// too (an uninstall that keeps the data keeps them: a reinstall finds both).
func (m *Manager) uninstalled(id string, purge bool) {
	e := m.effects.Load()
	if e == nil {
		return
	}
	e.Forget(id)
	if purge {
		if err := e.o.Records.DeleteNotifications(id); err != nil {
			m.log.Warn("forget a purged package's notifications", "package", id, "error", err)
		}
	}
}

// dataVersionLabel keeps the data version in a backup's metadata.
const dataVersionLabel = "data_version"
