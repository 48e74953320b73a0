package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// notificationsCmd lists and dismisses the notifications packages leave (notify).
func notificationsCmd(g *globals) *cobra.Command {
	var pkg string
	var all bool
	list := func(ctx context.Context, cl containerv1.NotificationServiceClient, _ []string) error {
		resp, err := cl.ListNotifications(ctx, &containerv1.ListNotificationsRequest{Package: pkg, All: all})
		if err != nil {
			return err
		}
		if g.output == "json" {
			return g.printJSON(resp)
		}
		return g.showNotifications(resp.GetNotifications())
	}
	cmd := &cobra.Command{
		Use:     "notifications",
		Aliases: []string{"notification", "notes"},
		Short:   "List the notifications packages left for you, or dismiss them",
		Long: `Packages leave notifications for the user (a backup done, a disk nearly full, an
update that needs a hand). containerd-lite keeps each package's newest 100, dismissed or
not, until the package is uninstalled with --purge (an uninstall that keeps the data keeps
them too). 'hearthctl notifications' lists those not dismissed, newest first.`,
		Example: `  hearthctl notifications
  hearthctl notifications ls --package nextcloud --all
  hearthctl notifications dismiss 12 13
  hearthctl notifications dismiss --package nextcloud`,
		Args: cobra.NoArgs,
		RunE: call(g, "containerd-lite", containerv1.NewNotificationServiceClient, list),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List notifications, newest first (those not dismissed, unless --all)",
		Args:    cobra.NoArgs,
		RunE:    call(g, "containerd-lite", containerv1.NewNotificationServiceClient, list),
	}
	for _, c := range []*cobra.Command{cmd, ls} {
		c.Flags().StringVar(&pkg, "package", "", "only this package's")
		c.Flags().BoolVar(&all, "all", false, "include the dismissed ones")
	}
	var dpkg string
	dismiss := &cobra.Command{
		Use:   "dismiss [ID...]",
		Short: "Dismiss notifications by id, or every one of a package (--package)",
		Example: `  hearthctl notifications dismiss 12 13
  hearthctl notifications dismiss --package nextcloud`,
		RunE: call(g, "containerd-lite", containerv1.NewNotificationServiceClient, func(ctx context.Context, cl containerv1.NotificationServiceClient, args []string) error {
			if len(args) == 0 && dpkg == "" {
				return fmt.Errorf("give the ids to dismiss (hearthctl notifications lists them), or --package ID for all of a package's")
			}
			resp, err := cl.DismissNotification(ctx, &containerv1.DismissNotificationRequest{Ids: args, Package: dpkg})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			_, err = fmt.Fprintf(g.stdout, "%d dismissed\n", resp.GetDismissed())
			return err
		}),
	}
	dismiss.Flags().StringVar(&dpkg, "package", "", "dismiss every notification of this package (with ids: only those ids, each of this package)")
	cmd.AddCommand(ls, dismiss)
	return cmd
}

// showNotifications prints notifications as a table; a message shows its first line.
func (g *globals) showNotifications(ns []*containerv1.Notification) error {
	if len(ns) == 0 {
		_, err := fmt.Fprintln(g.stdout, "no notifications")
		return err
	}
	var rows [][]string
	for _, n := range ns {
		level := n.GetLevel()
		if n.GetDismissed() {
			level += " (dismissed)"
		}
		msg, _, cut := strings.Cut(n.GetMessage(), "\n")
		if cut {
			msg += " ..."
		}
		rows = append(rows, []string{n.GetId(), n.GetPackage(), level, since(n.GetCreatedAt()) + " ago", n.GetTitle(), msg})
	}
	return g.table([]string{"ID", "PACKAGE", "LEVEL", "AGE", "TITLE", "MESSAGE"}, rows)
}
