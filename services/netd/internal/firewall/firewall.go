// Package firewall keeps netd's packet filtering and NAT: one nftables table of netd's own
// (inet "hearth" by default), made to match a declared State by Apply, and deleted by
// Remove. It talks to the kernel through github.com/google/nftables and rtnetlink; it
// never runs ip, nft or iptables, and it never reads or changes another table.
//
// # What the table does
//
//	input       (filter, hook input)       from the bridge: replies, then the gateway's
//	                                        services (chain "services"), then drop
//	forward     (filter, hook forward)     to the bridge: replies and port forwards;
//	                                        bridge to bridge: chain "flows", then drop;
//	                                        from the bridge: the subnet to outside it
//	                                        accepted, any other source dropped
//	prerouting  (nat, hook prerouting)     to a local address: chain "forwards" (DNAT)
//	output      (nat, hook output)         the same for the host's own connections,
//	                                        except to 127.0.0.0/8
//	postrouting (nat, hook postrouting)    the subnet but the gateway out of any interface
//	                                        but the bridge: masquerade; port forwards that
//	                                        a container reaches through the host (hairpin):
//	                                        masquerade
//
// "flows" holds one accept per interface of a container (to its address, port and
// protocol), "forwards" one DNAT per host port, "services" one accept per gateway
// service. Every base chain has policy accept: the table drops only traffic that goes
// to or comes from the bridge, so the host's other forwarding is left to its own rules.
// A drop in another table still drops (nftables runs every table's chains), so a host
// whose other firewall drops forwarded traffic must allow the bridge there too.
//
// # Traffic between two containers
//
// Two containers on one bridge talk through the bridge, not through the host's routing,
// so the inet forward hook does not see that traffic by itself. On this kernel (6.18,
// CONFIG_NF_CONNTRACK_BRIDGE and CONFIG_NFT_BRIDGE_META off) the ways to filter it were
// measured:
//   - A table of the bridge family: its forward hook sees the frames, but `ct state` is
//     refused there ("Protocol error": no bridge conntrack), so replies cannot be told
//     from new connections, and `meta ibrname` is refused ("Operation not supported").
//     Rejected: without conntrack, allowing the replies of an allowed flow means letting
//     its server's port talk to any port of any container.
//   - Port isolation (IFLA_BRPORT_ISOLATED on every veth) with proxy ARP for the private
//     VLAN case (proxy_arp_pvlan on the bridge), so that all traffic between containers
//     is routed by the host. Measured: a ping between two isolated ports passes, routed,
//     through the inet forward chain. But every veth must be flagged when it is attached
//     (a veth attached before the flag is unfiltered), the host answers ARP for every
//     container and must not send redirects. Rejected as more moving parts.
//   - br_netfilter, enabled on netd's bridge only (the bridge attribute nf_call_iptables,
//     IFLA_BR_NF_CALL_IPTABLES, not the host-wide sysctl): the bridge hands each bridged
//     IPv4 frame to the IPv4 netfilter hooks, with conntrack, where the inet forward chain
//     sees it with the bridge as both input and output interface. Measured here with the
//     host-wide sysctl off: a ping between two ports of the bridge passed 0 packets
//     through an inet forward chain before the flag and 2 after. Chosen: one rule set
//     for routed and bridged traffic, with conntrack, and no setting that changes the
//     host's other bridges. IPv6 is handed over too (nf_call_ip6tables), so link-local
//     IPv6 between containers meets the same drop.
//
// Apply therefore sets both attributes on the bridge (it must exist) and refuses when
// br_netfilter is not in the kernel (load the module: modprobe br_netfilter). It also
// turns IPv4 forwarding on (net.ipv4.ip_forward), without which neither NAT nor port
// forwards work; Remove leaves both as they are.
//
// # Apply: a diff, in one batch
//
// Apply reads the table back from the kernel and sends only the difference, as one
// netlink batch (one nftables transaction: the kernel applies all of it or none).
// Each rule carries a comment naming it and ending with a hash of its expressions
// ("flow web tcp/8080 #1f2e3d4c5b6a"); rules are compared by comment only. In the
// ordered base chains, any difference flushes the chain and adds its rules again;
// in the three unordered chains (flows, forwards, services: accepts or DNATs that
// never overlap) each missing rule is added and each rule not wanted, or wanted but
// present twice, is deleted by handle. Chains of the table that are not wanted are
// flushed and deleted; a base chain with another hook, type, priority or policy is
// made again. So applying the same State twice sends nothing, a restart (a new
// Firewall applying the State it is given) finds the rules in place and duplicates
// none, and a container that goes takes exactly its rules with it.
//
// Apply with 100 containers (two interfaces and a host port each, 316 rules) takes
// about 15 ms from nothing, 8 ms when nothing changed (reading the table back is most
// of it) and 15 ms when one container comes or goes (BenchmarkApplyHundred).
//
// # Limits
//
// Connections already open when a flow is removed live on as conntrack entries until
// they end (a container that goes takes its veth, so its own end with it). Containers
// are told apart by address only: this kernel offers no match on the bridge port in an
// inet chain (NFT_BRIDGE_META is off), so a container's root that takes another
// container's address is not stopped here; it gains nothing the flows do not already
// allow every container.
package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// DefaultTable is the name of netd's table.
const DefaultTable = "hearth"

