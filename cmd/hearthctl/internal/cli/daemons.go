package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/proto"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

func (g *globals) showDaemons(ds []*guestv1.Daemon) error {
	var rows [][]string
	for _, d := range ds {
		pid := "-"
		if d.GetPid() > 0 {
			pid = strconv.Itoa(int(d.GetPid()))
		}
		kind := "daemon"
		if d.GetOneshot() {
			kind = "oneshot"
		}
		last := "-"
		if e := d.GetLastExit(); e != nil {
			last = exitText(e)
		}
		rows = append(rows, []string{d.GetName(), kind, daemonState(d.GetState()), pid, strconv.Itoa(int(d.GetRestarts())), last, d.GetHealth()})
	}
	return g.table([]string{"DAEMON", "KIND", "STATE", "PID", "RESTARTS", "LAST EXIT", "HEALTH"}, rows)
}

func daemonState(s guestv1.DaemonState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DAEMON_STATE_"))
}

func exitText(e *guestv1.Exit) string {
	if e.GetSignal() != "" {
		return "killed by " + e.GetSignal()
	}
	return fmt.Sprintf("exit %d", e.GetCode())
}

func daemonCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Start, stop and restart a package's daemons",
		Long:  "The daemons of a package run inside its container under guestd; 'hearthctl container status NAME' lists them.",
	}
	for _, verb := range []struct {
		use, short string
		do         func(ctx context.Context, cl guestv1.GuestServiceClient, name string) (proto.Message, error)
	}{
		{"start", "Start a daemon (it still waits for what it requires)", func(ctx context.Context, cl guestv1.GuestServiceClient, n string) (proto.Message, error) {
			return cl.StartDaemon(ctx, &guestv1.StartDaemonRequest{Name: n})
		}},
		{"stop", "Stop a daemon: its stop signal, then SIGKILL after its timeout", func(ctx context.Context, cl guestv1.GuestServiceClient, n string) (proto.Message, error) {
			return cl.StopDaemon(ctx, &guestv1.StopDaemonRequest{Name: n})
		}},
		{"restart", "Stop a daemon and start it again", func(ctx context.Context, cl guestv1.GuestServiceClient, n string) (proto.Message, error) {
			return cl.RestartDaemon(ctx, &guestv1.RestartDaemonRequest{Name: n})
		}},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   verb.use + " CONTAINER DAEMON",
			Short: verb.short,
			Args:  cobra.ExactArgs(2),
			RunE: call(g, "containerd-lite", guestv1.NewGuestServiceClient, func(ctx context.Context, cl guestv1.GuestServiceClient, args []string) error {
				resp, err := verb.do(forContainer(ctx, args[0]), cl, args[1])
				if err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(resp)
				}
				_, err = fmt.Fprintf(g.stdout, "%s %s: %s\n", args[0], args[1], verb.use)
				return err
			}),
		})
	}
	return cmd
}

func logsCmd(g *globals) *cobra.Command {
	var follow bool
	var tail int32
	var daemon string
	cmd := &cobra.Command{
		Use:   "logs CONTAINER",
		Short: "Show the output of a package's daemons",
		Example: `  hearthctl logs web
  hearthctl logs web -f --daemon db --tail 20`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", guestv1.NewGuestServiceClient, func(ctx context.Context, cl guestv1.GuestServiceClient, args []string) error {
			if follow {
				// Following has no deadline: it ends with ^C.
				var cancel context.CancelFunc
				ctx, cancel = signal.NotifyContext(context.WithoutCancel(ctx), os.Interrupt, syscall.SIGTERM)
				defer cancel()
			}
			stream, err := cl.Logs(forContainer(ctx, args[0]), &guestv1.LogsRequest{Daemon: daemon, Tail: tail, Follow: follow})
			if err != nil {
				return err
			}
			for {
				l, err := stream.Recv()
				if errors.Is(err, io.EOF) || (err != nil && ctx.Err() != nil) {
					return nil
				}
				if err != nil {
					return err
				}
				if g.output == "json" {
					if err := g.printJSONLine(l); err != nil {
						return err
					}
					continue
				}
				t := l.GetTime().AsTime().Local().Format(time.TimeOnly + ".000")
				if daemon != "" {
					fmt.Fprintf(g.stdout, "%s %s\n", t, l.GetText())
				} else {
					fmt.Fprintf(g.stdout, "%s %-10s %s\n", t, l.GetDaemon(), l.GetText())
				}
			}
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().Int32Var(&tail, "tail", 0, "only the last N lines of each daemon (0: all kept lines)")
	cmd.Flags().StringVar(&daemon, "daemon", "", "only this daemon")
	return cmd
}

func execCmd(g *globals) *cobra.Command {
	var tty, interactive bool
	cmd := &cobra.Command{
		Use:   "exec CONTAINER DAEMON -- COMMAND [ARG...]",
		Short: "Run a command in a daemon's subcontainer, as the daemon's user",
		Example: `  hearthctl exec web db -- psql -c 'select 1'
  hearthctl exec -it web app -- sh`,
		Args: cobra.MinimumNArgs(3),
		RunE: call(g, "containerd-lite", guestv1.NewGuestServiceClient, func(ctx context.Context, cl guestv1.GuestServiceClient, args []string) error {
			ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			defer cancel()
			stream, err := cl.Exec(forContainer(ctx, args[0]))
			if err != nil {
				return err
			}
			start := &guestv1.ExecStart{Daemon: args[1], Argv: args[2:], Tty: tty}
			stdinFD := int(os.Stdin.Fd())
			if tty && term.IsTerminal(stdinFD) {
				if w, h, err := term.GetSize(stdinFD); err == nil {
					start.Size = &guestv1.TermSize{Rows: uint32(h), Cols: uint32(w)}
				}
				old, err := term.MakeRaw(stdinFD)
				if err != nil {
					return err
				}
				defer term.Restore(stdinFD, old)
			}
			if err := stream.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Start{Start: start}}); err != nil {
				return err
			}
			if interactive || tty {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := os.Stdin.Read(buf)
						if n > 0 {
							if stream.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
								return
							}
						}
						if err != nil {
							_ = stream.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_CloseStdin{CloseStdin: true}})
							return
						}
					}
				}()
			} else if err := stream.Send(&guestv1.ExecRequest{Msg: &guestv1.ExecRequest_CloseStdin{CloseStdin: true}}); err != nil {
				return err
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					return err
				}
				switch m := resp.GetMsg().(type) {
				case *guestv1.ExecResponse_Stdout:
					g.stdout.Write(m.Stdout)
				case *guestv1.ExecResponse_Stderr:
					g.stderr.Write(m.Stderr)
				case *guestv1.ExecResponse_Exit:
					if m.Exit.GetCode() != 0 {
						return exitError{code: int(m.Exit.GetCode()), text: exitText(m.Exit)}
					}
					return nil
				}
			}
		}),
	}
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "run on a pseudo-terminal")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass stdin to the command")
	return cmd
}

// exitError carries a command's exit status out of hearthctl.
type exitError struct {
	code int
	text string
}

func (e exitError) Error() string { return "command " + e.text }
