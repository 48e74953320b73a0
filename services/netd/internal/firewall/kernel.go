package firewall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// kernel is one lasting nftables connection to the Firewall's namespace, for reading.
type kernel struct {
	conn  *nftables.Conn
	tbl   *nftables.Table
	netns int
}

func (f *Firewall) open() (*kernel, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if f.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(f.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &kernel{conn: c, tbl: &nftables.Table{Name: f.table, Family: nftables.TableFamilyINet}, netns: f.netns}, nil
}

func (k *kernel) close() { _ = k.conn.CloseLasting() }

func (k *kernel) exists() (bool, error) {
	tables, err := k.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	for _, t := range tables {
		if t.Name == k.tbl.Name {
			return true, nil
		}
	}
	return false, nil
}

// read returns the table's chains and rules (by handle and comment).
func (k *kernel) read() (current, error) {
	ok, err := k.exists()
	if err != nil || !ok {
		return current{}, err
	}
	chains, err := k.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return current{}, err
	}
	rules, err := k.rules()
	if err != nil {
		return current{}, fmt.Errorf("rules: %w", err)
	}
	have := current{exists: true, chains: map[string]currentChain{}}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != k.tbl.Name {
			continue
		}
		hc := currentChain{policy: c.Policy, rules: rules[c.Name]}
		if c.Hooknum != nil && c.Priority != nil {
			hc.hook = &hook{typ: c.Type, num: *c.Hooknum, prio: *c.Priority}
		}
		have.chains[c.Name] = hc
	}
	return have, nil
}

// rules returns the handle and comment of every rule of the table, by chain, in order:
// one dump of the whole table, decoding only those attributes. (nftables.GetRules takes
// one dump per chain and decodes every expression of every rule: at 100 containers, most
// of the CPU of an Apply.)
func (k *kernel) rules() (map[string][]currentRule, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(k.tbl.Name + "\x00")}})
	if err != nil {
		return nil, err
	}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		// struct nfgenmsg: the family, the version (0), the resource id (0).
		Data: append([]byte{byte(nftables.TableFamilyINet), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]currentRule{}
	for _, m := range msgs {
		chain, r, err := parseRule(m.Data)
		if err != nil {
			return nil, err
		}
		out[chain] = append(out[chain], r)
	}
	return out, nil
}

// parseRule decodes a rule message (after its netlink header) of a GETRULE dump: its
// chain, handle and comment.
func parseRule(b []byte) (string, currentRule, error) {
	if len(b) < 4 {
		return "", currentRule{}, fmt.Errorf("a rule message of %d bytes", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return "", currentRule{}, err
	}
	ad.ByteOrder = binary.BigEndian
	var chain string
	var r currentRule
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.comment = comment(ad.Bytes())
		}
	}
	if err := ad.Err(); err != nil {
		return "", currentRule{}, err
	}
	if chain == "" || r.handle == 0 {
		return "", currentRule{}, fmt.Errorf("a rule without its chain or handle")
	}
	return chain, r, nil
}

// comment returns the comment in a rule's user data (type-length-value records, as nft
// writes them), or "". Unlike userdata.GetString, a record that claims more bytes than
// there are ends the walk instead of a panic: any root process may write rules into the
// table.
func comment(ud []byte) string {
	for len(ud) >= 2 {
		typ, n := userdata.Type(ud[0]), int(ud[1])
		if len(ud) < 2+n {
			return ""
		}
		if typ == userdata.TypeComment {
			return string(bytes.TrimSuffix(ud[2:2+n], []byte{0}))
		}
		ud = ud[2+n:]
	}
	return ""
}

// ackSize bounds the socket memory that the acknowledgement of one message of a batch
// takes: the kernel acknowledges every message, echoing it, and the acks wait in the
// socket until the whole batch is sent. A default receive buffer (208 KiB) overflows
// (ENOBUFS) at a few hundred rules.
const ackSize = 4 << 10

// apply sends ops as one batch, on a connection of its own whose receive buffer holds
// every acknowledgement.
func (k *kernel) apply(batch ops) error {
	size := 256<<10 + len(batch)*ackSize
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			// Beyond net.core.rmem_max: needs CAP_NET_ADMIN, which nftables needs anyway.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("receive buffer of %d bytes: %w", size, serr)
		}
		return nil
	})}
	if k.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(k.netns))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	accept := nftables.ChainPolicyAccept
	chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: k.tbl} }
	for _, o := range batch {
		switch o.kind {
		case opAddTable:
			conn.AddTable(k.tbl)
		case opFlushChain:
			conn.FlushChain(chain(o.name))
		case opDelRule:
			if err := conn.DelRule(&nftables.Rule{Table: k.tbl, Chain: chain(o.name), Handle: o.handle}); err != nil {
				return err
			}
		case opDelChain:
			conn.DelChain(chain(o.name))
		case opAddChain:
			c := chain(o.name)
			if h := o.chain.hook; h != nil {
				num, prio := h.num, h.prio
				c.Type, c.Hooknum, c.Priority, c.Policy = h.typ, &num, &prio, &accept
			}
			conn.AddChain(c)
		case opAddRule:
			conn.AddRule(&nftables.Rule{Table: k.tbl, Chain: chain(o.name), Exprs: o.rule.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, o.rule.comment)})
		}
	}
	return conn.Flush()
}

