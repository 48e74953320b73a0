package cli

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	certv1 "hearth.dev/proto/hearth/cert/v1"
)

func certCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cert",
		Aliases: []string{"certs", "certificate"},
		Short:   "Issue, renew and inspect certificates; export the local root CA",
		Long: `certd keeps two kinds of certificates: local ones, signed by Hearth's own root CA for
.local names, the internal container domain and private addresses; and ACME ones (Let's
Encrypt or another ACME CA) for public domains. Both are renewed on their own.`,
	}
	withCert := func(f func(ctx context.Context, cl certv1.CertificateServiceClient, args []string) error) func(*cobra.Command, []string) error {
		return call(g, "certd", certv1.NewCertificateServiceClient, f)
	}

	var owner string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List certificates",
		Args:    cobra.NoArgs,
		RunE: withCert(func(ctx context.Context, cl certv1.CertificateServiceClient, _ []string) error {
			resp, err := cl.ListCertificates(ctx, &certv1.ListCertificatesRequest{Owner: owner})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, c := range resp.GetCertificates() {
				rows = append(rows, []string{c.GetId(), issuerName(c.GetIssuer()), dash(c.GetOwner()), certNames(c), until(c.GetNotAfter()), until(c.GetRenewAt())})
			}
			return g.table([]string{"ID", "ISSUER", "OWNER", "NAMES", "EXPIRES", "RENEWS"}, rows)
		}),
	}
	ls.Flags().StringVar(&owner, "owner", "", "only this package's certificates")

	var showPEM, showKey bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a certificate; --pem prints its chain (and --key its private key)",
		Args:  cobra.ExactArgs(1),
		RunE: withCert(func(ctx context.Context, cl certv1.CertificateServiceClient, args []string) error {
			resp, err := cl.GetCertificate(ctx, &certv1.GetCertificateRequest{Id: args[0], IncludeKey: showKey})
			if err != nil {
				return err
			}
			c := resp.GetCertificate()
			switch {
			case g.output == "json":
				return g.printJSON(resp)
			case showPEM || showKey:
				_, err := g.stdout.Write(append(c.GetChainPem(), c.GetKeyPem()...))
				return err
			}
			return g.showCert(c)
		}),
	}
	show.Flags().BoolVar(&showPEM, "pem", false, "print the chain as PEM")
	show.Flags().BoolVar(&showKey, "key", false, "print the private key too (PEM)")

	var acmeIssuer bool
	var challenge, certOut, keyOut string
	issue := &cobra.Command{
		Use:   "issue NAME...",
		Short: "Issue a certificate for DNS names and addresses (or return the cached one)",
		Long: `Issue a certificate for the names: DNS names and IP addresses, in any order. The local CA
certifies only .local names, the internal domain and private addresses; --acme asks the ACME CA
certd is configured with, for public names. A certificate for the same names is cached and
returned until it is due for renewal.`,
		Example: `  hearthctl cert issue nas.local 192.168.1.10 --cert-out nas.crt --key-out nas.key
  hearthctl cert issue cloud.example.org --acme --challenge http-01
  hearthctl cert issue app.nextcloud.local --owner nextcloud`,
		Args: cobra.MinimumNArgs(1),
		RunE: withCert(func(ctx context.Context, cl certv1.CertificateServiceClient, args []string) error {
			req := &certv1.IssueCertificateRequest{Owner: owner, Issuer: certv1.Issuer_ISSUER_LOCAL}
			for _, a := range args {
				if _, err := netip.ParseAddr(a); err == nil {
					req.IpAddresses = append(req.IpAddresses, a)
				} else {
					req.DnsNames = append(req.DnsNames, a)
				}
			}
			if acmeIssuer {
				req.Issuer = certv1.Issuer_ISSUER_ACME
			}
			if challenge != "" {
				ch, ok := challengeFlags[challenge]
				if !ok {
					return fmt.Errorf("--challenge %q: use http-01, tls-alpn-01 or dns-01", challenge)
				}
				req.Challenge = ch
			}
			resp, err := cl.IssueCertificate(ctx, req)
			if err != nil {
				return err
			}
			return g.certResult(resp.GetCertificate(), resp, certOut, keyOut)
		}),
	}
	issue.Flags().BoolVar(&acmeIssuer, "acme", false, "ask the ACME CA (public names) instead of the local CA")
	issue.Flags().StringVar(&challenge, "challenge", "", "ACME challenge: http-01, tls-alpn-01 or dns-01 (default: any certd answers)")
	issue.Flags().StringVar(&owner, "owner", "", "issue for this package: only its own names are allowed")
	issue.Flags().StringVar(&certOut, "cert-out", "", "write the chain (PEM) to this file")
	issue.Flags().StringVar(&keyOut, "key-out", "", "write the private key (PEM, mode 0600) to this file")

	renew := &cobra.Command{
		Use:   "renew ID",
		Short: "Renew a certificate now",
		Args:  cobra.ExactArgs(1),
		RunE: withCert(func(ctx context.Context, cl certv1.CertificateServiceClient, args []string) error {
			resp, err := cl.RenewCertificate(ctx, &certv1.RenewCertificateRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return g.certResult(resp.GetCertificate(), resp, certOut, keyOut)
		}),
	}
	renew.Flags().StringVar(&certOut, "cert-out", "", "write the chain (PEM) to this file")
	renew.Flags().StringVar(&keyOut, "key-out", "", "write the private key (PEM, mode 0600) to this file")

	cmd.AddCommand(ls, show, issue, renew, rootCmd(g, withCert), watchCmd(g))
	return cmd
}

