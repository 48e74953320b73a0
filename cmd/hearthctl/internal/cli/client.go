package cli

import (
	"context"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
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
