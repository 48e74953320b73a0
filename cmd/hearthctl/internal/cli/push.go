package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"hearth.dev/internal/market"
	"hearth.dev/internal/ocipkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// pushCmd stores a package in an OCI registry.
func pushCmd(g *globals) *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "push FILE.hpkg REGISTRY/REPO:TAG",
		Short: "Store a package in an OCI registry, as an artifact (credentials from the docker config file)",
		Long: `Push a package file to any OCI registry as an artifact (artifactType
` + ocipkg.ArtifactType + `, one layer ` + ocipkg.LayerMediaType + `: the file as is).
The package is verified first (as a host would, any signer). Install it elsewhere with
'hearthctl install oci://REGISTRY/REPO:TAG': the client checks the layer's digest, the host
the package's signature. Credentials come from the docker config file, as for 'docker
login' ($DOCKER_CONFIG/config.json, or ~/.docker/config.json).`,
		Example: `  hearthctl push hello-pg-1.0.0.hpkg registry.example/apps/hello-pg:1.0.0
  hearthctl push --insecure busybox-1.0.0.hpkg 127.0.0.1:5000/busybox:1.0.0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			in, err := market.Inspect(ctx, args[0])
			if err != nil {
				return err
			}
			view := newProgressView(g)
			p, err := ocipkg.Push(ctx, args[0], strings.TrimPrefix(args[1], ocipkg.Scheme), in.ID, in.Version, ocipkg.Options{Insecure: insecure, Progress: func(done, total int64) {
				view.throttled(&containerv1.ImageProgress{Phase: "pushing", BytesDone: done, BytesTotal: total})
			}})
			view.done()
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printAny(map[string]any{"id": in.ID, "version": in.Version, "reference": p.Reference, "layer": p.Layer, "size": p.Size, "key_id": in.KeyID})
			}
			_, err = fmt.Fprintf(g.stdout, "%s %s pushed to %s (%s, layer %s); install it with: hearthctl install oci://%s\n",
				in.ID, in.Version, p.Reference, human(p.Size), p.Layer, strings.TrimPrefix(args[1], ocipkg.Scheme))
			return err
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to the registry (for a registry on loopback)")
	return cmd
}
