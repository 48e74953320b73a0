package firewall

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The lab: a private "host" network namespace with a bridge, "containers" (namespaces
// with a veth on that bridge) and a "WAN" namespace behind a second veth of the host.
// Nothing is made in the test process's own namespace: the namespaces are unnamed
// and go away with their last descriptor.

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, links and nftables tables")
	}
}

// newNS returns a new network namespace, closed at the end of the test.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		panic(err) // this thread must not run anything else
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNS runs fn on a thread in ns. Sockets made there stay in ns.
func inNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func up(t testing.TB, h *netlink.Handle, name string, addr string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" {
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func route(t testing.TB, h *netlink.Handle, dst, via string) {
	t.Helper()
	r := &netlink.Route{Gw: net.ParseIP(via)}
	if dst != "" {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			t.Fatal(err)
		}
		r.Dst = n
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("route %s via %s: %v", dst, via, err)
	}
}

// sysctl writes a /proc/sys value inside ns.
func sysctl(t testing.TB, ns netns.NsHandle, key, value string) {
	t.Helper()
	var err error
	inNS(t, ns, func() {
		err = os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

type lab struct {
	host, wan  netns.NsHandle
	bridge     string
	subnet     netip.Prefix
	uplink     netip.Addr // the host's address on the WAN side
	wanAddr    netip.Addr
	containers map[string]netns.NsHandle
	addrs      map[string]netip.Addr
}

const labBridge = "tbr0"

// newLab makes the host, its bridge and the WAN. br_netfilter's namespace-wide
// switches are turned off in the host, so only the firewall's per-bridge attributes
// can hand bridged traffic to nftables.
func newLab(t testing.TB) *lab {
	t.Helper()
	l := &lab{
		host: newNS(t), wan: newNS(t), bridge: labBridge,
		subnet:     netip.MustParsePrefix("10.77.0.0/24"),
		uplink:     netip.MustParseAddr("198.51.100.1"),
		wanAddr:    netip.MustParseAddr("198.51.100.2"),
		containers: map[string]netns.NsHandle{}, addrs: map[string]netip.Addr{},
	}
	h := handle(t, l.host)
	up(t, h, "lo", "")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.bridge
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	up(t, h, l.bridge, "10.77.0.1/24")
	sysctl(t, l.host, "net.bridge.bridge-nf-call-iptables", "0")
	sysctl(t, l.host, "net.bridge.bridge-nf-call-ip6tables", "0")
	// A new namespace may inherit the machine's forwarding (devconf_inherit_init_net):
	// the lab starts with none, so that what forwards is the firewall's doing.
	sysctl(t, l.host, "net.ipv4.ip_forward", "0")

	attrs = netlink.NewLinkAttrs()
	attrs.Name = "wan0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(l.wan))}); err != nil {
		t.Fatal(err)
	}
	up(t, h, "wan0", l.uplink.String()+"/24")
	w := handle(t, l.wan)
	up(t, w, "lo", "")
	up(t, w, "eth0", l.wanAddr.String()+"/24")
	// A LAN host that knows the way to the containers, to show it is still refused.
	route(t, w, l.subnet.String(), l.uplink.String())
	return l
}

// addContainer makes a namespace with eth0 on the bridge at addr.
func (l *lab) addContainer(t testing.TB, name string, addr string) netns.NsHandle {
	t.Helper()
	ns := newNS(t)
	h := handle(t, l.host)
	br, err := h.LinkByName(l.bridge)
	if err != nil {
		t.Fatal(err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "v" + name
	attrs.MasterIndex = br.Attrs().Index
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		t.Fatal(err)
	}
	up(t, h, "v"+name, "")
	c := handle(t, ns)
	up(t, c, "lo", "")
	up(t, c, "eth0", addr+"/24")
	route(t, c, "", "10.77.0.1")
	l.containers[name] = ns
	l.addrs[name] = netip.MustParseAddr(addr)
	return ns
}

// serve answers each connection on addr, inside ns, with "tag peer-address\n".
func serve(t testing.TB, ns netns.NsHandle, addr, tag string) {
	t.Helper()
	var ln net.Listener
	var err error
	inNS(t, ns, func() { ln, err = net.Listen("tcp4", addr) })
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", tag, c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// blockedAfter is how long a dropped connection is waited for.
const blockedAfter = 400 * time.Millisecond

// dial connects from ns to addr and returns the server's line.
func dial(t testing.TB, ns netns.NsHandle, addr string) (string, error) {
	t.Helper()
	return dialWithin(t, ns, addr, blockedAfter)
}

// dialOpen is dial for a connection that should go through: a loaded machine may take
// longer than blockedAfter to resolve the first neighbour and answer.
func dialOpen(t testing.TB, ns netns.NsHandle, addr string) (string, error) {
	t.Helper()
	return dialWithin(t, ns, addr, 5*time.Second)
}

func dialWithin(t testing.TB, ns netns.NsHandle, addr string, within time.Duration) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNS(t, ns, func() { c, err = net.DialTimeout("tcp4", addr, within) })
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// dumpTable lists a table through the library: its chains and, for each rule, its
// handle (when withHandles), comment and expressions as the kernel returns them.
func dumpTable(t testing.TB, ns netns.NsHandle, family nftables.TableFamily, name string, withHandles bool) string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(family)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(chains, func(i, j int) bool { return chains[i].Name < chains[j].Name })
	var b bytes.Buffer
	tbl := &nftables.Table{Name: name, Family: family}
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		fmt.Fprintf(&b, "chain %s type=%s", ch.Name, ch.Type)
		if ch.Hooknum != nil {
			fmt.Fprintf(&b, " hook=%d prio=%d policy=%d", *ch.Hooknum, *ch.Priority, *ch.Policy)
		}
		b.WriteString("\n")
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if withHandles {
				fmt.Fprintf(&b, "  [%d]", r.Handle)
			}
			fmt.Fprintf(&b, "  %q", comment)
			for _, e := range r.Exprs {
				data, err := expr.Marshal(byte(family), e)
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString(" " + hex.EncodeToString(data))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// nftList is `nft -a list table` inside ns, a second view of the same thing (the test's
// only use of the nft command; the package never runs it). Empty when nft is missing.
func nftList(t testing.TB, ns netns.NsHandle, family, name string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		return ""
	}
	var out []byte
	var err error
	inNS(t, ns, func() { out, err = exec.Command("nft", "-a", "list", "table", family, name).CombinedOutput() })
	if err != nil {
		t.Fatalf("nft list table %s %s: %v: %s", family, name, err, out)
	}
	return string(out)
}

func tableExists(t testing.TB, ns netns.NsHandle, family nftables.TableFamily, name string) bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return true
		}
	}
	return false
}

// isTimeout says whether a dial was dropped (no answer) rather than refused.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
