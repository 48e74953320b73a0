// Package peercred reads the credentials of the process at the other end of a Unix socket
// (SO_PEERCRED and SO_PEERGROUPS) during the gRPC handshake and decides who may call.
package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Cred is what the kernel says of a peer. Ids are as seen from the receiver's user
// namespace; a peer outside the receiver's PID namespace has PID 0.
type Cred struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32
}

func (c Cred) String() string { return fmt.Sprintf("pid %d uid %d gid %d", c.PID, c.UID, c.GID) }

// InGroup reports whether gid is the peer's primary or a supplementary group.
func (c Cred) InGroup(gid uint32) bool { return c.GID == gid || slices.Contains(c.Groups, gid) }

// AuthInfo carries a peer's credentials in grpc's peer.Peer.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Cred Cred
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return "peercred" }

// FromContext returns the credentials of the caller of a gRPC handler.
func FromContext(ctx context.Context) (Cred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Cred{}, false
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Cred{}, false
	}
	return ai.Cred, true
}

// Read returns the credentials of the peer of a Unix socket connection.
func Read(conn net.Conn) (Cred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("peer credentials need a Unix socket, got %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred Cred
	var serr error
	err = raw.Control(func(fd uintptr) {
		var uc *unix.Ucred
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if serr != nil {
			serr = fmt.Errorf("SO_PEERCRED: %w", serr)
			return
		}
		cred = Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}
		cred.Groups, serr = peerGroups(int(fd))
	})
	if err == nil {
		err = serr
	}
	return cred, err
}

func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4], nil
		case errno == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
	}
}

// TransportCredentials records the peer's credentials at the handshake. It adds no
// encryption: the socket's file permissions and the kernel keep the channel private.
type TransportCredentials struct{}

// NewServer returns transport credentials for a gRPC server on a Unix socket.
func NewServer() credentials.TransportCredentials { return TransportCredentials{} }

// ServerHandshake implements credentials.TransportCredentials.
func (TransportCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := Read(conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Cred: cred}, nil
}

// ClientHandshake implements credentials.TransportCredentials; clients use insecure credentials.
func (TransportCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred credentials are for servers only")
}

// Info implements credentials.TransportCredentials.
func (TransportCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone implements credentials.TransportCredentials.
func (t TransportCredentials) Clone() credentials.TransportCredentials { return t }

// OverrideServerName implements credentials.TransportCredentials.
func (TransportCredentials) OverrideServerName(string) error { return nil }
