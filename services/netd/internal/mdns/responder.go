// Package mdns publishes host names on the LAN over multicast DNS (RFC 6762): netd's
// "<package>.local". A Responder listens on 224.0.0.251:5353 on the LAN interfaces it is
// given, and for each name it publishes it probes first (three queries 250 ms apart,
// simultaneous probes broken by comparing the proposed records), then announces (two
// unsolicited responses a second apart), then answers A queries on each interface with
// the address the name has there, out of the interface the query came in on. When another
// host holds the name, during probing or later, the responder takes "<name>-2.local",
// "-3" ..., says so through its events and probes again. Unpublish and Close say goodbye
// (the record with TTL 0), so caches on the LAN drop the name at once.
//
// IPv4 only: the names are answered with A records, and AAAA questions get an NSEC that
// says there is none.
package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// Port and group of multicast DNS over IPv4.
var (
	groupAddr = netip.MustParseAddr("224.0.0.251")
	group     = &net.UDPAddr{IP: groupAddr.AsSlice(), Port: Port}
)

// Port is the mDNS port.
const Port = 5353

// Timings of RFC 6762 section 8.
const (
	probeWait     = 250 * time.Millisecond // before the first probe, at most (random)
	probeInterval = 250 * time.Millisecond
	probes        = 3
	announceWait  = time.Second
	announcements = 2
	lostWait      = time.Second // after losing a simultaneous probe
	// Fifteen conflicts within ten seconds and the next probes wait five seconds each.
	flapCount  = 15
	flapWindow = 10 * time.Second
	flapWait   = 5 * time.Second
)

// maxPacket is the largest mDNS packet (RFC 6762 section 17).
const maxPacket = 9000

// State is where a name stands.
type State int

// The states of a name.
const (
	// Probing: the responder is asking whether another host holds the name; it does not
	// answer for it yet.
	Probing State = iota + 1
	// Published: the name is the responder's; it answers for it.
	Published
)