// bridgeInfo is what Apply needs to know of the bridge.
type bridgeInfo struct {
	index          int32
	nfIPv4, nfIPv6 bool // the attributes nf_call_iptables and nf_call_ip6tables
}

// checkKernel refuses to touch the table when the bridge is missing or br_netfilter is
// not in the kernel: the rules between containers would not see their traffic.
func (f *Firewall) checkKernel(bridge string) error {
	if _, err := f.bridge(bridge); err != nil {
		return err
	}
	err := inNetNS(f.netns, func() error {
		_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: traffic between containers would pass unfiltered: load the module (modprobe br_netfilter) and start netd again: %w", errNoBrNetfilter, errdefs.ErrFailedPrecondition)
	}
	return err
}

// bridge reads the bridge's link through rtnetlink.
func (f *Firewall) bridge(name string) (bridgeInfo, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: f.netns})
	if err != nil {
		return bridgeInfo{}, fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return bridgeInfo{}, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request},
		Data:   append(make([]byte, unix.SizeofIfInfomsg), attrs...),
	})
	if errors.Is(err, unix.ENODEV) || (err == nil && len(msgs) == 0) {
		return bridgeInfo{}, fmt.Errorf("bridge %s: %w: create it before the firewall: %w", name, errNoBridge, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return bridgeInfo{}, fmt.Errorf("bridge %s: %w", name, err)
	}
	data := msgs[0].Data
	if len(data) < unix.SizeofIfInfomsg {
		return bridgeInfo{}, fmt.Errorf("bridge %s: short rtnetlink answer", name)
	}
	info := bridgeInfo{index: int32(binary.NativeEndian.Uint32(data[4:8]))}
	kind := ""
	ad, err := netlink.NewAttributeDecoder(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return bridgeInfo{}, err
	}
	for ad.Next() {
		if ad.Type() != unix.IFLA_LINKINFO {
			continue
		}
		ad.Nested(func(li *netlink.AttributeDecoder) error {
			for li.Next() {
				switch li.Type() {
				case unix.IFLA_INFO_KIND:
					kind = li.String()
				case unix.IFLA_INFO_DATA:
					li.Nested(func(bd *netlink.AttributeDecoder) error {
						for bd.Next() {
							switch bd.Type() {
							case unix.IFLA_BR_NF_CALL_IPTABLES:
								info.nfIPv4 = bd.Uint8() == 1
							case unix.IFLA_BR_NF_CALL_IP6TABLES:
								info.nfIPv6 = bd.Uint8() == 1
							}
						}
						return nil
					})
				}
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return bridgeInfo{}, fmt.Errorf("bridge %s: %w", name, err)
	}
	if kind != "bridge" {
		return bridgeInfo{}, fmt.Errorf("%s is a %q link, not a bridge: %w", name, kind, errdefs.ErrFailedPrecondition)
	}
	return info, nil
}

// bridgeNetfilter hands the bridge's IPv4 and IPv6 traffic to the netfilter hooks
// (see the package comment). It says whether it changed anything.
func (f *Firewall) bridgeNetfilter(name string) (bool, error) {
	info, err := f.bridge(name)
	if err != nil {
		return false, err
	}
	if info.nfIPv4 && info.nfIPv6 {
		return false, nil
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(unix.IFLA_LINKINFO, func(li *netlink.AttributeEncoder) error {
		li.String(unix.IFLA_INFO_KIND, "bridge")
		li.Nested(unix.IFLA_INFO_DATA, func(bd *netlink.AttributeEncoder) error {
			bd.Uint8(unix.IFLA_BR_NF_CALL_IPTABLES, 1)
			bd.Uint8(unix.IFLA_BR_NF_CALL_IP6TABLES, 1)
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	ifi := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(ifi[4:8], uint32(info.index))
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: f.netns})
	if err != nil {
		return false, fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(ifi, attrs...),
	}); err != nil {
		return false, fmt.Errorf("bridge %s: turn nf_call_iptables on: %w", name, err)
	}
	return true, nil
}

// ipForward turns net.ipv4.ip_forward on, saying whether it was off.
func (f *Firewall) ipForward() (bool, error) {
	const path = "/proc/sys/net/ipv4/ip_forward"
	changed := false
	err := inNetNS(f.netns, func() error {
		v, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(bytes.TrimSpace(v)) == "1" {
			return nil
		}
		changed = true
		return os.WriteFile(path, []byte("1\n"), 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("turn IPv4 forwarding on: %w", err)
	}
	return changed, nil
}

// inNetNS runs fn on a thread in the network namespace fd (0: this one). /proc/sys/net
// shows the namespace of the thread that opens it.
func inNetNS(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err = fn()
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with the goroutine
		done <- err
	}()
	return <-done
}
