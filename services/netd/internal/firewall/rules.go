package firewall

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The chains of the table.
const (
	chainInput       = "input"
	chainForward     = "forward"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainServices    = "services"
	chainFlows       = "flows"
	chainForwards    = "forwards"
)

// hook is what makes a chain a base chain.
type hook struct {
	typ  nftables.ChainType
	num  nftables.ChainHook
	prio nftables.ChainPriority
}

// chainSpec is one chain as it must be.
type chainSpec struct {
	name      string
	hook      *hook // nil for a regular chain (a target of jumps)
	unordered bool  // rules that never overlap: diffed one by one
	rules     []ruleSpec
}

// ruleSpec is one rule: its comment (a label and the hash of its expressions) is its
// identity.
type ruleSpec struct {
	comment string
	exprs   []expr.Any
}

// ruleset is the whole table for s (normalized). Regular chains come first, so that a
// batch adding everything adds the targets of jumps before the jumps.
func ruleset(s State) ([]chainSpec, error) {
	br, gw := s.Bridge, s.Gateway()
	b := &builder{}

	services := chainSpec{name: chainServices, unordered: true}
	for _, p := range s.Services {
		services.rules = append(services.rules, b.rule("service "+p.String(),
			ipv4(), ipDaddr(gw), l4proto(p.Proto), dport(p.Port), accept()))
	}
	flows := chainSpec{name: chainFlows, unordered: true}
	addrs := map[string]netip.Addr{}
	for _, c := range s.Containers {
		addrs[c.Name] = c.Addr
		for _, p := range c.Interfaces {
			flows.rules = append(flows.rules, b.rule(fmt.Sprintf("flow %s %s", c.Name, p),
				ipv4(), ipDaddr(c.Addr), l4proto(p.Proto), dport(p.Port), accept()))
		}
	}
	forwards := chainSpec{name: chainForwards, unordered: true}
	for _, f := range s.Forwards {
		forwards.rules = append(forwards.rules, b.rule(fmt.Sprintf("forward %s/%d %s:%d", f.Proto, f.HostPort, f.Container, f.Port),
			ipv4(), l4proto(f.Proto), dport(f.HostPort), dnat(addrs[f.Container], f.Port)))
	}

	input := chainSpec{name: chainInput, hook: &hook{nftables.ChainTypeFilter, *nftables.ChainHookInput, *nftables.ChainPriorityFilter}, rules: []ruleSpec{
		b.rule("input replies", iif(br), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept()),
		b.rule("input services", iif(br), jump(chainServices)),
		b.rule("input drop", iif(br), drop()),
	}}
	forward := chainSpec{name: chainForward, hook: &hook{nftables.ChainTypeFilter, *nftables.ChainHookForward, *nftables.ChainPriorityFilter}, rules: []ruleSpec{
		b.rule("forward replies", oif(br), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept()),
		b.rule("forward port forwards", oif(br), ctStatusDNAT(), accept()),
		b.rule("forward between containers", iif(br), oif(br), jump(chainFlows)),
		b.rule("forward drop", oif(br), drop()),
		b.rule("forward out", iif(br), ipv4(), ipSaddrIn(s.Subnet, true), ipDaddrIn(s.Subnet, false), accept()),
		b.rule("forward drop other sources", iif(br), drop()),
	}}
	prerouting := chainSpec{name: chainPrerouting, hook: &hook{nftables.ChainTypeNAT, *nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest}, rules: []ruleSpec{
		b.rule("prerouting to the host", fibDaddrLocal(), jump(chainForwards)),
	}}
	output := chainSpec{name: chainOutput, hook: &hook{nftables.ChainTypeNAT, *nftables.ChainHookOutput, *nftables.ChainPriorityNATDest}, rules: []ruleSpec{
		b.rule("output to the host", ipv4(), ipDaddrIn(netip.MustParsePrefix("127.0.0.0/8"), false), fibDaddrLocal(), jump(chainForwards)),
	}}
	postrouting := chainSpec{name: chainPostrouting, hook: &hook{nftables.ChainTypeNAT, *nftables.ChainHookPostrouting, *nftables.ChainPriorityNATSource}, rules: []ruleSpec{
		// Only the containers' traffic: the host's own connections from the gateway's
		// address (to itself, say) keep their source.
		b.rule("masquerade out", ipv4(), ipSaddrIn(s.Subnet, true), ipSaddrNot(s.Gateway()), oifNot(br), masquerade()),
		b.rule("masquerade hairpin", ipv4(), ipSaddrIn(s.Subnet, true), oif(br), ctStatusDNAT(), masquerade()),
	}}
	if b.err != nil {
		return nil, b.err
	}
	return []chainSpec{services, flows, forwards, input, forward, prerouting, output, postrouting}, nil
}

// maxLabel keeps comments within what nft shows and reads back (128 bytes).
const maxLabel = 100

// builder makes rules, keeping the first error.
type builder struct{ err error }

// rule returns a rule whose comment is label and a hash of the expressions, so that a
// rule of the same label made differently (by another version of netd) differs.
func (b *builder) rule(label string, parts ...[]expr.Any) ruleSpec {
	if len(label) > maxLabel {
		label = label[:maxLabel] // the hash still tells rules apart
	}
	var exprs []expr.Any
	for _, p := range parts {
		exprs = append(exprs, p...)
	}
	h := sha256.New()
	for _, e := range exprs {
		data, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("rule %q: %w", label, err)
		}
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		h.Write(n[:])
		h.Write(data)
	}
	return ruleSpec{comment: label + " #" + hex.EncodeToString(h.Sum(nil)[:6]), exprs: exprs}
}

// The pieces of rules. Register 1 is used for matches; DNAT loads 1 and 2.

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func iif(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

func oif(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

func oifNot(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(name)},
	}
}

// ipv4 matches IPv4 packets; an inet chain must say so before reading IPv4 headers.
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func ipDaddr(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

func ipSaddrIn(p netip.Prefix, in bool) []expr.Any { return ipIn(12, p, in) }

func ipSaddrNot(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: a.AsSlice()},
	}
}
func ipDaddrIn(p netip.Prefix, in bool) []expr.Any { return ipIn(16, p, in) }

func ipIn(offset uint32, p netip.Prefix, in bool) []expr.Any {
	m := make([]byte, 4)
	binary.BigEndian.PutUint32(m, ^uint32(0)<<(32-p.Bits()))
	op := expr.CmpOpEq
	if !in {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func l4proto(p Proto) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
	}
}

// dport matches the destination port of TCP or UDP (the same place in both headers).
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// ipsDstNAT is IPS_DST_NAT of a conntrack entry's status.
const ipsDstNAT = 1 << 5

// ctStatusDNAT matches connections whose destination was translated.
func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// fibDaddrLocal matches packets to an address of the host.
func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func dnat(a netip.Addr, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func masquerade() []expr.Any { return []expr.Any{&expr.Masq{}} }
func accept() []expr.Any     { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any       { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }
func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}