var challengeFlags = map[string]certv1.Challenge{
	"http-01":     certv1.Challenge_CHALLENGE_HTTP_01,
	"tls-alpn-01": certv1.Challenge_CHALLENGE_TLS_ALPN_01,
	"dns-01":      certv1.Challenge_CHALLENGE_DNS_01,
}

func rootCmd(g *globals, withCert func(func(context.Context, certv1.CertificateServiceClient, []string) error) func(*cobra.Command, []string) error) *cobra.Command {
	var format, out string
	var all, rotate bool
	var overlap time.Duration
	cmd := &cobra.Command{
		Use:   "root",
		Short: "Export the local root CA (PEM or DER) with how to trust it; --rotate makes a new one",
		Long: `Write the local root CA certificate, to trust on your devices. It is name-constrained: a
device that trusts it accepts it only for .local names, Hearth's internal domain and private
addresses. Without --out the certificate goes to stdout and the instructions to stderr.

--rotate makes a new root and intermediate: both roots are published (--all) until the overlap
ends, and every local certificate is re-issued at once under the new intermediate.`,
		Example: `  hearthctl cert root --out hearth-root.crt
  hearthctl cert root --format der --out hearth-root.cer
  hearthctl cert root --rotate --overlap 720h`,
		Args: cobra.NoArgs,
		RunE: withCert(func(ctx context.Context, cl certv1.CertificateServiceClient, _ []string) error {
			if format != "pem" && format != "der" {
				return fmt.Errorf("--format %q: use pem or der", format)
			}
			if rotate {
				req := &certv1.RotateRootRequest{}
				if overlap >= 0 {
					req.Overlap = durationpb.New(overlap)
				}
				resp, err := cl.RotateRoot(ctx, req)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(resp)
				}
				fmt.Fprintf(g.stdout, "rotated: new root %s\n", resp.GetRoots()[0].GetSha256Fingerprint())
				for _, r := range resp.GetRoots()[1:] {
					fmt.Fprintf(g.stdout, "old root %s published until %s\n", r.GetSha256Fingerprint(), ago(r.GetPublishedUntil()))
				}
				_, err = fmt.Fprintf(g.stdout, "%d local certificates re-issued; export the new root with 'hearthctl cert root' and trust it on your devices\n", resp.GetReissued())
				return err
			}
			resp, err := cl.GetRoot(ctx, &certv1.GetRootRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			roots := resp.GetRoots()
			if !all {
				roots = roots[:1]
			}
			var data []byte
			for _, r := range roots {
				data = append(data, r.GetPem()...)
			}
			if format == "der" {
				if len(roots) > 1 {
					return errors.New("DER holds one certificate: drop --all, or use --format pem")
				}
				b, _ := pem.Decode(roots[0].GetPem())
				if b == nil {
					return errors.New("certd returned a root that is not PEM")
				}
				data = b.Bytes
			}
			guide := g.stderr
			name := "hearth-root.crt"
			if out != "" {
				if err := os.WriteFile(out, data, 0o644); err != nil {
					return err
				}
				guide, name = g.stdout, out
				fmt.Fprintf(guide, "wrote %s (%s, sha256 %s)\n\n", out, strings.ToUpper(format), roots[0].GetSha256Fingerprint())
			} else if _, err := g.stdout.Write(data); err != nil {
				return err
			}
			return trustGuide(guide, name, format)
		}),
	}
	cmd.Flags().StringVar(&format, "format", "pem", "pem or der")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of stdout")
	cmd.Flags().BoolVar(&all, "all", false, "every published root (during a rotation's overlap: new and old), PEM only")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "make a new root and intermediate and re-issue local certificates")
	cmd.Flags().DurationVar(&overlap, "overlap", -1, "with --rotate: how long the old root stays published (default: certd's --root-overlap)")
	return cmd
}

