package cli

import (
	"context"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// call makes a cobra RunE that connects to daemon's socket, builds a client with
// newClient, and runs f with it under a context bounded by --timeout.
func call[C any](g *globals, daemon string, newClient func(grpc.ClientConnInterface) C, f func(ctx context.Context, cl C, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		conn, err := g.conn(daemon)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		return f(ctx, newClient(conn), args)
	}
}

// clients are the services a command uses on containerd-lite's socket; guest calls are
// forwarded to a container's guestd (see forContainer).
type clients struct {
	containers containerv1.ContainerServiceClient
	guest      guestv1.GuestServiceClient
}

func newClients(cc grpc.ClientConnInterface) clients {
	return clients{containers: containerv1.NewContainerServiceClient(cc), guest: guestv1.NewGuestServiceClient(cc)}
}

// ContainerKey is the metadata key that names the container a GuestService call is for.
const ContainerKey = "hearth-container"

// forContainer addresses GuestService calls made with ctx to the container's guestd.
func forContainer(ctx context.Context, container string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, ContainerKey, container)
}
