package launch

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

const passwd = `root:x:0:0:root:/root:/bin/sh
postgres:x:104:109:PostgreSQL administrator:/var/lib/postgresql:/bin/bash
app:x:1000:1000::/home/app:/bin/sh
`
const group = `root:x:0:
ssl-cert:x:108:postgres
postgres:x:109:
app:x:1000:
`

func TestResolveUser(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		uid    uint32
		gid    uint32
		groups []uint32
		home   string
		err    string
	}{
		{"", 0, 0, []uint32{0}, "/root", ""},
		{"postgres", 104, 109, []uint32{109, 108}, "/var/lib/postgresql", ""},
		{"104", 104, 109, []uint32{109, 108}, "/var/lib/postgresql", ""},
		{"app:postgres", 1000, 109, []uint32{109}, "/home/app", ""},
		{"999", 999, 999, []uint32{999}, "/", ""},
		{"999:998", 999, 998, []uint32{998}, "/", ""},
		{"nobody", 0, 0, nil, "", "not in the image's /etc/passwd"},
		{"app:nogroup", 0, 0, nil, "", "not in the image's /etc/group"},
	} {
		id, err := ResolveUser(tc.spec, strings.NewReader(passwd), strings.NewReader(group))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("%q: %v, want %q (invalid argument)", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || id.UID != tc.uid || id.GID != tc.gid || !slices.Equal(id.Groups, tc.groups) || id.Home != tc.home {
			t.Errorf("%q: %+v %v; want %d:%d %v %s", tc.spec, id, err, tc.uid, tc.gid, tc.groups, tc.home)
		}
	}
	// An image with no passwd at all: numbers only.
	if id, err := ResolveUser("65534:65534", nil, nil); err != nil || id.UID != 65534 {
		t.Errorf("numeric without passwd: %+v %v", id, err)
	}
}
