package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// keysCmd is the signing keys group. generate is the developer's side and needs no
// daemon; trust, untrust and ls change the host's trust store, which containerd-lite
// keeps.
func keysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keys",
		Aliases: []string{"key"},
		Short:   "Signing keys: make one to sign your packages; choose whose packages this host trusts",
		Long: `Packages are signed with ed25519 keys. A developer makes a key pair with
'hearthctl keys generate', signs packages with the private key (hearthctl pack --key),
and gives the public key (.pub) to the hosts that install them. A host installs a package
signed by a key it trusts ('hearthctl keys trust FILE.pub'); any other package only with
'hearthctl install --allow-untrusted'.`,
	}
	var prefix, comment string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Make a signing key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub",
		Example: `  hearthctl keys generate --out ~/hearth-dev
  hearthctl keys generate --out release --comment "Example Corp releases"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if comment == "" {
				comment = defaultComment()
			}
			priv, err := hpkg.GenerateKey()
			if err != nil {
				return err
			}
			pub, err := hpkg.WriteKeyPair(prefix, priv, comment)
			if err != nil {
				return err
			}
			if g.output == "json" {
				b, _ := json.MarshalIndent(map[string]string{
					"private_key": prefix + ".key", "public_key": prefix + ".pub", "key_id": pub.ID(), "line": pub.String(),
				}, "", "  ")
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			_, err = fmt.Fprintf(g.stdout, `key %s
  %s.key  the private key: keep it secret, sign with it (hearthctl pack DIR --key %s.key)
  %s.pub  the public key: hosts that trust it install your packages
`, pub.ID(), prefix, prefix, prefix)
			return err
		},
	}
	gen.Flags().StringVar(&prefix, "out", "hearth-signing", "write PREFIX.key and PREFIX.pub")
	gen.Flags().StringVar(&comment, "comment", "", "who the key belongs to (default user@host)")
	trust := &cobra.Command{
		Use:     "trust FILE.pub",
		Short:   "Trust a public key: packages it signs install on this host",
		Example: `  hearthctl keys trust example-corp.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewKeyServiceClient, func(ctx context.Context, cl containerv1.KeyServiceClient, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			resp, err := cl.TrustKey(ctx, &containerv1.TrustKeyRequest{Key: string(data)})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			_, err = fmt.Fprintf(g.stdout, "trusted key %s (%s)\n", resp.GetKey().GetId(), resp.GetKey().GetComment())
			return err
		}),
	}
	untrust := &cobra.Command{
		Use:   "untrust ID",
		Short: "Stop trusting a key (installed packages stay; new ones it signs need --allow-untrusted)",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewKeyServiceClient, func(ctx context.Context, cl containerv1.KeyServiceClient, args []string) error {
			resp, err := cl.UntrustKey(ctx, &containerv1.UntrustKeyRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			_, err = fmt.Fprintf(g.stdout, "key %s is no longer trusted\n", args[0])
			return err
		}),
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the keys this host trusts",
		Args:  cobra.NoArgs,
		RunE: call(g, "containerd-lite", containerv1.NewKeyServiceClient, func(ctx context.Context, cl containerv1.KeyServiceClient, _ []string) error {
			resp, err := cl.ListKeys(ctx, &containerv1.ListKeysRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, k := range resp.GetKeys() {
				rows = append(rows, []string{k.GetId(), k.GetComment()})
			}
			return g.table([]string{"KEY", "COMMENT"}, rows)
		}),
	}
	cmd.AddCommand(gen, trust, untrust, ls)
	return cmd
}

func defaultComment() string {
	name := "hearth"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
