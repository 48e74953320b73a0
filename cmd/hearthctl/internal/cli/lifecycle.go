package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// askTerminal is where stop asks before stopping dependents: stdin when it is a
// terminal (nil otherwise, and stop does not ask).
var askTerminal = func() io.Reader {
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return os.Stdin
	}
	return nil
}

// lifecycleCmds are start, stop and restart: through PackageService, so that a package
// starts once its dependencies run, and stopping a dependency asks about its dependents.
func lifecycleCmds(g *globals) []*cobra.Command {
	var grace time.Duration
	var cascade, all bool
	start := &cobra.Command{
		Use:   "start ID | --all",
		Short: "Start a package once the packages it depends on run (it waits for them)",
		Long: `Start a package. When a package it depends on (its manifest's dependencies) is not
installed, not running, or the daemons behind the interfaces it requires are not ready, the
package waits, and starts by itself as soon as they are; start says what it waits for, and
so does 'hearthctl status'. 'hearthctl stop' ends the wait.

With --all, every installed package that is not running starts, as at the host's start-up:
a few side by side, each once the packages it depends on run and are ready. It prints one
line a package: started, running (it ran already), waiting (and for what) or failed.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all && len(args) > 0 {
				return fmt.Errorf("start --all starts every package: give no ID with it (or drop --all to start %s)", args[0])
			}
			if !all {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return nil
		},
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			if all {
				resp, err := cl.packages.StartAllPackages(ctx, &containerv1.StartAllPackagesRequest{})
				if err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(resp)
				}
				return g.showStartAll(resp)
			}
			resp, err := cl.packages.StartPackage(ctx, &containerv1.StartPackageRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			return g.showStart(args[0], resp)
		}),
	}
	stop := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a package (or end its wait); with --cascade, the packages that depend on it first",
		Long: `Stop a package. While packages that depend on it run, stop asks on a terminal whether to
stop them too (they stop first, each before what it depends on); elsewhere it refuses and
names them, unless --cascade.`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			stopped, err := g.stopPackage(ctx, cl, args[0], cascade, grace)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(&containerv1.StopPackageResponse{Stopped: stopped})
			}
			for _, n := range stopped {
				fmt.Fprintf(g.stdout, "%s\tstopped\n", n)
			}
			return nil
		}),
	}
	restart := &cobra.Command{
		Use:   "restart ID",
		Short: "Stop and start a package (and the packages that depend on it, when they are stopped with it)",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newPackageClients, func(ctx context.Context, cl packageClients, args []string) error {
			stopped, err := g.stopPackage(ctx, cl, args[0], cascade, grace)
			if err != nil {
				return err
			}
			// Dependencies first: each dependent waits for what it depends on.
			slices.Reverse(stopped)
			var resps []*containerv1.StartPackageResponse
			for _, n := range stopped {
				resp, err := cl.packages.StartPackage(ctx, &containerv1.StartPackageRequest{Id: n})
				if err != nil {
					return fmt.Errorf("%s stopped, but starting %s: %w", strings.Join(stopped, ", "), n, err)
				}
				resps = append(resps, resp)
			}
			if g.output == "json" {
				if len(resps) == 1 {
					return g.printJSON(resps[0])
				}
				for _, r := range resps {
					if err := g.printJSON(r); err != nil {
						return err
					}
				}
				return nil
			}
			for i, r := range resps {
				if err := g.showStart(stopped[i], r); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	start.Flags().BoolVar(&all, "all", false, "start every installed package that is not running, side by side, in dependency order")
	for _, c := range []*cobra.Command{stop, restart} {
		c.Flags().DurationVar(&grace, "grace", 0, "how long the daemons have to stop cleanly (default: what the manifest gives them)")
		c.Flags().BoolVar(&cascade, "cascade", false, "stop the running packages that depend on it first, without asking")
	}
	return []*cobra.Command{start, stop, restart}
}

// stopPackage stops a package; without cascade, when packages that depend on it run, it
// asks on a terminal whether to stop them too, and elsewhere lets containerd-lite refuse
// (its error names them).
func (g *globals) stopPackage(ctx context.Context, cl packageClients, id string, cascade bool, grace time.Duration) ([]string, error) {
	req := &containerv1.StopPackageRequest{Id: id, Cascade: cascade}
	if grace > 0 {
		req.Grace = durationpb.New(grace)
	}
	if !cascade && g.output == "text" {
		if in := askTerminal(); in != nil {
			plan, err := cl.packages.StopPackage(ctx, &containerv1.StopPackageRequest{Id: id, DryRun: true})
			if err != nil {
				return nil, err
			}
			if others := plan.GetStopped(); len(others) > 1 {
				others = others[:len(others)-1]
				fmt.Fprintf(g.stderr, "%s %s on %s and %s. Stop %s too? [y/N] ", strings.Join(others, ", "),
					plural(len(others), "depends", "depend"), id, plural(len(others), "runs", "run"), strings.Join(others, ", "))
				answer, _ := bufio.NewReader(in).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil, fmt.Errorf("%s not stopped: %s %s on it (stop --cascade %s stops %s too)", id, strings.Join(others, ", "),
						plural(len(others), "depends", "depend"), id, plural(len(others), "it", "them"))
				}
				req.Cascade = true
			}
		}
	}
	resp, err := cl.packages.StopPackage(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetStopped(), nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// showStart prints that a package started, or what it waits for.
func (g *globals) showStart(id string, resp *containerv1.StartPackageResponse) error {
	if len(resp.GetWaitingFor()) == 0 {
		_, err := fmt.Fprintf(g.stdout, "%s\t%s\n", id, orWord(resp.GetPackage().GetState(), "started"))
		return err
	}
	fmt.Fprintf(g.stdout, "%s\twaiting: it starts by itself once these are there\n", id)
	return g.showWaits(resp.GetWaitingFor())
}

// showStartAll prints what start --all did, a package a line; it fails when a start did.
func (g *globals) showStartAll(resp *containerv1.StartAllPackagesResponse) error {
	var failed []string
	for _, p := range resp.GetPackages() {
		switch p.GetOutcome() {
		case "failed":
			failed = append(failed, p.GetId())
			fmt.Fprintf(g.stdout, "%s\tfailed: %s\n", p.GetId(), p.GetError())
		case "waiting":
			fmt.Fprintf(g.stdout, "%s\twaiting: it starts by itself once these are there\n", p.GetId())
			if err := g.showWaits(p.GetWaitingFor()); err != nil {
				return err
			}
		default:
			fmt.Fprintf(g.stdout, "%s\t%s\n", p.GetId(), p.GetOutcome())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s did not start (hearthctl status ID says more; each is tried again by itself)", strings.Join(failed, ", "))
	}
	return nil
}

// showWaits lists what a package waits for, one dependency a line.
func (g *globals) showWaits(ws []*hostv1.Wait) error {
	for _, w := range ws {
		if _, err := fmt.Fprintf(g.stdout, "  waiting for %s: %s\n", w.GetPackage(), w.GetReason()); err != nil {
			return err
		}
	}
	return nil
}

func orWord(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
