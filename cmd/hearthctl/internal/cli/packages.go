package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"hearth.dev/internal/manifest"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// packageClients are what the package verbs use on containerd-lite's socket.
type packageClients struct {
	clients
	packages containerv1.PackageServiceClient
}

func newPackageClients(cc grpc.ClientConnInterface) packageClients {
	return packageClients{clients: newClients(cc), packages: containerv1.NewPackageServiceClient(cc)}
}

// packageCmds are the top-level verbs on packages.
func packageCmds(g *globals) []*cobra.Command {
	install := fileCmd(g, &cobra.Command{
		Use:   "install FILE.hpkg | ID[@VERSION] | oci://REGISTRY/REPO:TAG",
		Short: "Install a signed package (a file, from a marketplace or a registry): verify it, import its images, create and start it",
		Long: `Install a package file. It is verified as it streams to containerd-lite (its table of
contents, its signature by a key this host trusts, every entry's size and digest) before
anything on the host changes. Then its images are imported, its container and volumes made
(a former install's kept data is found again), its install hook run, and it is started;
install returns once every daemon is ready. On failure, everything it made is removed and
the error names the step.

A package that is unsigned, or signed by a key not trusted here (see 'hearthctl keys'),
installs only with --allow-untrusted, and the output says so.

A file that exists is installed. oci://REF fetches the package from an OCI registry
('hearthctl push' stores it; credentials from the docker config file). Anything else is a
package id, with an optional @VERSION (default: the newest release), looked up in your
marketplaces ('hearthctl market'): the download resumes if it was cut, and its size and
sha256 must be the ones the marketplace's signed index names before anything is sent.`,
		Example: `  hearthctl install hello-pg-1.0.0.hpkg
  hearthctl install ./my-app.hpkg --allow-untrusted
  hearthctl install hello-pg            # from a marketplace
  hearthctl install hello-pg@1.0.0
  hearthctl install oci://registry.example/apps/hello-pg:1.0.0`,
	}, "installed", func(ctx context.Context, cl packageClients) (fileStream, error) {
		s, err := cl.packages.InstallPackage(ctx)
		if err != nil {
			return fileStream{}, err
		}
		return fileStream{
			options: func(o *containerv1.PackageOptions) error {
				return s.Send(&containerv1.InstallPackageRequest{Msg: &containerv1.InstallPackageRequest_Options{Options: o}})
			},
			chunk: func(b []byte) error {
				return s.Send(&containerv1.InstallPackageRequest{Msg: &containerv1.InstallPackageRequest_Chunk{Chunk: b}})
			},
			closeSend: s.CloseSend,
			recv: func() (*containerv1.PackageProgress, *containerv1.PackageResult, error) {
				m, err := s.Recv()
				return m.GetProgress(), m.GetResult(), err
			},
		}, nil
	})
	update := fileCmd(g, &cobra.Command{
		Use:   "update FILE.hpkg | ID[@VERSION] | oci://REF",
		Short: "Update an installed package to the version in FILE; a failure rolls back",
		Long: `Update a package to another version of it (a lower one only when the installed
manifest allows downgrades). The package is stopped, its data copied aside, its images and
manifest swapped, its migrate hook run (with HEARTH_FROM_VERSION and HEARTH_TO_VERSION), and
it is started; update returns once every daemon is ready. Any failure (the hook exits
non-zero, a daemon is not ready in time) rolls back by itself: the old images, manifest and
data, the old version running again; the error says why.`,
		Example: `  hearthctl update hello-pg-2.0.0.hpkg`,
	}, "updated", func(ctx context.Context, cl packageClients) (fileStream, error) {
		s, err := cl.packages.UpdatePackage(ctx)
		if err != nil {
			return fileStream{}, err
		}
		return fileStream{
			options: func(o *containerv1.PackageOptions) error {
				return s.Send(&containerv1.UpdatePackageRequest{Msg: &containerv1.UpdatePackageRequest_Options{Options: o}})
			},
			chunk: func(b []byte) error {
				return s.Send(&containerv1.UpdatePackageRequest{Msg: &containerv1.UpdatePackageRequest_Chunk{Chunk: b}})
			},
			closeSend: s.CloseSend,
			recv: func() (*containerv1.PackageProgress, *containerv1.PackageResult, error) {
				m, err := s.Recv()
				return m.GetProgress(), m.GetResult(), err
			},
		}, nil
	})

	var purge bool
	uninstall := &cobra.Command{
		Use:   "uninstall ID",
		Short: "Remove a package; its data is kept for a reinstall unless --purge",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			resp, err := cl.packages.UninstallPackage(ctx, &containerv1.UninstallPackageRequest{Id: args[0], Purge: purge})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			if purge {
				_, err = fmt.Fprintf(g.stdout, "%s uninstalled; its data is deleted\n", args[0])
			} else {
				_, err = fmt.Fprintf(g.stdout, "%s uninstalled; its data is kept: 'hearthctl install' finds it again, 'hearthctl container rm --purge-volumes %s' deletes it\n", args[0], args[0])
			}
			return err
		}),
	}
	uninstall.Flags().BoolVar(&purge, "purge", false, "also delete the package's data (its volumes)")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List installed packages",
		Args:    cobra.NoArgs,
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, _ []string) error {
			resp, err := cl.packages.ListPackages(ctx, &containerv1.ListPackagesRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, p := range resp.GetPackages() {
				rows = append(rows, []string{p.GetId(), p.GetVersion(), p.GetState(), signer(p), ago(p.GetInstalledAt())})
			}
			return g.table([]string{"PACKAGE", "VERSION", "STATE", "SIGNED", "INSTALLED"}, rows)
		}),
	}

	info := &cobra.Command{
		Use:   "info ID",
		Short: "Show a package: version, signer, images, daemons, volumes and interfaces; and its versions in your marketplaces",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			resp, err := cl.packages.GetPackage(ctx, &containerv1.GetPackageRequest{Id: args[0]})
			if isNotFound(err) {
				return g.marketInfo(ctx, args[0], "", err)
			}
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			if err := g.showPackage(resp); err != nil {
				return err
			}
			return g.marketInfo(ctx, args[0], resp.GetPackage().GetVersion(), nil)
		}),
	}

	status := &cobra.Command{
		Use:   "status ID",
		Short: "Show a package's container, its daemons, the health results and progress its scripts set, and what it waits for",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			return g.packageStatus(ctx, cl, args[0])
		}),
	}

	withUpdateCheck(g, update)
	return append([]*cobra.Command{install, update, uninstall, ls, info, status}, lifecycleCmds(g)...)
}

