package netapi

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/netd/internal/bindings"
	"hearth.dev/services/netd/internal/dns"
)

// Flags are netd's own flags.
type Flags struct {
	Bridge         string
	Subnet         string
	HTTPSAddr      string
	HTTPAddr       string
	LANInterfaces  string
	CertdSocket    string
	Tor            string
	TorNoNetwork   bool
	DNS            bool
	InternalDomain string
	HostPorts      string
}

// Register adds the flags.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Bridge, "bridge", "hearth0", "the bridge containers attach to")
	fs.StringVar(&f.Subnet, "subnet", "10.88.0.0/16", "the bridge's IPv4 subnet; its first address is the gateway")
	fs.StringVar(&f.HTTPSAddr, "https-addr", ":443", "`address` of the HTTPS proxy that serves name.local and domain bindings (by SNI and Host); empty: none")
	fs.StringVar(&f.HTTPAddr, "http-addr", ":80", "`address` that redirects plain HTTP to HTTPS and answers ACME HTTP-01 challenges; empty: none")
	fs.StringVar(&f.LANInterfaces, "lan-interfaces", "auto", "`interfaces` (comma-separated) on which LAN names are announced over mDNS; auto: every interface with multicast and an IPv4 address but the bridge and the containers' veths; none: no announcements")
	fs.StringVar(&f.CertdSocket, "certd-socket", "", "certd's `socket`, for the proxy's certificates (default <run-dir>/certd.sock)")
	fs.StringVar(&f.Tor, "tor", "off", "onion services: off; managed (netd runs tor with its own data directory under the state directory); or the `address` of a tor control port (host:port, or unix:/path), with cookie or no authentication")
	fs.BoolVar(&f.TorNoNetwork, "tor-disable-network", false, "with --tor managed: keep tor off the Tor network (DisableNetwork 1; for tests: it still takes onion services)")
	fs.BoolVar(&f.DNS, "dns", true, "answer DNS on the gateway, port 53: <id>.<internal domain> is the container's address, other names go to the host's resolvers")
	fs.StringVar(&f.InternalDomain, "internal-domain", dns.DefaultDomain, "domain of containers on the bridge (the same as certd's --internal-domain)")
	fs.StringVar(&f.HostPorts, "host-ports", "30000-32767", "`range` of host ports given to plain-TCP interfaces exposed on the LAN")
}

// parsed holds the flags' values, checked.
type parsed struct {
	subnet    netip.Prefix
	lan       []string // nil: auto; empty: none
	ports     bindings.PortRange
	httpsPort int
	proxyPort []uint16 // the proxy's ports, for the firewall's services
}

func (f *Flags) parse() (parsed, error) {
	var p parsed
	var err error
	if p.subnet, err = netip.ParsePrefix(f.Subnet); err != nil {
		return p, fmt.Errorf("--subnet %q: give a subnet such as 10.88.0.0/16: %w", f.Subnet, errdefs.ErrInvalidArgument)
	}
	if p.ports, err = bindings.ParsePortRange(f.HostPorts); err != nil {
		return p, fmt.Errorf("--host-ports: %w", err)
	}
	switch f.LANInterfaces {
	case "auto":
	case "none", "":
		p.lan = []string{}
	default:
		p.lan = strings.Split(f.LANInterfaces, ",")
	}
	p.httpsPort = 443
	for _, a := range []struct{ flag, addr string }{{"--https-addr", f.HTTPSAddr}, {"--http-addr", f.HTTPAddr}} {
		if a.addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a.addr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 {
			return p, fmt.Errorf("%s %q: give host:port or :port, such as :443: %w", a.flag, a.addr, errdefs.ErrInvalidArgument)
		}
		if a.flag == "--https-addr" {
			p.httpsPort = n
		}
		p.proxyPort = append(p.proxyPort, uint16(n))
	}
	if f.HTTPAddr != "" && f.HTTPSAddr == "" {
		return p, fmt.Errorf("--http-addr redirects to HTTPS: give --https-addr too: %w", errdefs.ErrInvalidArgument)
	}
	if f.Tor != "off" && f.Tor != "managed" && !strings.HasPrefix(f.Tor, "unix:") && !strings.HasPrefix(f.Tor, "/") {
		if _, _, err := net.SplitHostPort(f.Tor); err != nil {
			return p, fmt.Errorf("--tor %q: give off, managed, host:port or unix:/path of a control port: %w", f.Tor, errdefs.ErrInvalidArgument)
		}
	}
	if f.TorNoNetwork && f.Tor != "managed" {
		return p, fmt.Errorf("--tor-disable-network is for --tor managed: %w", errdefs.ErrInvalidArgument)
	}
	return p, nil
}
