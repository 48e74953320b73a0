package hostsock

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/budget"
	"hearth.dev/internal/dial"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

type identity struct {
	hostv1.UnimplementedHostServiceServer
	name string
}

func (i identity) GetIdentity(context.Context, *hostv1.GetIdentityRequest) (*hostv1.GetIdentityResponse, error) {
	return &hostv1.GetIdentityResponse{Container: i.name}, nil
}

// A container's host.sock: owned for the container's root group, answering for that
// container only, bounded by its budget, gone when stopped.
func TestServeOwnSocketWithBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the socket belongs to another user's group")
	}
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(log, func(c string) hostv1.HostServiceServer { return identity{name: c} }, budget.Limits{MaxConns: 2, ExcessConns: -1})
	defer s.Close()
	path := filepath.Join(dir, "host.sock")
	if err := s.Serve("web", path, 300000); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve("web", path, 300000); err != nil {
		t.Fatalf("serving again: %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 300000 {
		t.Errorf("host.sock is %v %d:%d, want 0660 root:300000", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	conn, err := dial.Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := hostv1.NewHostServiceClient(conn).GetIdentity(ctx, &hostv1.GetIdentityRequest{})
	if err != nil || resp.GetContainer() != "web" {
		t.Fatalf("GetIdentity = %v, %v", resp, err)
	}
	// The budget holds: past its connections, the next ones are closed at once.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	closed := 0
	for i := 0; i < 10; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	// The gRPC client holds one of the two; one more is served (it reads the server's
	// settings); the other nine are closed at once.
	if closed != 9 {
		t.Errorf("%d of 10 new connections against a budget of 2 (one held) were closed at once, want 9", closed)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	conn.Close()
	s.Stop("web")
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("host.sock stays after Stop: %v", err)
	}
}
