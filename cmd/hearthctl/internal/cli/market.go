package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
	"hearth.dev/internal/market"
	"hearth.dev/internal/semver"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// marketCmd is the marketplaces group. The list of marketplaces is the user's own
// ($XDG_CONFIG_HOME/hearth/markets.json): hearthctl reads the indexes and downloads
// packages itself; the host verifies each package's signature as for any file.
func marketCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "market",
		Aliases: []string{"markets", "marketplace"},
		Short:   "Marketplaces: add the ones you use; build one from your packages",
		Long: `A marketplace is a static directory any web server can host: index.json, signed by the
marketplace's key in index.json.sig, the packages' icons, and usually the .hpkg files.
'hearthctl search', 'info', 'install ID' and 'update --check' read the marketplaces you
add here. The list is yours (` + "`$XDG_CONFIG_HOME/hearth/markets.json`" + `, mode 0600); each
index is checked against the key you add it with. See docs/marketplace.md.`,
	}
	var keyFile string
	var allowUnsigned bool
	add := &cobra.Command{
		Use:   "add NAME URL",
		Short: "Add a marketplace: its index is read and its signature checked now",
		Long: `Add a marketplace. --key pins the public key (a 'hearthctl keys generate' .pub file, from
the marketplace's publisher) that must sign its index: an index signed otherwise, altered, or
unsigned is refused from then on. A marketplace without a signing key is added only with
--allow-unsigned, and every command that reads it says so (the packages themselves are
still verified by the host's trusted keys when they install).`,
		Example: `  hearthctl market add example https://apps.example/hearth --key example-market.pub
  hearthctl market add lan http://192.168.1.10/market --allow-unsigned`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := market.Marketplace{Name: args[0], URL: args[1], AllowUnsigned: allowUnsigned}
			if keyFile != "" {
				k, err := hpkg.ReadPublicKey(keyFile)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				m.Key = k.String()
			}
			l, err := marketList()
			if err != nil {
				return err
			}
			if err := l.Add(m); err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			ix, _, err := market.Fetch(ctx, httpClient(), m)
			if err != nil {
				return fmt.Errorf("%w; nothing was added", err)
			}
			if err := l.Save(); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printAny(map[string]any{"name": m.Name, "url": m.URL, "key_id": keyID(m), "index_name": ix.Name, "packages": len(ix.Packages)})
			}
			how := "its index is signed by key " + keyID(m)
			if m.AllowUnsigned {
				how = "its index is NOT checked (--allow-unsigned); packages are still verified by this host's trusted keys"
			}
			_, err = fmt.Fprintf(g.stdout, "marketplace %s added (%q, %d packages); %s\n", m.Name, ix.Name, len(ix.Packages), how)
			return err
		},
	}
	add.Flags().StringVar(&keyFile, "key", "", "the public key (.pub) that signs the marketplace's index")
	add.Flags().BoolVar(&allowUnsigned, "allow-unsigned", false, "add a marketplace whose index is not signed (or whose key you do not have)")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the marketplaces added",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := marketList()
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printAny(l)
			}
			var rows [][]string
			for _, m := range l.Marketplaces {
				rows = append(rows, []string{m.Name, m.URL, keyID(m)})
			}
			return g.table([]string{"NAME", "URL", "INDEX SIGNED BY"}, rows)
		},
	}

	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a marketplace (installed packages stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := marketList()
			if err != nil {
				return err
			}
			if err := l.Remove(args[0]); err != nil {
				return err
			}
			if err := l.Save(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "marketplace %s removed\n", args[0])
			return err
		},
	}

	var signKey, name string
	index := &cobra.Command{
		Use:   "index DIR",
		Short: "Build a marketplace from the .hpkg files in DIR: index.json, index.json.sig, icons/",
		Long: `Read every .hpkg file under DIR (each is verified whole, as a host would, without
installing it) and write DIR/index.json, its signature DIR/index.json.sig by --key, and the
packages' icons under DIR/icons. Titles and descriptions come from each package's
README.md (its '# ' heading and first paragraph; the newest version's), release notes from
a '## Release notes' section. Then copy DIR to any web server.`,
		Example: `  hearthctl keys generate --out market
  hearthctl market index ./public --key market.key --name "Example apps"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if signKey == "" {
				return fmt.Errorf("give the marketplace's signing key: --key FILE.key (hearthctl keys generate makes one): %w", errdefs.ErrInvalidArgument)
			}
			priv, err := hpkg.ReadPrivateKey(signKey)
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			ix, err := market.Build(ctx, args[0], priv, market.BuildOptions{Name: name, Log: func(file string, in *market.Inspected) {
				if g.output != "json" {
					fmt.Fprintf(g.stderr, "%s: %s %s\n", file, in.ID, in.Version)
				}
			}})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printAny(ix)
			}
			n := 0
			for _, p := range ix.Packages {
				n += len(p.Versions)
			}
			_, err = fmt.Fprintf(g.stdout, "marketplace %q: %d packages, %d versions; index signed by key %s\n", ix.Name, len(ix.Packages), n, hpkg.KeyID(priv.Public().(ed25519.PublicKey)))
			return err
		},
	}
	index.Flags().StringVar(&signKey, "key", "", "the marketplace's private key (hearthctl keys generate)")
	index.Flags().StringVar(&name, "name", "", "the marketplace's name (default: DIR's name)")
	cmd.AddCommand(add, ls, rm, index)
	return cmd
}

func keyID(m market.Marketplace) string {
	if m.AllowUnsigned {
		return "(unsigned allowed)"
	}
	k, err := m.PublicKey()
	if err != nil {
		return "(bad key)"
	}
	return k.ID()
}

// printAny writes a Go value as indented JSON (for what is not a proto message).
func (g *globals) printAny(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// newer says whether version a is above b.
func newer(a, b string) bool {
	c, err := semver.Compare(a, b)
	return err == nil && c > 0
}

// searchHit is one package a search found, as -o json prints it.
type searchHit struct {
	Marketplace string           `json:"marketplace"`
	ID          string           `json:"id"`
	Title       string           `json:"title"`
	Description string           `json:"description,omitempty"`
	Icon        string           `json:"icon,omitempty"`
	Latest      string           `json:"latest"`
	Versions    []market.Version `json:"versions"`
}

func hit(mi marketIndex, p *market.Package) searchHit {
	h := searchHit{Marketplace: mi.m.Name, ID: p.ID, Title: p.Title, Description: p.Description, Versions: p.Sorted()}
	if v, err := p.Choose(""); err == nil {
		h.Latest = v.Version
	}
	if p.Icon != "" {
		h.Icon, _ = market.Resolve(mi.indexURL, p.Icon)
	}
	for i, v := range h.Versions {
		h.Versions[i].URL, _ = market.Resolve(mi.indexURL, v.URL)
	}
	return h
}

// searchCmd looks for packages in the marketplaces.
func searchCmd(g *globals) *cobra.Command {
	var only string
	cmd := &cobra.Command{
		Use:   "search [WORD]",
		Short: "Find packages in your marketplaces by id, title or description (all of them without WORD)",
		Example: `  hearthctl search photo
  hearthctl search -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			word := ""
			if len(args) == 1 {
				word = args[0]
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			ixs, err := indexes(ctx, only)
			if err != nil {
				return err
			}
			if len(ixs) == 0 {
				return fmt.Errorf("no marketplace is added (hearthctl market add NAME URL --key FILE.pub): %w", errdefs.ErrNotFound)
			}
			g.warnIndexes(ixs)
			hits := []searchHit{}
			failed := 0
			for _, mi := range ixs {
				if mi.err != nil {
					failed++
					fmt.Fprintf(g.stderr, "warning: %v\n", mi.err)
					continue
				}
				for i := range mi.ix.Packages {
					if p := &mi.ix.Packages[i]; p.Matches(word) {
						hits = append(hits, hit(mi, p))
					}
				}
			}
			if failed == len(ixs) {
				return fmt.Errorf("no marketplace could be read (see the warnings above): %w", errdefs.ErrUnavailable)
			}
			if g.output == "json" {
				return g.printAny(hits)
			}
			var rows [][]string
			for _, h := range hits {
				rows = append(rows, []string{h.ID, h.Latest, h.Title, h.Marketplace, clipText(h.Description, 60)})
			}
			return g.table([]string{"PACKAGE", "LATEST", "TITLE", "MARKETPLACE", "DESCRIPTION"}, rows)
		},
	}
	cmd.Flags().StringVar(&only, "market", "", "search this marketplace only")
	return cmd
}

