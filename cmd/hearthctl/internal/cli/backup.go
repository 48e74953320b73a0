package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// repoFlags are the flags that name a backup repository and its password.
type repoFlags struct {
	dir, passFile string
}

// repository reads the password (from the file, or asked on the terminal) and makes the
// directory absolute: containerd-lite opens it on this host.
func (g *globals) repository(f repoFlags, flag string) (*containerv1.BackupRepository, error) {
	if f.dir == "" {
		return nil, fmt.Errorf("give the backup directory with %s DIR", flag)
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return nil, err
	}
	var pass string
	switch {
	case f.passFile != "":
		b, err := os.ReadFile(f.passFile)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprintf(g.stderr, "password of the backups in %s: ", dir)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return nil, err
		}
		pass = string(b)
	default:
		return nil, errors.New("no password: give --passphrase-file FILE (stdin is not a terminal to ask on)")
	}
	if pass == "" {
		return nil, errors.New("the password is empty")
	}
	return &containerv1.BackupRepository{Dir: dir, Password: pass}, nil
}

func backupCmds(g *globals) []*cobra.Command {
	var to repoFlags
	backup := &cobra.Command{
		Use:   "backup ID --to DIR",
		Short: "Back a package up: its manifest, version and volumes, encrypted and deduplicated",
		Long: `Back up a package into a repository in DIR (a local disk or a NAS mount; made on first
use), encrypted with a password. Content is split into chunks, deduplicated and compressed:
a second backup of unchanged data writes almost nothing. The backup is consistent: the
package's backup hook runs first when it has one, otherwise its processes are frozen while
its volumes are read (usually a second or less).`,
		Example: `  hearthctl backup hello-pg --to /mnt/nas/hearth-backups --passphrase-file ~/.hearth-backup-pass
  hearthctl backup ls --to /mnt/nas/hearth-backups
  hearthctl backup prune hello-pg --to /mnt/nas/hearth-backups --keep 7`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewBackupServiceClient, func(ctx context.Context, cl containerv1.BackupServiceClient, args []string) error {
			r, err := g.repository(to, "--to")
			if err != nil {
				return err
			}
			stream, err := cl.BackupPackage(ctx, &containerv1.BackupPackageRequest{Id: args[0], Repository: r})
			if err != nil {
				return err
			}
			view := newProgressView(g)
			defer view.done()
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				if s := m.GetSnapshot(); s != nil {
					view.done()
					if g.output == "json" {
						return g.printJSON(s)
					}
					_, err := fmt.Fprintf(g.stdout, "snapshot %s of %s %s: %d files, %s; %d unchanged; %s written to %s\n",
						s.GetId(), s.GetPackage(), s.GetVersion(), s.GetFiles(), human(s.GetBytes()), s.GetUnchanged(), human(s.GetStoredBytes()), r.GetDir())
					return err
				}
				p := m.GetProgress()
				view.update(&containerv1.ImageProgress{Phase: p.GetPhase(), BytesDone: p.GetDone(), BytesTotal: p.GetTotal()})
			}
		}),
	}
	backup.PersistentFlags().StringVar(&to.dir, "to", "", "the backup repository's directory")
	backup.PersistentFlags().StringVar(&to.passFile, "passphrase-file", "", "a file holding the repository's password (asked on the terminal otherwise)")

	ls := &cobra.Command{
		Use:   "ls [ID] --to DIR",
		Short: "List the snapshots in a backup repository (one package's, or all)",
		Args:  cobra.MaximumNArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewBackupServiceClient, func(ctx context.Context, cl containerv1.BackupServiceClient, args []string) error {
			r, err := g.repository(to, "--to")
			if err != nil {
				return err
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			resp, err := cl.ListBackups(ctx, &containerv1.ListBackupsRequest{Repository: r, Id: id})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, s := range resp.GetSnapshots() {
				rows = append(rows, []string{s.GetId(), s.GetPackage(), s.GetVersion(), ago(s.GetTime()), fmt.Sprint(s.GetFiles()), human(s.GetBytes()), strings.Join(s.GetVolumes(), ",")})
			}
			return g.table([]string{"SNAPSHOT", "PACKAGE", "VERSION", "TAKEN", "FILES", "SIZE", "VOLUMES"}, rows)
		}),
	}
	var keep int
	prune := &cobra.Command{
		Use:   "prune ID --to DIR --keep N",
		Short: "Keep a package's newest N snapshots and delete the others, freeing their space",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewBackupServiceClient, func(ctx context.Context, cl containerv1.BackupServiceClient, args []string) error {
			r, err := g.repository(to, "--to")
			if err != nil {
				return err
			}
			resp, err := cl.PruneBackups(ctx, &containerv1.PruneBackupsRequest{Repository: r, Id: args[0], Keep: int32(keep)})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			_, err = fmt.Fprintf(g.stdout, "%d snapshots of %s deleted; the newest %d kept\n", resp.GetDeleted(), args[0], keep)
			return err
		}),
	}
	prune.Flags().IntVar(&keep, "keep", 0, "how many of the newest snapshots to keep (at least 1)")
	backup.AddCommand(ls, prune)

	var from repoFlags
	var snapshot, pkgFile string
	var allowUntrusted bool
	restore := &cobra.Command{
		Use:   "restore ID --from DIR [--snapshot ID] [--package FILE.hpkg]",
		Short: "Restore a package's snapshot: in place, or as a fresh install with --package",
		Long: `Restore a snapshot (the newest unless --snapshot) of a package. The snapshot is read
and checked whole first: a damaged repository or a wrong password is found before anything
of the package changes. An installed package is restored in place: it stops, its volumes
are restored beside the live ones and swapped in, and it starts again; when the snapshot is
of an older version, the package's migrate hook runs. A package that is not installed is
installed from --package FILE (the same version or a newer one) with the snapshot's data.`,
		Example: `  hearthctl restore hello-pg --from /mnt/nas/hearth-backups
  hearthctl restore hello-pg --from /mnt/nas/hearth-backups --snapshot 3f9c2a
  hearthctl restore hello-pg --from /mnt/nas/hearth-backups --package hello-pg-2.0.0.hpkg`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewBackupServiceClient, func(ctx context.Context, cl containerv1.BackupServiceClient, args []string) error {
			r, err := g.repository(from, "--from")
			if err != nil {
				return err
			}
			stream, err := cl.RestorePackage(ctx)
			if err != nil {
				return err
			}
			opts := &containerv1.RestoreOptions{Id: args[0], Repository: r, Snapshot: snapshot, WithPackage: pkgFile != "", AllowUntrusted: allowUntrusted}
			var res *containerv1.PackageResult
			recv := func() (*containerv1.PackageProgress, *containerv1.PackageResult, error) {
				m, err := stream.Recv()
				return m.GetProgress(), m.GetResult(), err
			}
			if pkgFile != "" {
				res, err = sendPackage(g, pkgFile, allowUntrusted,
					func(*containerv1.PackageOptions) error {
						return stream.Send(&containerv1.RestorePackageRequest{Msg: &containerv1.RestorePackageRequest_Options{Options: opts}})
					},
					func(b []byte) error {
						return stream.Send(&containerv1.RestorePackageRequest{Msg: &containerv1.RestorePackageRequest_Chunk{Chunk: b}})
					}, stream.CloseSend, recv)
			} else {
				if err := stream.Send(&containerv1.RestorePackageRequest{Msg: &containerv1.RestorePackageRequest_Options{Options: opts}}); err != nil {
					return err
				}
				if err := stream.CloseSend(); err != nil {
					return err
				}
				res, err = follow(g, recv)
			}
			if err != nil {
				return err
			}
			return g.showResult("restored", res)
		}),
	}
	restore.Flags().StringVar(&from.dir, "from", "", "the backup repository's directory")
	restore.Flags().StringVar(&from.passFile, "passphrase-file", "", "a file holding the repository's password (asked on the terminal otherwise)")
	restore.Flags().StringVar(&snapshot, "snapshot", "", "the snapshot to restore (an id or its first 6+ characters; default: the newest)")
	restore.Flags().StringVar(&pkgFile, "package", "", "for a package that is not installed: its file, installed with the snapshot's data")
	restore.Flags().BoolVar(&allowUntrusted, "allow-untrusted", false, "with --package: install it even if unsigned or signed by a key this host does not trust")
	return []*cobra.Command{backup, restore}
}

// follow shows progress until the result comes.
func follow(g *globals, recv func() (*containerv1.PackageProgress, *containerv1.PackageResult, error)) (*containerv1.PackageResult, error) {
	view := newProgressView(g)
	defer view.done()
	for {
		p, res, err := recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the daemon ended the call without a result")
		}
		if err != nil {
			return nil, err
		}
		if res != nil {
			return res, nil
		}
		view.update(&containerv1.ImageProgress{Phase: p.GetPhase(), BytesDone: p.GetDone(), BytesTotal: p.GetTotal()})
	}
}
