package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/market"
	"hearth.dev/internal/ocipkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// sourceFlags choose where install and update take a package from.
type sourceFlags struct {
	insecure bool   // plain HTTP to an OCI registry
	market   string // only this marketplace
}

func (s *sourceFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&s.insecure, "insecure", false, "allow plain HTTP to the registry of an oci:// reference (for a registry on loopback)")
	cmd.Flags().StringVar(&s.market, "market", "", "take ID from this marketplace only (default: the one with the highest version)")
}

// packageSource turns install's or update's argument into a package file to send: a
// file that exists is itself; oci://REF is fetched from a registry; ID[@VERSION] is
// looked up in the marketplaces (for update without @VERSION: the highest version above
// the installed one), downloaded and checked against the signed index. Nothing is sent
// to the host before every check passed.
func (g *globals) packageSource(ctx context.Context, cl packageClients, arg string, update bool, src sourceFlags) (string, error) {
	if fi, err := os.Stat(arg); err == nil && (!fi.IsDir() || strings.ContainsRune(arg, os.PathSeparator)) {
		return arg, nil // a file (a directory named like a package id is not one)
	}
	if strings.HasPrefix(arg, ocipkg.Scheme) {
		return g.fetchOCI(ctx, arg, src.insecure)
	}
	if strings.HasSuffix(arg, ".hpkg") || strings.ContainsRune(arg, os.PathSeparator) {
		// Meant as a file.
		_, err := os.Stat(arg)
		return "", err
	}
	id, version, _ := strings.Cut(arg, "@")
	installed := ""
	if update && version == "" {
		resp, err := cl.packages.GetPackage(ctx, &containerv1.GetPackageRequest{Id: id})
		if err != nil {
			return "", err
		}
		installed = resp.GetPackage().GetVersion()
	}
	f, err := g.findInMarkets(ctx, id, src.market)
	if err != nil {
		return "", err
	}
	var v market.Version
	if installed != "" {
		var ok bool
		if v, ok = f.pkg.Newer(installed); !ok {
			return "", fmt.Errorf("%s %s is the newest version marketplace %s has: %w", id, installed, f.m.Name, errdefs.ErrFailedPrecondition)
		}
	} else if v, err = f.pkg.Choose(version); err != nil {
		return "", fmt.Errorf("marketplace %s: %w", f.m.Name, err)
	}
	return g.download(ctx, f, v)
}

// found is a package in a marketplace's checked index.
type found struct {
	m        market.Marketplace
	indexURL string
	pkg      *market.Package
}

// marketIndex is one marketplace's index, or why it could not be read.
type marketIndex struct {
	m        market.Marketplace
	ix       *market.Index
	indexURL string
	err      error
}

func httpClient() *http.Client { return &http.Client{Transport: http.DefaultTransport} }

// marketList loads the user's marketplaces.
func marketList() (*market.List, error) {
	p, err := market.DefaultListPath()
	if err != nil {
		return nil, err
	}
	return market.LoadList(p)
}

// indexes fetches and checks every marketplace's index (only, when set).
func indexes(ctx context.Context, only string) ([]marketIndex, error) {
	l, err := marketList()
	if err != nil {
		return nil, err
	}
	if only != "" {
		m, ok := l.Get(only)
		if !ok {
			return nil, fmt.Errorf("no marketplace %s (hearthctl market ls lists them): %w", only, errdefs.ErrNotFound)
		}
		l.Marketplaces = []market.Marketplace{m}
	}
	hc := httpClient()
	var out []marketIndex
	for _, m := range l.Marketplaces {
		ix, iu, err := market.Fetch(ctx, hc, m)
		out = append(out, marketIndex{m: m, ix: ix, indexURL: iu, err: err})
	}
	return out, nil
}

// warnUnsigned says on stderr which marketplaces' indexes were read unsigned.
func (g *globals) warnIndexes(ixs []marketIndex) {
	for _, mi := range ixs {
		if mi.err == nil && mi.m.AllowUnsigned {
			fmt.Fprintf(g.stderr, "warning: marketplace %s was added with --allow-unsigned: its index is not checked (packages still are, by this host's trusted keys)\n", mi.m.Name)
		}
	}
}

// findInMarkets finds id: in the marketplace whose highest version of it is highest. A
// marketplace whose index cannot be read or is refused is an error when no other
// marketplace has the package, a warning otherwise.
func (g *globals) findInMarkets(ctx context.Context, id, only string) (*found, error) {
	ixs, err := indexes(ctx, only)
	if err != nil {
		return nil, err
	}
	if len(ixs) == 0 {
		return nil, fmt.Errorf("%s is not a file, and no marketplace is added to look it up in (hearthctl market add NAME URL --key FILE.pub): %w", id, errdefs.ErrNotFound)
	}
	g.warnIndexes(ixs)
	var best *found
	var bestV market.Version
	var errs []error
	for _, mi := range ixs {
		if mi.err != nil {
			errs = append(errs, mi.err)
			continue
		}
		p, ok := mi.ix.Lookup(id)
		if !ok {
			continue
		}
		v, err := p.Choose("")
		if err != nil {
			continue
		}
		if best == nil || newer(v.Version, bestV.Version) {
			best, bestV = &found{m: mi.m, indexURL: mi.indexURL, pkg: p}, v
		}
	}
	if best == nil {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s is not a file, and no marketplace lists a package %s (hearthctl search WORD looks for one): %w", id, id, errdefs.ErrNotFound)
	}
	for _, e := range errs {
		fmt.Fprintf(g.stderr, "warning: %v\n", e)
	}
	return best, nil
}

// download fetches version v of f's package into the cache, with a progress bar.
func (g *globals) download(ctx context.Context, f *found, v market.Version) (string, error) {
	u, err := market.Resolve(f.indexURL, v.URL)
	if err != nil {
		return "", err
	}
	dir, err := market.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	view := newProgressView(g)
	path, err := market.Download(ctx, httpClient(), u, v, dir, func(done, total int64) {
		view.throttled(&containerv1.ImageProgress{Phase: "downloading", BytesDone: done, BytesTotal: total})
	})
	view.done()
	if err != nil {
		return "", fmt.Errorf("%s %s from marketplace %s: %w", f.pkg.ID, v.Version, f.m.Name, err)
	}
	if g.output != "json" {
		fmt.Fprintf(g.stderr, "%s %s from marketplace %s: %s, sha256 %s as its signed index says\n", f.pkg.ID, v.Version, f.m.Name, human(v.Size), v.SHA256[:12])
	}
	return path, nil
}

// fetchOCI fetches a package artifact into the cache.
func (g *globals) fetchOCI(ctx context.Context, ref string, insecure bool) (string, error) {
	dir, err := market.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	view := newProgressView(g)
	f, err := ocipkg.Fetch(ctx, ref, dir, ocipkg.Options{Insecure: insecure, Progress: func(done, total int64) {
		view.throttled(&containerv1.ImageProgress{Phase: "downloading", BytesDone: done, BytesTotal: total})
	}})
	view.done()
	if err != nil {
		return "", err
	}
	if g.output != "json" {
		fmt.Fprintf(g.stderr, "%s %s from %s: layer %s checked\n", f.ID, f.Version, strings.TrimPrefix(ref, ocipkg.Scheme), f.Digest)
	}
	return f.Path, nil
}

// isNotFound says whether a daemon answered NotFound.
func isNotFound(err error) bool {
	return errors.Is(errdefs.FromGRPC(err), errdefs.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}
