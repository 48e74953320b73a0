package firewall

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleMsg is a GETRULE reply's payload (nfgenmsg, then attributes) as the kernel sends it.
func ruleMsg(t *testing.T, attrs ...netlink.Attribute) []byte {
	t.Helper()
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, b...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestParseRule: the chain, handle and comment of a dumped rule, whatever else it holds;
// a message without chain or handle, or cut short, is an error.
func TestParseRule(t *testing.T) {
	comment := userdata.AppendString(nil, userdata.TypeComment, "web: accept from the bridge")
	exprs := netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: []byte{4, 0, 1, 0}}
	full := ruleMsg(t,
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: []byte("hearth\x00")},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte("ct-web\x00")},
		netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: be64(42)},
		exprs,
		netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: comment})
	tests := []struct {
		name      string
		msg       []byte
		chain     string
		want      currentRule
		errSubstr string
	}{
		{name: "full", msg: full, chain: "ct-web", want: currentRule{handle: 42, comment: "web: accept from the bridge"}},
		{name: "no comment", msg: ruleMsg(t,
			netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte("forward\x00")},
			netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: be64(7)}), chain: "forward", want: currentRule{handle: 7}},
		{name: "user data cut short", msg: ruleMsg(t,
			netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte("forward\x00")},
			netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: be64(7)},
			netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: []byte{byte(userdata.TypeComment), 50, 'a'}}), chain: "forward", want: currentRule{handle: 7}},
		{name: "no handle", msg: ruleMsg(t, netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte("forward\x00")}), errSubstr: "without its chain or handle"},
		{name: "no chain", msg: ruleMsg(t, netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: be64(7)}), errSubstr: "without its chain or handle"},
		{name: "no nfgenmsg", msg: []byte{1, 0}, errSubstr: "a rule message of 2 bytes"},
		{name: "cut short", msg: full[:len(full)-3], errSubstr: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, r, err := parseRule(tt.msg)
			if tt.chain == "" {
				if err == nil {
					t.Fatalf("parseRule = %q %+v, want an error", chain, r)
				}
				if !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("error %q, want it to say %q", err, tt.errSubstr)
				}
				return
			}
			if err != nil || chain != tt.chain || r != tt.want {
				t.Fatalf("parseRule = %q %+v %v, want %q %+v", chain, r, err, tt.chain, tt.want)
			}
		})
	}
}

// FuzzParseRule: any bytes give a rule or an error, never a panic.
func FuzzParseRule(f *testing.F) {
	f.Add([]byte{unix.NFPROTO_INET, 0, 0, 0, 8, 0, 2, 0, 'a', 0, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, r, err := parseRule(b)
		if err == nil && (chain == "" || r.handle == 0) {
			t.Fatalf("parseRule accepted %x as chain %q handle %d", b, chain, r.handle)
		}
	})
}
