package dns

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	dnsmsg "github.com/miekg/dns"
)

// answer decides a query: either a reply now (an answer from the table, or an error),
// or fwd, the query to forward. Queries that deserve no reply at all (responses, garbage
// shorter than a header) get neither. The transport fits the reply to its client.
func (s *Server) answer(b []byte) (reply []byte, fwd *dnsmsg.Msg) {
	req := new(dnsmsg.Msg)
	if err := req.Unpack(b); err != nil {
		return formErr(b), nil
	}
	if req.Response {
		return nil, nil
	}
	if req.Opcode != dnsmsg.OpcodeQuery {
		return s.pack(req, new(dnsmsg.Msg).SetRcode(req, dnsmsg.RcodeNotImplemented)), nil
	}
	if len(req.Question) != 1 {
		return s.pack(req, new(dnsmsg.Msg).SetRcode(req, dnsmsg.RcodeFormatError)), nil
	}
	if !dnsmsg.IsSubDomain(s.domain, dnsmsg.CanonicalName(req.Question[0].Name)) {
		return nil, req
	}
	return s.pack(req, s.local(req)), nil
}

// local answers a question in the domain from the table.
func (s *Server) local(req *dnsmsg.Msg) *dnsmsg.Msg {
	q := req.Question[0]
	resp := new(dnsmsg.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	ttl := uint32(s.cfg.TTL / time.Second)
	name := dnsmsg.CanonicalName(q.Name)
	if q.Qclass != dnsmsg.ClassINET && q.Qclass != dnsmsg.ClassANY {
		resp.Rcode = dnsmsg.RcodeRefused
		return resp
	}
	if name == s.domain {
		if q.Qtype == dnsmsg.TypeSOA || q.Qtype == dnsmsg.TypeANY {
			resp.Answer = []dnsmsg.RR{s.soa()}
		} else {
			resp.Ns = []dnsmsg.RR{s.soa()}
		}
		return resp
	}
	id := strings.TrimSuffix(name, "."+s.domain)
	var addr netip.Addr
	ok := false
	if !strings.Contains(id, ".") {
		addr, ok = s.table.lookup(id)
	}
	if !ok {
		resp.Rcode = dnsmsg.RcodeNameError
		resp.Ns = []dnsmsg.RR{s.soa()}
		return resp
	}
	hdr := dnsmsg.RR_Header{Name: q.Name, Class: dnsmsg.ClassINET, Ttl: ttl}
	switch {
	case addr.Is4() && (q.Qtype == dnsmsg.TypeA || q.Qtype == dnsmsg.TypeANY):
		hdr.Rrtype = dnsmsg.TypeA
		resp.Answer = []dnsmsg.RR{&dnsmsg.A{Hdr: hdr, A: addr.AsSlice()}}
	case addr.Is6() && (q.Qtype == dnsmsg.TypeAAAA || q.Qtype == dnsmsg.TypeANY):
		hdr.Rrtype = dnsmsg.TypeAAAA
		resp.Answer = []dnsmsg.RR{&dnsmsg.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}}
	default: // the name is there, without records of that type
		resp.Ns = []dnsmsg.RR{s.soa()}
	}
	return resp
}

// soa is the domain's SOA record; its minimum (the TTL of negative answers) is the TTL.
func (s *Server) soa() *dnsmsg.SOA {
	ttl := uint32(s.cfg.TTL / time.Second)
	return &dnsmsg.SOA{Hdr: dnsmsg.RR_Header{Name: s.domain, Rrtype: dnsmsg.TypeSOA, Class: dnsmsg.ClassINET, Ttl: ttl},
		Ns: "ns." + s.domain, Mbox: "hostmaster." + s.domain, Serial: s.table.version(),
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}
}

// pack packs resp for req's client: with an OPT record when req had one (RFC 6891), and
// truncated to what the client takes.
func (s *Server) pack(req, resp *dnsmsg.Msg) []byte {
	if opt := req.IsEdns0(); opt != nil && resp.IsEdns0() == nil {
		resp.SetEdns0(maxUDPQuery, false)
	}
	b, err := resp.Pack()
	if err != nil {
		s.log.Error("dns: pack a reply", "err", err)
		return s.servfail(req)
	}
	return b
}

// servfail is the reply when the answer cannot be had.
func (s *Server) servfail(req *dnsmsg.Msg) []byte {
	b, _ := new(dnsmsg.Msg).SetRcode(req, dnsmsg.RcodeServerFailure).Pack()
	return b
}

// formErr replies FORMERR to a query that does not parse, when at least its header does
// and it is a query; nil otherwise.
func formErr(b []byte) []byte {
	if len(b) < 12 || b[2]&0x80 != 0 {
		return nil
	}
	out := make([]byte, 12)
	copy(out, b[:2])                       // the ID
	out[2] = 0x80 | b[2]&0x78              // QR, the opcode
	out[3] = dnsmsg.RcodeFormatError       // RA clear, FORMERR
	binary.BigEndian.PutUint16(out[4:], 0) // no question
	binary.BigEndian.PutUint16(out[6:], 0) // no answer
	return out
}

// clientSize is the largest UDP reply req's client takes.
func clientSize(req *dnsmsg.Msg) int {
	size := dnsmsg.MinMsgSize
	if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
		size = min(int(opt.UDPSize()), maxUDPQuery)
	}
	return size
}

// fit truncates a packed reply for a UDP client that takes at most size bytes.
func fit(b []byte, size int) []byte {
	if len(b) <= size {
		return b
	}
	resp := new(dnsmsg.Msg)
	if err := resp.Unpack(b); err != nil {
		return nil
	}
	resp.Truncate(size)
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}
