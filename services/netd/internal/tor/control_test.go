package tor

import (
	"bufio"
	"errors"
	"maps"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func TestParseKeyValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{`METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/lib/x/control_auth_cookie"`,
			map[string]string{"METHODS": "COOKIE,SAFECOOKIE", "COOKIEFILE": "/var/lib/x/control_auth_cookie"}},
		{`Tor="0.4.9.11"`, map[string]string{"Tor": "0.4.9.11"}},
		{`METHODS=NULL`, map[string]string{"METHODS": "NULL"}},
		{`A="x \"y\" \\z" B=2`, map[string]string{"A": `x "y" \z`, "B": "2"}},
		{`bare A=1 word B="open`, map[string]string{"A": "1", "B": "open"}},
		{``, map[string]string{}},
	} {
		if got := parseKeyValues(tc.in); !maps.Equal(got, tc.want) {
			t.Errorf("parseKeyValues(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     reply
		err      string
	}{
		{"one line", "250 OK\r\n", reply{{code: 250, text: "OK"}}, ""},
		{"mid lines", "250-ServiceID=abc\r\n250 OK\r\n", reply{{code: 250, text: "ServiceID=abc"}, {code: 250, text: "OK"}}, ""},
		{"data", "250+onions/current=\r\nid1\r\n..dot\r\n.\r\n250 OK\r\n",
			reply{{code: 250, text: "onions/current=", data: "id1\n.dot"}, {code: 250, text: "OK"}}, ""},
		{"refusal", "552 Unknown Onion Service id\r\n", reply{{code: 552, text: "Unknown Onion Service id"}}, ""},
		{"http", "HTTP/1.0 501 Tor is not an HTTP Proxy\r\n", nil, "not tor's control protocol"},
		{"truncated", "250-ServiceID=abc\r\n", nil, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestReplyErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		code int
		text string
		kind error
	}{
		{550, "Onion address collision", errdefs.ErrAlreadyExists},
		{552, "Unknown Onion Service id", errdefs.ErrNotFound},
		{512, "Invalid VIRTPORT/TARGET", errdefs.ErrInvalidArgument},
		{515, "Authentication failed", errdefs.ErrPermissionDenied},
		{551, "Failed to generate onion address", errdefs.ErrInternal},
	} {
		err := reply{{code: tc.code, text: tc.text}}.err("ADD_ONION")
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%d %s: %v, want kind %v", tc.code, tc.text, err, tc.kind)
		}
	}
}

func TestParseControlAddress(t *testing.T) {
	for _, tc := range []struct {
		in, network, address string
	}{
		{"unix:/run/tor/control", "unix", "/run/tor/control"},
		{"/run/tor/control", "unix", "/run/tor/control"},
		{"127.0.0.1:9051", "tcp", "127.0.0.1:9051"},
		{"[::1]:9051", "tcp", "[::1]:9051"},
		{"localhost:9051", "tcp", "localhost:9051"},
		{"unix:relative", "", ""},
		{"9051", "", ""},
		{":9051", "", ""},
		{"127.0.0.1:0", "", ""},
		{"127.0.0.1:http", "", ""},
		{"", "", ""},
	} {
		n, a, err := parseControlAddress(tc.in)
		if n != tc.network || a != tc.address || (tc.network == "") != (err != nil) {
			t.Errorf("parseControlAddress(%q) = %q, %q, %v", tc.in, n, a, err)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseControlAddress(%q): %v is not invalid argument", tc.in, err)
		}
	}
}

func TestServiceCheck(t *testing.T) {
	k := rfcKey(t)
	for _, tc := range []struct {
		name  string
		svc   Service
		valid bool
	}{
		{"ipv4", Service{k, []Port{{80, "10.88.0.5:8080"}}}, true},
		{"ipv6 and unix", Service{k, []Port{{80, "[fd00::5]:8080"}, {443, "unix:/run/x.sock"}}}, true},
		{"no key", Service{Ports: []Port{{80, "10.88.0.5:8080"}}}, false},
		{"no ports", Service{Key: k}, false},
		{"port 0", Service{k, []Port{{0, "10.88.0.5:8080"}}}, false},
		{"port too big", Service{k, []Port{{65536, "10.88.0.5:8080"}}}, false},
		{"twice", Service{k, []Port{{80, "10.88.0.5:8080"}, {80, "10.88.0.5:8081"}}}, false},
		{"a name", Service{k, []Port{{80, "app:8080"}}}, false},
		{"target port 0", Service{k, []Port{{80, "10.88.0.5:0"}}}, false},
		{"injection", Service{k, []Port{{80, "10.88.0.5:8080 Flags=Detach"}}}, false},
		{"unix relative", Service{k, []Port{{80, "unix:x.sock"}}}, false},
		{"unix space", Service{k, []Port{{80, "unix:/run/a b"}}}, false},
		{"unix newline", Service{k, []Port{{80, "unix:/run/a\r\nDEL_ONION x"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.svc.check()
			if tc.valid != (err == nil) {
				t.Fatalf("check: %v", err)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%v is not invalid argument", err)
			}
		})
	}
}

func TestNilControllerIsNotConfigured(t *testing.T) {
	var c *Controller
	ctx := t.Context()
	_, err := c.Add(ctx, Service{Key: rfcKey(t), Ports: []Port{{80, "127.0.0.1:80"}}})
	for name, err := range map[string]error{
		"Add":    err,
		"Remove": c.Remove(ctx, rfcID),
		"Ready":  c.Ready(ctx),
	} {
		if !errors.Is(err, ErrNotConfigured) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s on a nil controller: %v", name, err)
		}
	}
	if c.Services() != nil || c.Close() != nil {
		t.Error("nil controller lists services or fails to close")
	}
}
