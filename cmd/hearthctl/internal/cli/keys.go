package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"hearth.dev/internal/hpkg"
)

// keysCmd is the signing keys group. generate is the developer's side and needs no
// daemon; trust, untrust and ls change the host's trust store, which containerd-lite
// keeps (hpkg.TrustStore), and are added with its package service.
func keysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keys",
		Aliases: []string{"key"},
		Short:   "Signing keys: make one to sign your packages",
		Long: `Packages are signed with ed25519 keys. A developer makes a key pair with
'hearthctl keys generate', signs packages with the private key (hearthctl pack --key),
and gives the public key (.pub) to the hosts that install them.`,
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
	cmd.AddCommand(gen)
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
