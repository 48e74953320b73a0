package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

func imageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Aliases: []string{"images", "img"},
		Short:   "Import, pull, list, tag and remove images",
		Long: `Images are stored once per content digest and unpacked into read-only root file
systems that containers mount. They come from an OCI image layout directory, an OCI archive,
a 'docker save' archive, a plain root file system tarball, or a registry.`,
	}
	var importName string
	imp := &cobra.Command{
		Use:   "import FILE|DIR",
		Short: "Import an image from an OCI layout, OCI archive, docker save archive or rootfs tarball",
		Example: `  hearthctl image import ./busybox-rootfs.tar --name busybox
  hearthctl image import ./app-oci-layout/ --name app:1.0
  docker save app:1.0 -o app.tar && hearthctl image import app.tar`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			// The daemon opens the path: make it absolute from here.
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			stream, err := cl.ImportImage(ctx, &containerv1.ImportImageRequest{Path: path, Name: importName})
			if err != nil {
				return err
			}
			return followImage(g, stream, func(r *containerv1.ImportImageResponse) (*containerv1.ImageProgress, *containerv1.Image) {
				return r.GetProgress(), r.GetImage()
			})
		}),
	}
	imp.Flags().StringVar(&importName, "name", "", "name for the image, such as app or app:1.0 (:latest is added when no tag is given)")

	var pullName string
	var insecure bool
	pull := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry (credentials from the docker config file)",
		Example: `  hearthctl image pull registry.example/app:1.0
  hearthctl image pull --insecure 127.0.0.1:5000/app:dev --name app:dev`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			stream, err := cl.PullImage(ctx, &containerv1.PullImageRequest{Reference: args[0], Name: pullName, Insecure: insecure})
			if err != nil {
				return err
			}
			return followImage(g, stream, func(r *containerv1.PullImageResponse) (*containerv1.ImageProgress, *containerv1.Image) {
				return r.GetProgress(), r.GetImage()
			})
		}),
	}
	pull.Flags().StringVar(&pullName, "name", "", "name for the image (default: the reference)")
	pull.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to the registry (for a registry on loopback)")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			resp, err := cl.ListImages(ctx, &containerv1.ListImagesRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, img := range resp.GetImages() {
				names := strings.Join(img.GetNames(), ",")
				if names == "" {
					names = "<none>"
				}
				rows = append(rows, []string{short(img.GetDigest()), names, human(img.GetSize()), since(img.GetCreatedAt()) + " ago", strings.Join(img.GetUsedBy(), ",")})
			}
			return g.table([]string{"DIGEST", "NAMES", "SIZE", "CREATED", "USED BY"}, rows)
		}),
	}
	inspect := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an image: digest, names, config, users",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			resp, err := cl.GetImage(ctx, &containerv1.GetImageRequest{Ref: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp.GetImage())
			}
			return g.showImage(resp.GetImage())
		}),
	}
	tag := &cobra.Command{
		Use:   "tag REF NAME",
		Short: "Give an image another name",
		Args:  cobra.ExactArgs(2),
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			resp, err := cl.TagImage(ctx, &containerv1.TagImageRequest{Ref: args[0], Name: args[1]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp.GetImage())
			}
			_, err = fmt.Fprintf(g.stdout, "%s\t%s\n", short(resp.GetImage().GetDigest()), strings.Join(resp.GetImage().GetNames(), ","))
			return err
		}),
	}
	var force bool
	rm := &cobra.Command{
		Use:     "rm REF",
		Aliases: []string{"delete"},
		Short:   "Remove a name; the image goes with its last name (refused while a container uses it)",
		Args:    cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			resp, err := cl.DeleteImage(ctx, &containerv1.DeleteImageRequest{Ref: args[0], Force: force})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			if len(resp.GetDeleted()) == 0 {
				_, err = fmt.Fprintf(g.stdout, "untagged %s\n", args[0])
				return err
			}
			for _, d := range resp.GetDeleted() {
				fmt.Fprintf(g.stdout, "deleted %s\n", d)
			}
			return nil
		}),
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "remove even if a container uses it (its files stay until unused)")
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove every image without a name that no container uses",
		Args:  cobra.NoArgs,
		RunE: call(g, "containerd-lite", containerv1.NewImageServiceClient, func(ctx context.Context, cl containerv1.ImageServiceClient, args []string) error {
			resp, err := cl.PruneImages(ctx, &containerv1.PruneImagesRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			for _, d := range resp.GetDeleted() {
				fmt.Fprintf(g.stdout, "deleted %s\n", d)
			}
			_, err = fmt.Fprintf(g.stdout, "freed %s\n", human(resp.GetBytesFreed()))
			return err
		}),
	}
	cmd.AddCommand(imp, pull, ls, inspect, tag, rm, prune)
	return cmd
}

// followImage shows an import or pull stream's progress and then the image.
func followImage[T any](g *globals, stream grpc.ServerStreamingClient[T], split func(*T) (*containerv1.ImageProgress, *containerv1.Image)) error {
	view := newProgressView(g)
	defer view.done()
	start := time.Now()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		p, img := split(msg)
		if img == nil {
			view.update(p)
			continue
		}
		view.done()
		if g.output == "json" {
			return g.printJSON(img)
		}
		_, err = fmt.Fprintf(g.stdout, "%s\t%s\t%s\t(%s)\n", short(img.GetDigest()), strings.Join(img.GetNames(), ","), human(img.GetSize()), time.Since(start).Round(time.Millisecond))
		return err
	}
}

func (g *globals) showImage(img *containerv1.Image) error {
	c := img.GetConfig()
	return g.fields(
		"digest", img.GetDigest(),
		"names", strings.Join(img.GetNames(), ", "),
		"size", human(img.GetSize()),
		"created", ago(img.GetCreatedAt()),
		"rootfs", img.GetRootfs(),
		"used by", strings.Join(img.GetUsedBy(), ", "),
		"entrypoint", strings.Join(c.GetEntrypoint(), " "),
		"cmd", strings.Join(c.GetCmd(), " "),
		"env", strings.Join(c.GetEnv(), " "),
		"user", c.GetUser(),
		"workdir", c.GetWorkingDir(),
		"ports", strings.Join(c.GetExposedPorts(), " "),
	)
}

// short returns the first 12 hex digits of a digest.
func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