// Proto is a transport protocol.
type Proto uint8

// The protocols a port can have.
const (
	TCP Proto = unix.IPPROTO_TCP
	UDP Proto = unix.IPPROTO_UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Port is a port and its protocol.
type Port struct {
	Proto Proto
	Port  uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Proto, p.Port) }

func (p Port) validate() error {
	if p.Proto != TCP && p.Proto != UDP {
		return fmt.Errorf("port %s: the protocol must be tcp or udp", p)
	}
	if p.Port == 0 {
		return fmt.Errorf("port %s: give a port from 1 to 65535", p)
	}
	return nil
}

// Container is one container on the bridge.
type Container struct {
	Name string
	Addr netip.Addr // its address on the bridge
	// Interfaces are the ports every other container may reach (a package's declared
	// interfaces). All its other ports are closed to the other containers.
	Interfaces []Port
}

// Forward sends a port of the host to an interface of a container (DNAT).
type Forward struct {
	Proto     Proto
	HostPort  uint16
	Container string // a Container's Name
	Port      uint16 // one of the container's Interfaces, of the same protocol
}

func (f Forward) String() string {
	return fmt.Sprintf("%s/%d -> %s:%d", f.Proto, f.HostPort, f.Container, f.Port)
}

// State is everything the table must say.
type State struct {
	Bridge string       // the bridge's name
	Subnet netip.Prefix // its IPv4 subnet; the gateway (the bridge's address) is its first address
	// Services are the ports of the host that containers may reach on the gateway's
	// address (DNS, the proxy).
	Services   []Port
	Containers []Container
	Forwards   []Forward
}

// Gateway is the bridge's address: the subnet's first address.
func (s State) Gateway() netip.Addr { return s.Subnet.Masked().Addr().Next() }

// Validate says what is wrong with s, if anything.
func (s State) Validate() error {
	_, err := s.normalize()
	return err
}

// normalize checks s and returns it with sorted, deduplicated lists, so that the same
// State in any order gives the same rules.
func (s State) normalize() (State, error) {
	bad := func(format string, a ...any) (State, error) {
		return State{}, fmt.Errorf("firewall state: "+format+": %w", append(a, errdefs.ErrInvalidArgument)...)
	}
	if s.Bridge == "" || len(s.Bridge) >= unix.IFNAMSIZ {
		return bad("bridge name %q: give 1 to 15 characters", s.Bridge)
	}
	if !s.Subnet.IsValid() || !s.Subnet.Addr().Is4() || s.Subnet.Bits() > 30 {
		return bad("subnet %s: give an IPv4 subnet of at least /30", s.Subnet)
	}
	out := State{Bridge: s.Bridge, Subnet: s.Subnet.Masked()}
	gw := out.Gateway()
	var err error
	if out.Services, err = ports(s.Services); err != nil {
		return bad("gateway service %v", err)
	}
	byName := map[string]Container{}
	byAddr := map[netip.Addr]string{}
	for _, c := range s.Containers {
		switch {
		case c.Name == "":
			return bad("a container at %s has no name", c.Addr)
		case !c.Addr.Is4() || !out.Subnet.Contains(c.Addr) || c.Addr == gw || c.Addr == out.Subnet.Addr():
			return bad("container %q: address %s is not a host address of %s other than the gateway %s", c.Name, c.Addr, out.Subnet, gw)
		}
		if _, dup := byName[c.Name]; dup {
			return bad("container %q is listed twice", c.Name)
		}
		if other, dup := byAddr[c.Addr]; dup {
			return bad("containers %q and %q both have address %s", other, c.Name, c.Addr)
		}
		ifs, err := ports(c.Interfaces)
		if err != nil {
			return bad("container %q: interface %v", c.Name, err)
		}
		c.Interfaces = ifs
		byName[c.Name], byAddr[c.Addr] = c, c.Name
		out.Containers = append(out.Containers, c)
	}
	sort.Slice(out.Containers, func(i, j int) bool { return out.Containers[i].Name < out.Containers[j].Name })
	hostPorts := map[Port]Forward{}
	for _, f := range s.Forwards {
		if err := (Port{f.Proto, f.HostPort}).validate(); err != nil {
			return bad("forward %s: host %v", f, err)
		}
		c, ok := byName[f.Container]
		if !ok {
			return bad("forward %s: no container %q in the state", f, f.Container)
		}
		if !hasPort(c.Interfaces, Port{f.Proto, f.Port}) {
			return bad("forward %s: %s is not an interface of %q (interfaces: %v)", f, Port{f.Proto, f.Port}, c.Name, c.Interfaces)
		}
		hp := Port{f.Proto, f.HostPort}
		if other, dup := hostPorts[hp]; dup {
			if other == f {
				continue
			}
			return bad("forwards %s and %s share host port %s", other, f, hp)
		}
		hostPorts[hp] = f
		out.Forwards = append(out.Forwards, f)
	}
	sort.Slice(out.Forwards, func(i, j int) bool {
		a, b := out.Forwards[i], out.Forwards[j]
		if a.HostPort != b.HostPort {
			return a.HostPort < b.HostPort
		}
		return a.Proto < b.Proto
	})
	return out, nil
}

