package mdns

import (
	"fmt"
	"net"
	"net/netip"
	"path"
)

// Interface is one LAN interface the responder serves, with its IPv4 addresses.
type Interface struct {
	Name  string
	Index int
	Addrs []netip.Prefix
}

// onLink reports whether a is in one of the interface's subnets.
func (ifc Interface) onLink(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ifc.Addrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Lister lists the interfaces a responder serves. It is called at start and at every
// rescan, so interfaces may come and go.
type Lister func() ([]Interface, error)

// AddrFunc gives the address a name has on an interface; false leaves the name off that
// interface.
type AddrFunc func(Interface) (netip.Addr, bool)

// InterfaceAddr answers with the interface's own first IPv4 address: what a LAN client
// on that interface can reach. It is what Publish uses when given no AddrFunc.
func InterfaceAddr(ifc Interface) (netip.Addr, bool) {
	for _, p := range ifc.Addrs {
		if p.Addr().Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// Fixed answers with addr on every interface.
func Fixed(addr netip.Addr) AddrFunc {
	return func(Interface) (netip.Addr, bool) { return addr, addr.Is4() }
}

// LAN lists every interface that is up, carries multicast, is neither loopback nor
// point-to-point and has an IPv4 address, except those whose name matches one of the
// exclude patterns (path.Match syntax: "hearth0", "hv*").
func LAN(exclude ...string) Lister {
	return func() ([]Interface, error) {
		return list(func(name string) bool {
			for _, pat := range exclude {
				if ok, _ := path.Match(pat, name); ok {
					return false
				}
			}
			return true
		})
	}
}

// Named lists the named interfaces among those LAN would list.
func Named(names ...string) Lister {
	return func() ([]Interface, error) {
		return list(func(name string) bool {
			for _, n := range names {
				if n == name {
					return true
				}
			}
			return false
		})
	}
}

func list(want func(string) bool) ([]Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 ||
			ifi.Flags&(net.FlagLoopback|net.FlagPointToPoint) != 0 || !want(ifi.Name) {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // gone meanwhile
		}
		ifc := Interface{Name: ifi.Name, Index: ifi.Index}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			bits, _ := n.Mask.Size()
			if n.IP.To4() != nil && len(n.Mask) == net.IPv6len {
				bits -= 96
			}
			ifc.Addrs = append(ifc.Addrs, netip.PrefixFrom(ip.Unmap(), bits))
		}
		if len(ifc.Addrs) > 0 {
			out = append(out, ifc)
		}
	}
	return out, nil
}
