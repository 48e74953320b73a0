// Package bridge gives containers their place on the host's network: one Linux bridge
// with the gateway address, and for each container a veth pair whose far end becomes eth0
// in the container's network namespace, with an address from the bridge's subnet and a
// default route through the gateway. Attachments are kept in a file and reconciled with
// the links that really exist when netd starts.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// Attachment is one container's place on the bridge.
type Attachment struct {
	Container string `json:"container"`
	Address   string `json:"address"` // without prefix length
	HostVeth  string `json:"host_veth"`
	// Interfaces are the container's declared ports: the only ones other containers
	// may reach.
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Interface is one declared port of a container.
type Interface struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	HTTP bool   `json:"http,omitempty"` // HTTP; otherwise plain TCP
}

// Network is the bridge and its attachments.
type Network struct {
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
	log     *slog.Logger
	state   string

	mu          sync.Mutex
	attachments map[string]Attachment
}

// Prefix of the host ends of container veths; the rest is a hash of the container name.
const vethPrefix = "hv"

// New returns the network of bridge name over subnet (the gateway is its first address),
// with attachments kept in stateDir.
func New(name string, subnet netip.Prefix, stateDir string, log *slog.Logger) (*Network, error) {
	if len(name) > 15 || name == "" {
		return nil, fmt.Errorf("bridge name %q: give 1 to 15 characters: %w", name, errdefs.ErrInvalidArgument)
	}
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 29 {
		return nil, fmt.Errorf("subnet %s: give an IPv4 subnet of at least /29: %w", subnet, errdefs.ErrInvalidArgument)
	}
	n := &Network{Name: name, Subnet: subnet, Gateway: subnet.Addr().Next(), log: log,
		state: filepath.Join(stateDir, "attachments.json"), attachments: map[string]Attachment{}}
	data, err := os.ReadFile(n.state)
	if err == nil {
		var list []Attachment
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", n.state, err)
		}
		for _, a := range list {
			n.attachments[a.Container] = a
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return n, nil
}

func (n *Network) saveLocked() error {
	list := make([]Attachment, 0, len(n.attachments))
	for _, a := range n.attachments {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Container < list[j].Container })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(n.state, data, 0o600)
}

// Reconcile makes sure the bridge exists, up, with the gateway address; forgets
// attachments whose veth is gone (their container stopped while netd was away); and
// removes veths on the bridge that no attachment names.
func (n *Network) Reconcile() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	br, err := n.ensureBridge()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for c, a := range n.attachments {
		if _, err := netlink.LinkByName(a.HostVeth); err != nil {
			n.log.Warn("reconcile: forgot the attachment of a container whose veth is gone", "container", c, "veth", a.HostVeth)
			delete(n.attachments, c)
			continue
		}
		known[a.HostVeth] = true
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == br.Attrs().Index && strings.HasPrefix(a.Name, vethPrefix) && !known[a.Name] {
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("remove stray veth %s: %w", a.Name, err)
			}
			n.log.Warn("reconcile: removed a veth no container owns", "veth", a.Name)
		}
	}
	return n.saveLocked()
}

func (n *Network) ensureBridge() (netlink.Link, error) {
	br, err := netlink.LinkByName(n.Name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s: %w", n.Name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.Name
		// A bridge without an address of its own takes the lowest of its ports' and
		// changes it when that port goes: the containers' ARP entries for the gateway
		// would then point nowhere until they expire. A set address stays.
		attrs.HardwareAddr = bridgeMAC(n.Name)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", n.Name, err)
		}
		n.log.Info("created bridge", "bridge", n.Name, "subnet", n.Subnet)
		if br, err = netlink.LinkByName(n.Name); err != nil {
			return nil, err
		}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge: choose another --bridge: %w", n.Name, br.Type(), errdefs.ErrFailedPrecondition)
	}
	if mac := bridgeMAC(n.Name); br.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(br, mac); err != nil {
			return nil, fmt.Errorf("set the address of bridge %s: %w", n.Name, err)
		}
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	have := false
	for _, a := range addrs {
		have = have || a.IPNet.String() == gw.IPNet.String()
	}
	if !have {
		if err := netlink.AddrAdd(br, gw); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", gw.IPNet, n.Name, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, err
	}
	return br, nil
}

// bridgeMAC is a locally administered unicast address derived from the bridge's name.
func bridgeMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("hearth bridge " + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&0xfc | 0x02
	return mac
}