// ports checks, sorts and deduplicates a list of ports.
func ports(in []Port) ([]Port, error) {
	out := make([]Port, 0, len(in))
	for _, p := range in {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if !hasPort(out, p) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Proto < out[j].Proto
	})
	return out, nil
}

func hasPort(list []Port, p Port) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// Config says where the Firewall works.
type Config struct {
	Table string // the table's name; DefaultTable when empty
	// NetNS is a descriptor of the network namespace to work in; 0 is netd's own.
	NetNS int
	Log   *slog.Logger
}

// Firewall keeps one table. Its methods may be called from several goroutines.
type Firewall struct {
	table string
	netns int
	log   *slog.Logger
	mu    sync.Mutex
}

// New returns the Firewall of cfg. It touches nothing until Apply.
func New(cfg Config) (*Firewall, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if len(cfg.Table) > 64 {
		return nil, fmt.Errorf("table name %q: give at most 64 characters: %w", cfg.Table, errdefs.ErrInvalidArgument)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Firewall{table: cfg.Table, netns: cfg.NetNS, log: cfg.Log}, nil
}

// Table is the name of the Firewall's table (of the inet family).
func (f *Firewall) Table() string { return f.table }

// Changes counts what an Apply changed.
type Changes struct {
	TableCreated  bool
	ChainsAdded   int
	ChainsDeleted int
	RulesAdded    int
	RulesDeleted  int  // including those of flushed chains
	BridgeFlags   bool // nf_call_iptables/ip6tables were turned on
	Forwarding    bool // net.ipv4.ip_forward was turned on
}

// None says that nothing changed.
func (c Changes) None() bool { return c == Changes{} }

// Apply makes the table match s (see the package comment), sets the bridge's
// netfilter attributes and turns IPv4 forwarding on. The bridge must exist.
func (f *Firewall) Apply(s State) (Changes, error) {
	s, err := s.normalize()
	if err != nil {
		return Changes{}, err
	}
	want, err := ruleset(s)
	if err != nil {
		return Changes{}, fmt.Errorf("firewall rules: %w: %w", err, errdefs.ErrInternal)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkKernel(s.Bridge); err != nil {
		return Changes{}, err
	}
	k, err := f.open()
	if err != nil {
		return Changes{}, err
	}
	defer k.close()
	have, err := k.read()
	if err != nil {
		return Changes{}, fmt.Errorf("read table inet %s: %w", f.table, err)
	}
	ops := plan(want, have)
	ch := ops.changes()
	if len(ops) > 0 {
		if err := k.apply(ops); err != nil {
			return Changes{}, fmt.Errorf("update table inet %s (%d changes): %w", f.table, len(ops), err)
		}
	}
	if ch.BridgeFlags, err = f.bridgeNetfilter(s.Bridge); err != nil {
		return ch, err
	}
	if ch.Forwarding, err = f.ipForward(); err != nil {
		return ch, err
	}
	if !ch.None() {
		f.log.Info("firewall applied", "table", f.table, "containers", len(s.Containers),
			"forwards", len(s.Forwards), "table_created", ch.TableCreated,
			"chains_added", ch.ChainsAdded, "chains_deleted", ch.ChainsDeleted,
			"rules_added", ch.RulesAdded, "rules_deleted", ch.RulesDeleted,
			"bridge_flags_set", ch.BridgeFlags, "forwarding_enabled", ch.Forwarding)
	}
	return ch, nil
}

// Remove deletes the table, if it exists. It leaves every other table, the bridge's
// attributes and IPv4 forwarding as they are.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.open()
	if err != nil {
		return err
	}
	defer k.close()
	exists, err := k.exists()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if !exists {
		return nil
	}
	k.conn.DelTable(k.tbl)
	if err := k.conn.Flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", f.table, err)
	}
	f.log.Info("firewall removed", "table", f.table)
	return nil
}

// errNoBridge and errNoBrNetfilter are the preconditions Apply checks.
var (
	errNoBridge      = errors.New("no such bridge")
	errNoBrNetfilter = errors.New("br_netfilter is not in the kernel")
)