// fileStream is one call that takes a package file: install, update, restore.
type fileStream struct {
	options   func(*containerv1.PackageOptions) error
	chunk     func([]byte) error
	closeSend func() error
	recv      func() (*containerv1.PackageProgress, *containerv1.PackageResult, error)
}

// fileCmd makes a command that sends FILE on the stream open makes, shows progress, and
// prints the result.
func fileCmd(g *globals, cmd *cobra.Command, verb string, open func(context.Context, packageClients) (fileStream, error)) *cobra.Command {
	var allowUntrusted bool
	var src sourceFlags
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
		file, err := g.packageSource(ctx, cl, args[0], verb == "updated", src)
		if err != nil {
			return err
		}
		fs, err := open(ctx, cl)
		if err != nil {
			return err
		}
		res, err := sendPackage(g, file, allowUntrusted, fs.options, fs.chunk, fs.closeSend, fs.recv)
		if err != nil {
			return err
		}
		return g.showResult(verb, res)
	})
	cmd.Flags().BoolVar(&allowUntrusted, "allow-untrusted", false, "accept a package that is unsigned or signed by a key this host does not trust")
	src.register(cmd)
	return cmd
}

// sendPackage streams a package file and shows progress; it returns the result.
func sendPackage(g *globals, path string, allowUntrusted bool, options func(*containerv1.PackageOptions) error, chunk func([]byte) error,
	closeSend func() error, recv func() (*containerv1.PackageProgress, *containerv1.PackageResult, error)) (*containerv1.PackageResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a package file", path)
	}
	if err := options(&containerv1.PackageOptions{AllowUntrusted: allowUntrusted, Size: fi.Size()}); err != nil {
		return nil, err
	}
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if err := chunk(append([]byte(nil), buf[:n]...)); err != nil {
					sent <- nil // the server stopped reading: its answer says why
					return
				}
			}
			if errors.Is(err, io.EOF) {
				sent <- closeSend()
				return
			}
			if err != nil {
				sent <- err
				return
			}
		}
	}()
	view := newProgressView(g)
	defer view.done()
	for {
		p, res, err := recv()
		if err != nil {
			if serr := <-sent; serr != nil && errors.Is(err, io.EOF) {
				return nil, serr
			}
			return nil, err
		}
		if res != nil {
			return res, nil
		}
		view.update(&containerv1.ImageProgress{Phase: p.GetPhase(), BytesDone: p.GetDone(), BytesTotal: p.GetTotal()})
	}
}

