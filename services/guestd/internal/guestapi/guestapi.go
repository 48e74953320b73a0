// Package guestapi is the serving guestd: GuestService on the container's guestd.sock.
package guestapi

import (
	"context"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/buildinfo"
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/peercred"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/initproc"
)

// Socket is where guestd serves inside the container.
const Socket = "/media/hearth/rpc/guestd.sock"

// Main runs the serving guestd.
func Main() {
	daemon.Main(daemon.Spec{
		Name: "guestd",
		Summary: "guestd manages a package's daemons inside its container and answers the host on\n" +
			Socket + ". Run as the container's init it supervises itself; run by hand\n" +
			"(with --socket and --state-dir) it serves alone, for tests.",
		DefaultSocket: Socket,
		Authorize:     func(*daemon.Env) peercred.Policy { return HostOrContainerRoot },
		Init: func(ctx context.Context, env *daemon.Env) (daemon.Hooks, error) {
			guestv1.RegisterGuestServiceServer(env.Server, NewServer(time.Now()))
			return daemon.Hooks{}, nil
		},
	})
}

// HostOrContainerRoot allows the container's root, and callers from outside the container's
// PID namespace: the kernel reports those with PID 0, and only the host can reach the
// socket from outside (its directory is bind-mounted from the host, mode 0750).
func HostOrContainerRoot(c peercred.Cred) error {
	if c.PID == 0 {
		return nil
	}
	return peercred.RootOrGroup(-1)(c)
}

// Server implements GuestService.
type Server struct {
	guestv1.UnimplementedGuestServiceServer
	info *guestv1.GuestInfo
}

var _ guestv1.GuestServiceServer = (*Server)(nil)

// NewServer returns the service for a guestd that started at start. The boot time and
// restart count come from init's environment when guestd runs under it.
func NewServer(start time.Time) *Server {
	boot := start
	if ns, err := strconv.ParseInt(os.Getenv(initproc.BootTimeEnv), 10, 64); err == nil {
		boot = time.Unix(0, ns)
	}
	restarts, _ := strconv.Atoi(os.Getenv(initproc.RestartsEnv))
	host, _ := os.Hostname()
	return &Server{info: &guestv1.GuestInfo{
		Version:   buildinfo.Version(),
		Pid:       int32(os.Getpid()),
		StartedAt: timestamppb.New(start),
		BootTime:  timestamppb.New(boot),
		Hostname:  host,
		Restarts:  uint32(restarts),
	}}
}

// GetInfo implements GuestService.
func (s *Server) GetInfo(context.Context, *guestv1.GetInfoRequest) (*guestv1.GetInfoResponse, error) {
	return &guestv1.GetInfoResponse{Info: s.info}, nil
}
