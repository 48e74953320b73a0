// Package cli is hearthctl's command tree.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/buildinfo"
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
)

// globals are the flags every command takes.
type globals struct {
	runDir  string
	output  string
	timeout time.Duration
	stdout  io.Writer
	stderr  io.Writer
}

// Main runs hearthctl with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "hearthctl",
		Short: "Drive Hearth: images, containers and packages on this home server",
		Long: `hearthctl talks to Hearth's daemons over their Unix sockets in --run-dir.

Every command takes --output json for scripts; text is meant for people.`,
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("--output %q: use text or json", g.output)
			}
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.runDir, "run-dir", envOr(daemon.RunDirEnv, daemon.DefaultRunDir), "directory of the daemons' sockets (env "+daemon.RunDirEnv+")")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&g.timeout, "timeout", 2*time.Minute, "give up on a call after this long")
	root.AddCommand(containerCmd(g))
	root.AddCommand(imageCmd(g))
	root.AddCommand(daemonCmd(g), logsCmd(g), execCmd(g))
	root.AddCommand(certCmd(g))
	root.AddCommand(packageCmds(g)...)
	root.AddCommand(backupCmds(g)...)
	root.AddCommand(bindingCmds(g)...)
	root.AddCommand(keysCmd(g), packCmd(g))
	root.AddCommand(marketCmd(g), searchCmd(g), pushCmd(g))
	root.AddCommand(actionCmd(g))
	root.AddCommand(notificationsCmd(g))
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "hearthctl: %s\n", describe(err))
		return 1
	}
	return 0
}

// describe is what the user reads for err: for a daemon's answer, the daemon's words
// (without gRPC's "rpc error: code = ... desc =" prefix) and the code's name, which
// scripts can match.
func describe(err error) string {
	err = errdefs.FromGRPC(err)
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", err, s.Code())
	}
	return err.Error()
}

// conn connects to a daemon's socket in the run directory.
func (g *globals) conn(daemonName string) (*grpc.ClientConn, error) {
	return dial.Unix(filepath.Join(g.runDir, daemonName+".sock"))
}

func (g *globals) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