// VethName is the host end's name for a container.
func VethName(container string) string {
	h := sha256.Sum256([]byte(container))
	return vethPrefix + hex.EncodeToString(h[:6])
}

// Attach gives a container eth0 on the bridge, inside the network namespace of pid.
// Attaching an attached container returns its attachment, with its interfaces replaced
// by ifaces.
func (n *Network) Attach(container string, pid int, ifaces []Interface) (Attachment, error) {
	a, _, err := n.AttachChanged(container, pid, ifaces)
	return a, err
}

// AttachChanged is Attach, and says whether anything changed: false when the container
// was attached already, with the same interfaces (a containerd-lite that restarted and
// adopts its running containers attaches each again).
func (n *Network) AttachChanged(container string, pid int, ifaces []Interface) (Attachment, bool, error) {
	if pid <= 0 {
		return Attachment{}, false, fmt.Errorf("container %q: init pid %d: %w", container, pid, errdefs.ErrInvalidArgument)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.attachments[container]; ok {
		if _, err := netlink.LinkByName(a.HostVeth); err == nil {
			if slices.Equal(a.Interfaces, ifaces) {
				return a, false, nil
			}
			a.Interfaces = slices.Clone(ifaces)
			n.attachments[container] = a
			if err := n.saveLocked(); err != nil {
				return Attachment{}, false, err
			}
			return a, true, nil
		}
		delete(n.attachments, container)
	}
	a, err := n.attachLocked(container, pid, ifaces)
	return a, err == nil, err
}

// attachLocked makes a container's veth and address (n.mu held).
func (n *Network) attachLocked(container string, pid int, ifaces []Interface) (Attachment, error) {
	br, err := n.ensureBridge()
	if err != nil {
		return Attachment{}, err
	}
	addr, err := n.allocateLocked()
	if err != nil {
		return Attachment{}, err
	}
	host := VethName(container)
	if old, err := netlink.LinkByName(host); err == nil {
		_ = netlink.LinkDel(old) // a leftover from a container of the same name
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return Attachment{}, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	defer ns.Close()
	// The peer is made inside the container's namespace, as eth0: moving a device
	// there afterwards waits for the kernel's RCU grace periods (12-18 ms of each
	// attach on a 2-CPU VM, measured), and it would need a rename there too.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = host
	attrs.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return Attachment{}, fmt.Errorf("create veth %s with eth0 in the container: %w", host, err)
	}
	fail := func(err error) (Attachment, error) {
		if l, lerr := netlink.LinkByName(host); lerr == nil {
			_ = netlink.LinkDel(l) // its peer goes with it
		}
		return Attachment{}, err
	}
	if err := n.configureInside(ns, addr); err != nil {
		return fail(err)
	}
	hostLink, err := netlink.LinkByName(host)
	if err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return fail(err)
	}
	a := Attachment{Container: container, Address: addr.String(), HostVeth: host, Interfaces: slices.Clone(ifaces)}
	n.attachments[container] = a
	if err := n.saveLocked(); err != nil {
		return fail(err)
	}
	n.log.Info("attached", "container", container, "address", a.Address, "veth", host)
	return a, nil
}

// configureInside gives eth0 in ns the address and default route.
func (n *Network) configureInside(ns netns.NsHandle, addr netip.Addr) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in the container: %w", err)
	}
	ipnet := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("address %s: %w", ipnet, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return err
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: n.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", n.Gateway, err)
	}
	return nil
}

// allocateLocked returns the lowest free address after the gateway.
func (n *Network) allocateLocked() (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, a := range n.attachments {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			used[ip] = true
		}
	}
	for ip := n.Gateway.Next(); n.Subnet.Contains(ip); ip = ip.Next() {
		if !used[ip] && ip.Next().IsValid() && n.Subnet.Contains(ip.Next()) { // not the broadcast address
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("subnet %s is full: %w", n.Subnet, errdefs.ErrResourceExhausted)
}

// Detach removes a container's veth and frees its address. Detaching a detached
// container succeeds.
func (n *Network) Detach(container string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.attachments[container]
	name := VethName(container)
	if ok {
		name = a.HostVeth
	}
	if l, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("remove veth %s: %w", name, err)
		}
	}
	if !ok {
		return nil
	}
	delete(n.attachments, container)
	n.log.Info("detached", "container", container, "address", a.Address)
	return n.saveLocked()
}

// Attachments lists the attachments, by container.
func (n *Network) Attachments() []Attachment {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Attachment, 0, len(n.attachments))
	for _, a := range n.attachments {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container < out[j].Container })
	return out
}