func (s State) String() string {
	switch s {
	case Probing:
		return "probing"
	case Published:
		return "published"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Name is one published name.
type Name struct {
	Requested string // as given to Publish: "hello-pg"
	Host      string // the name answered, without the final dot: "hello-pg.local", "hello-pg-2.local" after a conflict
	State     State
}

// EventKind says what happened to a name.
type EventKind int

// The kinds of events.
const (
	// EventProbing: probing for Name.Host began.
	EventProbing EventKind = iota + 1
	// EventPublished: Name.Host is the responder's; Elapsed is the time since probing began.
	EventPublished
	// EventRenamed: another host holds From; the responder probes for Name.Host instead.
	EventRenamed
	// EventConflict: another host answered for Name.Host while it was published; the
	// responder probes for it again (and renames if that host defends it).
	EventConflict
	// EventWithdrawn: the name was unpublished and its goodbye sent.
	EventWithdrawn
)

func (k EventKind) String() string {
	switch k {
	case EventProbing:
		return "probing"
	case EventPublished:
		return "published"
	case EventRenamed:
		return "renamed"
	case EventConflict:
		return "conflict"
	case EventWithdrawn:
		return "withdrawn"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change of a name.
type Event struct {
	Kind    EventKind
	Name    Name
	From    string        // EventRenamed: the host name given up
	Elapsed time.Duration // EventPublished: since probing of this host name began
}

// Config configures a Responder.
type Config struct {
	// Interfaces lists the LAN interfaces to serve; LAN() when nil.
	Interfaces Lister
	// Rescan is how often the interfaces are listed again; 5 s when zero. A new interface,
	// a gone one or a changed address makes every name probe again (RFC 6762 section 8).
	Rescan time.Duration
	Log    *slog.Logger
	// OnEvent, when set, hears every change of every name, in order for each name, from
	// the name's own goroutine, never under the responder's lock (it may call Names).
	OnEvent func(Event)
}

// Responder answers for the names it publishes.
type Responder struct {
	cfg  Config
	log  *slog.Logger
	raw  net.PacketConn
	conn *ipv4.PacketConn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rescanMu sync.Mutex // one rescan at a time

	mu      sync.Mutex
	closed  bool
	ifaces  map[int]Interface
	entries map[string]*entry // by requested name
	hosts   map[string]*entry // by current host, fully qualified, lower case
}

// signal is news for a name's goroutine from the reader or from Publish.
type signal int

const (
	sigConflict signal = iota + 1 // another host has the name with other data
	sigLost                       // a simultaneous probe with later data
	sigReprobe                    // interfaces changed
	sigAnnounce                   // the address function changed
)

type entry struct {
	requested string
	cancel    context.CancelFunc
	done      chan struct{}
	signals   chan signal

	// under Responder.mu
	addr      AddrFunc
	host      string // fully qualified, lower case: "hello-pg.local."
	suffix    int    // 0, or the n of "-n"
	state     State
	announced bool              // the current host was announced (so a goodbye is due)
	changed   chan struct{}     // closed at the next change of state or host
	multicast map[int]time.Time // interface index → time of the last multicast answer
	conflicts []time.Time       // recent conflicts, for the flap limit
}

// New starts a responder on the interfaces cfg lists. It fails when port 5353 cannot be
// bound or the interfaces cannot be listed; an interface where joining the group fails is
// logged and tried again at the next rescan.
func New(cfg Config) (*Responder, error) {
	if cfg.Interfaces == nil {
		cfg.Interfaces = LAN()
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			// Share the port with the host's other mDNS stacks (avahi sets SO_REUSEADDR).
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	raw, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", Port))
	if err != nil {
		return nil, fmt.Errorf("mdns: listen on UDP port %d: %w", Port, errors.Join(errdefs.ErrUnavailable, err))
	}
	conn := ipv4.NewPacketConn(raw)
	for _, set := range []func() error{
		func() error { return conn.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true) },
		func() error { return conn.SetMulticastTTL(255) },
		func() error { return conn.SetTTL(255) },
		// On: the host's own resolver (another mDNS stack) hears the answers too. Our own
		// packets coming back are recognized by their data.
		func() error { return conn.SetMulticastLoopback(true) },
	} {
		if err := set(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("mdns: socket options: %w", err)
		}
	}
	r := &Responder{cfg: cfg, log: cfg.Log, raw: raw, conn: conn,
		ifaces: map[int]Interface{}, entries: map[string]*entry{}, hosts: map[string]*entry{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.rescan(); err != nil {
		raw.Close()
		return nil, err
	}
	r.wg.Add(2)
	go r.read()
	go r.rescanLoop()
	return r, nil
}

// Interfaces returns the interfaces the responder serves now.
func (r *Responder) Interfaces() []Interface {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Interface, 0, len(r.ifaces))
	for _, ifc := range r.ifaces {
		out = append(out, ifc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Publish claims "<name>.local" with the address addr gives on each interface (each
// interface's own address when addr is nil). It returns at once; the name is answered
// once probing is done (see Wait, Names and Config.OnEvent). Publishing a name again only
// changes its address function, and announces the new addresses.
// addr is called under the responder's lock: it must be quick and must not call the
// responder.
func (r *Responder) Publish(name string, addr AddrFunc) error {
	name = strings.ToLower(name)
	if err := checkLabel(name); err != nil {
		return err
	}
	if addr == nil {
		addr = InterfaceAddr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("mdns: publish %q: the responder is closed: %w", name, errdefs.ErrFailedPrecondition)
	}
	if e := r.entries[name]; e != nil {
		e.addr = addr
		e.notify(sigAnnounce)
		return nil
	}
	ctx, cancel := context.WithCancel(r.ctx)
	e := &entry{requested: name, cancel: cancel, done: make(chan struct{}), signals: make(chan signal, 4),
		addr: addr, state: Probing, changed: make(chan struct{}), multicast: map[int]time.Time{}}
	e.host = name + ".local."
	for r.hosts[e.host] != nil { // one of ours was renamed into this name
		e.suffix = nextSuffix(e.suffix)
		e.host = hostName(name, e.suffix)
	}
	r.entries[name] = e
	r.hosts[e.host] = e
	go r.run(ctx, e)
	return nil
}

// Unpublish withdraws name: a goodbye goes out on every interface where it was announced.
// Unpublishing a name that is not published does nothing.
func (r *Responder) Unpublish(name string) {
	name = strings.ToLower(name)
	r.mu.Lock()
	e := r.entries[name]
	if e != nil {
		delete(r.entries, name)
	}
	r.mu.Unlock()
	if e == nil {
		return
	}
	e.cancel()
	<-e.done
}

// Names lists the published names, by requested name.
func (r *Responder) Names() []Name {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Name, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.nameLocked())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Requested < out[j].Requested })
	return out
}

// Lookup returns the name published as requested.
func (r *Responder) Lookup(requested string) (Name, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[strings.ToLower(requested)]
	if e == nil {
		return Name{}, false
	}
	return e.nameLocked(), true
}

// Wait returns the name published as requested once it is Published.
func (r *Responder) Wait(ctx context.Context, requested string) (Name, error) {
	requested = strings.ToLower(requested)
	for {
		r.mu.Lock()
		e := r.entries[requested]
		if e == nil {
			r.mu.Unlock()
			return Name{}, fmt.Errorf("mdns: %q is not published: %w", requested, errdefs.ErrNotFound)
		}
		n, ch := e.nameLocked(), e.changed
		r.mu.Unlock()
		if n.State == Published {
			return n, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n, fmt.Errorf("mdns: waiting for %s: %w", n.Host, ctx.Err())
		}
	}
}

// Close withdraws every name (with goodbyes) and stops the responder.
func (r *Responder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var all []*entry
	for name, e := range r.entries {
		all = append(all, e)
		delete(r.entries, name)
	}
	r.mu.Unlock()
	for _, e := range all {
		e.cancel()
	}
	for _, e := range all {
		<-e.done
	}
	r.cancel()
	err := r.raw.Close()
	r.wg.Wait()
	return err
}

// checkLabel accepts a DNS label of letters, digits and inner hyphens, at most 63 bytes.
func checkLabel(name string) error {
	ok := name != "" && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("mdns: name %q: give 1 to 63 letters, digits or inner hyphens: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func nextSuffix(n int) int {
	if n < 2 {
		return 2
	}
	return n + 1
}

// hostName is "<name>-<suffix>.local." (no suffix below 2), the name cut so that the
// label stays within 63 bytes.
func hostName(name string, suffix int) string {
	if suffix < 2 {
		return name + ".local."
	}
	s := fmt.Sprintf("-%d", suffix)
	if len(name)+len(s) > 63 {
		name = strings.TrimRight(name[:63-len(s)], "-")
	}
	return name + s + ".local."
}

func (e *entry) nameLocked() Name {
	return Name{Requested: e.requested, Host: strings.TrimSuffix(e.host, "."), State: e.state}
}

// notify hands a signal to the name's goroutine without blocking; a full queue already
// holds enough news to act on.
func (e *entry) notify(s signal) {
	select {
	case e.signals <- s:
	default:
	}
}

func (e *entry) drain() {
	for {
		select {
		case <-e.signals:
		default:
			return
		}
	}
}

// ourAddrLocked reports whether a is an address the name has on one of our interfaces:
// our own packets come back to us, and a host with two interfaces on one link sees the
// other's.
func (r *Responder) ourAddrLocked(e *entry, a netip.Addr) bool {
	for _, ifc := range r.ifaces {
		if mine, ok := e.addr(ifc); ok && mine == a {
			return true
		}
	}
	return false
}