func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// marketInfo shows what the marketplaces say about id: each one that lists it, with its
// versions. installed is the installed version ("" when not installed); notFound is the
// host's answer for a package that is not installed, returned when no marketplace has it.
func (g *globals) marketInfo(ctx context.Context, id, installed string, notFound error) error {
	if notFound == nil {
		// The package is shown already: the marketplaces only add to it, briefly.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	ixs, err := indexes(ctx, "")
	if err != nil {
		if notFound == nil {
			fmt.Fprintf(g.stderr, "warning: %v\n", err)
			return nil
		}
		return err
	}
	var hits []searchHit
	for _, mi := range ixs {
		if mi.err != nil {
			fmt.Fprintf(g.stderr, "warning: %v\n", mi.err)
			continue
		}
		if p, ok := mi.ix.Lookup(id); ok {
			hits = append(hits, hit(mi, p))
		}
	}
	if len(hits) == 0 {
		return notFound
	}
	g.warnIndexes(ixs)
	if notFound != nil && g.output == "json" {
		return g.printAny(map[string]any{"id": id, "installed": false, "marketplaces": hits})
	}
	for _, h := range hits {
		fmt.Fprintln(g.stdout)
		kv := []string{"marketplace", h.Marketplace, "title", h.Title}
		if notFound != nil {
			kv = append([]string{"package", id, "installed", "no"}, kv...)
		}
		if h.Description != "" {
			kv = append(kv, "description", h.Description)
		}
		if installed != "" {
			if v, ok := (&market.Package{ID: id, Versions: h.Versions}).Newer(installed); ok {
				kv = append(kv, "update", fmt.Sprintf("%s (hearthctl update %s)", v.Version, id))
			}
		}
		if err := g.fields(kv...); err != nil {
			return err
		}
		var rows [][]string
		for _, v := range h.Versions {
			rows = append(rows, []string{v.Version, human(v.Size), v.KeyID, firstLine(v.Notes)})
		}
		fmt.Fprintln(g.stdout)
		if err := g.table([]string{"VERSION", "SIZE", "SIGNED BY", "NOTES"}, rows); err != nil {
			return err
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return clipText(strings.TrimLeft(s, "-* "), 60)
}

// withUpdateCheck adds --check to update: list the installed packages a marketplace has
// a newer version of (and take no argument).
func withUpdateCheck(g *globals, update *cobra.Command) {
	var check bool
	run := update.RunE
	update.Use = "update FILE.hpkg | ID[@VERSION] | oci://REF | --check"
	update.Example += `
  hearthctl update --check
  hearthctl update hello-pg            # the newest version in its marketplace
  hearthctl update hello-pg@2.0.0`
	update.Args = cobra.MaximumNArgs(1)
	update.RunE = func(cmd *cobra.Command, args []string) error {
		if !check {
			if len(args) != 1 {
				return fmt.Errorf("give the package: a file, ID[@VERSION] or oci://REF (or --check): %w", errdefs.ErrInvalidArgument)
			}
			return run(cmd, args)
		}
		if len(args) != 0 {
			return fmt.Errorf("--check takes no argument: it checks every installed package: %w", errdefs.ErrInvalidArgument)
		}
		return call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, _ []string) error {
			return g.updateCheck(ctx, cl)
		})(cmd, args)
	}
	update.Flags().BoolVar(&check, "check", false, "list the installed packages that have a newer version in a marketplace; change nothing")
}

// available is an update found by update --check.
type available struct {
	ID          string `json:"id"`
	Installed   string `json:"installed"`
	Available   string `json:"available"`
	Marketplace string `json:"marketplace"`
	Notes       string `json:"notes,omitempty"`
}

func (g *globals) updateCheck(ctx context.Context, cl packageClients) error {
	resp, err := cl.packages.ListPackages(ctx, &containerv1.ListPackagesRequest{})
	if err != nil {
		return err
	}
	ixs, err := indexes(ctx, "")
	if err != nil {
		return err
	}
	if len(ixs) == 0 {
		return fmt.Errorf("no marketplace is added to check for updates (hearthctl market add NAME URL --key FILE.pub): %w", errdefs.ErrNotFound)
	}
	g.warnIndexes(ixs)
	for _, mi := range ixs {
		if mi.err != nil {
			fmt.Fprintf(g.stderr, "warning: %v\n", mi.err)
		}
	}
	out := []available{}
	for _, p := range resp.GetPackages() {
		var best *available
		for _, mi := range ixs {
			if mi.err != nil {
				continue
			}
			mp, ok := mi.ix.Lookup(p.GetId())
			if !ok {
				continue
			}
			if v, ok := mp.Newer(p.GetVersion()); ok && (best == nil || newer(v.Version, best.Available)) {
				best = &available{ID: p.GetId(), Installed: p.GetVersion(), Available: v.Version, Marketplace: mi.m.Name, Notes: v.Notes}
			}
		}
		if best != nil {
			out = append(out, *best)
		}
	}
	if g.output == "json" {
		return g.printAny(out)
	}
	if len(out) == 0 {
		_, err := fmt.Fprintf(g.stdout, "all %d installed packages are at the newest version their marketplaces have\n", len(resp.GetPackages()))
		return err
	}
	var rows [][]string
	for _, a := range out {
		rows = append(rows, []string{a.ID, a.Installed, a.Available, a.Marketplace, firstLine(a.Notes)})
	}
	return g.table([]string{"PACKAGE", "INSTALLED", "AVAILABLE", "MARKETPLACE", "NOTES"}, rows)
}