// trustGuide prints short per-system instructions for trusting the root in file name.
func trustGuide(w io.Writer, name, format string) error {
	pemNote := ""
	if format == "der" {
		pemNote = " (Debian and Fedora want PEM: export again with --format pem)"
	}
	_, err := fmt.Fprintf(w, `To trust Hearth's root on a device (it is valid only for .local, the internal domain and private addresses):
  Debian/Ubuntu  sudo cp %[1]s /usr/local/share/ca-certificates/hearth-root.crt && sudo update-ca-certificates%[2]s
  Fedora/RHEL    sudo cp %[1]s /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust
  macOS          sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %[1]s
  Windows        certutil -addstore -f ROOT %[1]s   (in an Administrator prompt)
  Firefox        Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import
  Android        Settings > Security > Encryption & credentials > Install a certificate > CA certificate
  iOS/iPadOS     open the file, install it in Settings > General > VPN & Device Management, then
                 turn it on in Settings > General > About > Certificate Trust Settings
`, name, pemNote)
	return err
}

func watchCmd(g *globals) *cobra.Command {
	var existing bool
	var owner string
	var forDur time.Duration
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print every certificate change as it happens (one line, or one JSON object, each)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := g.conn("certd")
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx := cmd.Context()
			if forDur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, forDur)
				defer cancel()
			}
			stream, err := certv1.NewCertificateServiceClient(conn).WatchCertificates(ctx, &certv1.WatchCertificatesRequest{IncludeExisting: existing, Owner: owner})
			if err != nil {
				return err
			}
			for {
				ev, err := stream.Recv()
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if g.output == "json" {
					b, err := protojson.Marshal(ev)
					if err != nil {
						return err
					}
					fmt.Fprintln(g.stdout, string(b))
					continue
				}
				name := strings.ToLower(strings.TrimPrefix(ev.GetEvent().String(), "EVENT_"))
				if c := ev.GetCertificate(); c != nil {
					fmt.Fprintf(g.stdout, "%s\t%s\t%s\tserial %s\texpires %s\t%s\n", time.Now().Format(time.TimeOnly), name, c.GetId(), c.GetSerial(), until(c.GetNotAfter()), c.GetLastError())
				} else {
					fmt.Fprintf(g.stdout, "%s\t%s\t%d roots published\n", time.Now().Format(time.TimeOnly), name, len(ev.GetRoots()))
				}
			}
		},
	}
	cmd.Flags().BoolVar(&existing, "existing", false, "print every existing certificate first")
	cmd.Flags().StringVar(&owner, "owner", "", "only this package's certificates")
	cmd.Flags().DurationVar(&forDur, "for", 0, "stop after this long (default: until interrupted)")
	return cmd
}

// certResult prints an issued certificate, writing its chain and key to files if asked.
func (g *globals) certResult(c *certv1.Certificate, resp proto.Message, certOut, keyOut string) error {
	if certOut != "" {
		if err := os.WriteFile(certOut, c.GetChainPem(), 0o644); err != nil {
			return err
		}
	}
	if keyOut != "" {
		if err := writePrivate(keyOut, c.GetKeyPem()); err != nil {
			return err
		}
	}
	if g.output == "json" {
		return g.printJSON(resp)
	}
	return g.showCert(c)
}

// writePrivate writes a secret to path with mode 0600, also when path exists.
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (g *globals) showCert(c *certv1.Certificate) error {
	kv := []string{
		"id", c.GetId(),
		"issuer", issuerName(c.GetIssuer()),
		"owner", dash(c.GetOwner()),
		"names", certNames(c),
		"serial", c.GetSerial(),
		"valid from", ago(c.GetNotBefore()),
		"expires", until(c.GetNotAfter()),
		"renews", until(c.GetRenewAt()),
	}
	if c.GetChallenge() != certv1.Challenge_CHALLENGE_UNSPECIFIED {
		kv = append(kv, "challenge", strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(c.GetChallenge().String(), "CHALLENGE_"), "_", "-")))
	}
	if c.GetLastError() != "" {
		kv = append(kv, "last renewal", "failed: "+c.GetLastError())
	}
	return g.fields(kv...)
}

func issuerName(i certv1.Issuer) string {
	return strings.ToLower(strings.TrimPrefix(i.String(), "ISSUER_"))
}

func certNames(c *certv1.Certificate) string {
	return strings.Join(append(append([]string{}, c.GetDnsNames()...), c.GetIpAddresses()...), ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// until renders a future timestamp as a time and how long until it.
func until(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() || ts.AsTime().IsZero() {
		return "-"
	}
	t := ts.AsTime()
	d := time.Until(t).Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), -d)
	}
	return fmt.Sprintf("%s (in %s)", t.Local().Format(time.DateTime), d)
}
