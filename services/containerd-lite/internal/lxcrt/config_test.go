package lxcrt

import (
	"strings"
	"testing"

	"hearth.dev/services/containerd-lite/internal/idmap"
)

func TestRender(t *testing.T) {
	c := Config{
		Name: "web", Rootfs: "/s/containers/web/rootfs",
		MediaDir: "/s/containers/web/media", RPCDir: "/s/containers/web/rpc", LogFile: "/s/l", ConsoleLog: "/s/c", IDMap: idmap.At(165536),
		Init: []string{"/sbin/guestd", "init"},
	}
	text, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"lxc.uts.name = web\n",
		"lxc.rootfs.path = dir:/s/containers/web/rootfs\n",
		"lxc.idmap = u 0 165536 65536\n",
		"lxc.idmap = g 0 165536 65536\n",
		"lxc.net.0.type = empty\nlxc.net.0.flags = up\n",
		"lxc.mount.entry = /s/containers/web/media media/hearth none rbind,rslave 0 0\n" +
			"lxc.mount.entry = /s/containers/web/rpc media/hearth/rpc none bind 0 0\n",
		"dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir 0 0\n",
		"lxc.seccomp.profile = " + SeccompProfile + "\n",
		"lxc.init.cmd = /sbin/guestd init\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}

}

func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"space in path", Config{Name: "a", Rootfs: "/my state/rootfs", Init: []string{"x"}}, "white space"},
		{"newline in path", Config{Name: "a", RPCDir: "/x\nlxc.idmap = u 0 0 1", Init: []string{"x"}}, "white space"},
		{"no init", Config{Name: "a"}, "no init"},
		{"no seccomp profile", Config{Name: "a", Init: []string{"x"}, Seccomp: "/nonexistent/profile"}, "containers do not start without a system call filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.Render(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render: %v, want %q", err, tc.want)
			}
		})
	}
}