func signer(p *containerv1.Package) string {
	switch {
	case p.GetSigner() == "":
		return "unsigned"
	case p.GetTrusted():
		return "trusted key " + p.GetSigner()
	}
	return "untrusted key " + p.GetSigner()
}

// showResult prints an install's or update's result, its warnings first.
func (g *globals) showResult(verb string, res *containerv1.PackageResult) error {
	for _, w := range res.GetWarnings() {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
	if g.output == "json" {
		return g.printJSON(res)
	}
	p := res.GetPackage()
	where := "it runs in container " + p.GetContainer()
	if st := p.GetState(); st != "" && st != "running" {
		// An install whose dependencies are not there (the warnings say which).
		where = fmt.Sprintf("container %s is %s: it starts once its dependencies run", p.GetContainer(), st)
	}
	_, err := fmt.Fprintf(g.stdout, "%s %s %s (%s); %s\n", p.GetId(), p.GetVersion(), verb, signer(p), where)
	return err
}

func (g *globals) showPackage(resp *containerv1.GetPackageResponse) error {
	p := resp.GetPackage()
	kv := []string{"package", p.GetId(), "version", p.GetVersion(), "state", p.GetState(), "signed", signer(p), "installed", ago(p.GetInstalledAt())}
	if p.GetUpdatedAt() != nil {
		kv = append(kv, "updated", ago(p.GetUpdatedAt()))
	}
	mf, err := manifest.Parse(resp.GetManifest())
	if err == nil {
		kv = append(kv, "daemons", strings.Join(sortedNames(mf.Daemons), ", "), "volumes", strings.Join(mf.Volumes, ", "))
		var ifs []string
		for _, n := range sortedNames(mf.Interfaces) {
			it := mf.Interfaces[n]
			ifs = append(ifs, fmt.Sprintf("%s (%s:%d %s)", n, it.Daemon, it.Port, strings.Join(it.Expose, "+")))
		}
		if len(ifs) > 0 {
			kv = append(kv, "interfaces", strings.Join(ifs, ", "))
		}
	}
	if err := g.fields(kv...); err != nil {
		return err
	}
	var rows [][]string
	for _, n := range sortedNames(p.GetImages()) {
		rows = append(rows, []string{n, short(p.GetImages()[n])})
	}
	fmt.Fprintln(g.stdout)
	if err := g.table([]string{"IMAGE", "DIGEST"}, rows); err != nil {
		return err
	}
	if l := strings.TrimSpace(resp.GetLicense()); l != "" {
		fmt.Fprintf(g.stdout, "\nLICENSE: %s\n", strings.SplitN(l, "\n", 2)[0])
	}
	if r := strings.TrimSpace(resp.GetReadme()); r != "" {
		fmt.Fprintf(g.stdout, "\n%s\n", r)
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
