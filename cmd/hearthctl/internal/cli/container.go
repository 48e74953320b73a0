package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

func containerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "container",
		Aliases: []string{"containers", "ct"},
		Short:   "Create, start, stop, remove and inspect containers",
		Long: `A container is one unprivileged LXC container: the home of one package. It boots
from Hearth's base root file system, where guestd runs as init.`,
	}
	show := func(c *containerv1.Container) error {
		if g.output == "json" {
			return g.printJSON(c)
		}
		_, err := fmt.Fprintf(g.stdout, "%s\t%s\n", c.GetName(), stateName(c.GetState()))
		return err
	}

	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Define a container (it is not started)",
		Example: `  hearthctl container create demo
  hearthctl container start demo`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return show(resp.GetContainer())
		}),
	}
	start := &cobra.Command{
		Use:   "start NAME",
		Short: "Start a container; returns once guestd answers inside it",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return show(resp.GetContainer())
		}),
	}
	var stopTimeout time.Duration
	stop := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a container: init gets --grace to stop its daemons, then it is killed",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.StopContainer(ctx, &containerv1.StopContainerRequest{Name: args[0], Timeout: durationpb.New(stopTimeout)})
			if err != nil {
				return err
			}
			return show(resp.GetContainer())
		}),
	}
	stop.Flags().DurationVar(&stopTimeout, "grace", 10*time.Second, "how long init has to stop cleanly")
	var force bool
	rm := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove a stopped container and everything made for it",
		Args:    cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			if _, err := cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: args[0], Force: force}); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(&containerv1.DeleteContainerResponse{})
			}
			_, err := fmt.Fprintf(g.stdout, "%s\tremoved\n", args[0])
			return err
		}),
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "stop the container first if it runs")
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.ListContainers(ctx, &containerv1.ListContainersRequest{})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			var rows [][]string
			for _, c := range resp.GetContainers() {
				pid := "-"
				if c.GetInitPid() > 0 {
					pid = strconv.Itoa(int(c.GetInitPid()))
				}
				up := "-"
				if c.GetState() == containerv1.ContainerState_CONTAINER_STATE_RUNNING {
					up = since(c.GetStartedAt())
				}
				rows = append(rows, []string{c.GetName(), stateName(c.GetState()), pid, up})
			}
			return g.table([]string{"NAME", "STATE", "PID", "UP"}, rows)
		}),
	}
	statusCmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a container and guestd's own answer from inside it",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.GetContainer(ctx, &containerv1.GetContainerRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			c := resp.GetContainer()
			kv := []string{
				"name", c.GetName(),
				"state", stateName(c.GetState()),
				"init pid", strconv.Itoa(int(c.GetInitPid())),
				"created", ago(c.GetCreatedAt()),
				"started", ago(c.GetStartedAt()),
				"rpc dir", c.GetRpcDir(),
			}
			if gi := resp.GetGuest(); gi != nil {
				kv = append(kv,
					"guestd", fmt.Sprintf("%s, pid %d, up %s, restarted %d times", gi.GetVersion(), gi.GetPid(), since(gi.GetStartedAt()), gi.GetRestarts()),
					"guestd started", ago(gi.GetStartedAt()),
					"booted", ago(gi.GetBootTime()),
				)
			} else if resp.GetGuestError() != "" {
				kv = append(kv, "guestd", "no answer: "+resp.GetGuestError())
			}
			return g.fields(kv...)
		}),
	}
	cmd.AddCommand(create, start, stop, rm, ls, statusCmd)
	return cmd
}

func stateName(s containerv1.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONTAINER_STATE_"))
}
