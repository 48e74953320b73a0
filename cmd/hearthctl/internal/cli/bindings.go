package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// where reads the --lan, --tor and --domain flags: exactly one.
func where(lan, tor bool, domain string) (netv1.Exposure, error) {
	n := 0
	ex := netv1.Exposure_EXPOSURE_UNSPECIFIED
	if lan {
		n, ex = n+1, netv1.Exposure_EXPOSURE_LAN
	}
	if tor {
		n, ex = n+1, netv1.Exposure_EXPOSURE_TOR
	}
	if domain != "" {
		n, ex = n+1, netv1.Exposure_EXPOSURE_DOMAIN
	}
	if n != 1 {
		return ex, fmt.Errorf("say where, once: --lan, --tor or --domain NAME")
	}
	return ex, nil
}

func bindingCmds(g *globals) []*cobra.Command {
	var lan, tor, passthrough bool
	var domain string
	bind := &cobra.Command{
		Use:   "bind ID INTERFACE (--lan | --tor | --domain NAME)",
		Short: "Expose a package's interface on the LAN, on a public domain, or over Tor",
		Long: `Expose one of a package's interfaces where its manifest allows (its expose list). On the
LAN, an HTTP interface answers at https://ID.local with a certificate from this host's CA
(trust it on your devices: hearthctl cert root); a TCP interface gets a port of the host. On
a domain it answers at https://NAME with a certificate from the ACME CA (the domain must point
at this host, ports 80 and 443 reachable). Over Tor it gets an onion address. An install
binds what the manifest exposes on lan and tor by itself.`,
		Example: `  hearthctl bind hello-pg web --domain notes.example.org
  hearthctl bind hello-pg web --tor
  hearthctl addresses hello-pg`,
		Args: cobra.ExactArgs(2),
		RunE: call(g, "containerd-lite", containerv1.NewPackageServiceClient, func(ctx context.Context, cl containerv1.PackageServiceClient, args []string) error {
			ex, err := where(lan, tor, domain)
			if err != nil {
				return err
			}
			resp, err := cl.BindPackage(ctx, &containerv1.BindPackageRequest{Id: args[0], Interface: args[1], Exposure: ex, Domain: domain, Passthrough: passthrough})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			return g.showBindings([]*netv1.Binding{resp.GetBinding()})
		}),
	}
	bind.Flags().BoolVar(&lan, "lan", false, "on the LAN (ID.local)")
	bind.Flags().BoolVar(&tor, "tor", false, "as a Tor onion service")
	bind.Flags().StringVar(&domain, "domain", "", "on this public domain, with an ACME certificate")
	bind.Flags().BoolVar(&passthrough, "passthrough", false, "let TLS pass through to the package (it terminates TLS itself)")

	var ulan, utor bool
	var udomain string
	unbind := &cobra.Command{
		Use:   "unbind ID INTERFACE (--lan | --tor | --domain NAME)",
		Short: "Stop exposing a package's interface there",
		Long: `Stop exposing one of a package's interfaces on the LAN, over Tor, or on a domain. Every
firewall rule, route, name and onion service the binding made goes with it. An onion
address's key is kept: binding the interface over Tor again brings back the same address
(an uninstall forgets it).`,
		Example: `  hearthctl unbind hello-pg web --domain notes.example.org
  hearthctl unbind hello-pg web --tor`,
		Args: cobra.ExactArgs(2),
		RunE: call(g, "containerd-lite", containerv1.NewPackageServiceClient, func(ctx context.Context, cl containerv1.PackageServiceClient, args []string) error {
			ex, err := where(ulan, utor, udomain)
			if err != nil {
				return err
			}
			resp, err := cl.UnbindPackage(ctx, &containerv1.UnbindPackageRequest{Id: args[0], Interface: args[1], Exposure: ex, Domain: udomain})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			_, err = fmt.Fprintf(g.stdout, "%s/%s unbound\n", args[0], args[1])
			return err
		}),
	}
	unbind.Flags().BoolVar(&ulan, "lan", false, "the LAN binding")
	unbind.Flags().BoolVar(&utor, "tor", false, "the onion service")
	unbind.Flags().StringVar(&udomain, "domain", "", "the binding of this domain")

	addresses := &cobra.Command{
		Use:   "addresses ID",
		Short: "Show where a package answers: LAN names and ports, domains, onion addresses",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewPackageServiceClient, func(ctx context.Context, cl containerv1.PackageServiceClient, args []string) error {
			resp, err := cl.ListAddresses(ctx, &containerv1.ListAddressesRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			return g.showBindings(resp.GetBindings())
		}),
	}
	return []*cobra.Command{bind, unbind, addresses}
}

func (g *globals) showBindings(bs []*netv1.Binding) error {
	var rows [][]string
	for _, b := range bs {
		ex := strings.ToLower(strings.TrimPrefix(b.GetExposure().String(), "EXPOSURE_"))
		status := b.GetStatus()
		if status == "" {
			status = "ok"
		}
		rows = append(rows, []string{b.GetInterface(), ex, b.GetAddress(), fmt.Sprintf(":%d", b.GetPort()), status})
	}
	return g.table([]string{"INTERFACE", "WHERE", "ADDRESS", "PORT", "STATUS"}, rows)
}
