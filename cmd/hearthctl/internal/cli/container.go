package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"hearth.dev/internal/bytesize"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
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

	var imageFlags, volumeFlags []string
	var memory, disk, manifestFile string
	var cpus float64
	var pids int64
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Define a container (it is not started)",
		Long: `Define a container: its images (mounted read-only at /media/hearth/images/<name>),
its volumes (kept on the host; removed only by 'rm --purge-volumes') and its limits (capped by
the host's policy). Every container has its own range of host ids and its own disk, which
holds its writable layers, volumes and logs: writes past its size fail with "no space left".`,
		Example: `  hearthctl container create demo
  hearthctl container create web --image db=postgres:15 --image app=app:1 --volume pgdata --memory 512Mi --cpus 1.5 --pids 512 --disk 4Gi
  hearthctl container start web`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			lim, err := limitFlags(memory, disk, cpus, pids)
			if err != nil {
				return err
			}
			spec := &containerv1.ContainerSpec{Images: map[string]string{}, Volumes: volumeFlags, Limits: lim}
			for _, f := range imageFlags {
				k, ref, ok := strings.Cut(f, "=")
				if !ok || k == "" || ref == "" {
					return fmt.Errorf("--image %q: write NAME=IMAGE, such as db=postgres:15", f)
				}
				spec.Images[k] = ref
			}
			if manifestFile != "" {
				data, err := os.ReadFile(manifestFile)
				if err != nil {
					return fmt.Errorf("--manifest: %w", err)
				}
				spec = &containerv1.ContainerSpec{Manifest: data}
				if len(imageFlags) > 0 || len(volumeFlags) > 0 || memory != "" || disk != "" || cpus != 0 || pids != 0 {
					return fmt.Errorf("--manifest gives the images, volumes and limits: drop --image, --volume, --memory, --disk, --cpus and --pids")
				}
			}
			resp, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: args[0], Spec: spec})
			if err != nil {
				return err
			}
			return show(resp.GetContainer())
		}),
	}
	create.Flags().StringVar(&manifestFile, "manifest", "", "a package manifest (YAML) whose daemons guestd runs; its images are stored images (ref:)")
	create.Flags().StringArrayVar(&imageFlags, "image", nil, "NAME=IMAGE: an image the container holds (repeatable)")
	create.Flags().StringArrayVar(&volumeFlags, "volume", nil, "a volume the container keeps (repeatable)")
	create.Flags().StringVar(&memory, "memory", "", "memory limit, such as 512Mi (default: the host's cap)")
	create.Flags().Float64Var(&cpus, "cpus", 0, "CPU limit in CPUs, such as 1.5 (default: the host's cap)")
	create.Flags().Int64Var(&pids, "pids", 0, "process limit (default: the host's cap)")
	create.Flags().StringVar(&disk, "disk", "", "disk size: writable layers, volumes and logs, such as 4Gi (default: the host's default)")
	var lMemory, lDisk string
	var lCPUs float64
	var lPids int64
	limitsCmd := &cobra.Command{
		Use:   "limits NAME",
		Short: "Change a container's memory, CPU, process and disk limits",
		Long: `Change a container's limits; those not given stay. The host's policy caps them. A running
container's cgroup takes them at once. A larger disk grows while the container runs where
the kernel lets containerd-lite resize a mounted file system, and otherwise at its next
start (the output says so). Disks do not shrink.`,
		Example: `  hearthctl container limits web --memory 1Gi --pids 1024
  hearthctl container limits web --disk 20Gi`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			lim, err := limitFlags(lMemory, lDisk, lCPUs, lPids)
			if err != nil {
				return err
			}
			if proto.Equal(lim, &containerv1.Limits{}) {
				return fmt.Errorf("give at least one of --memory, --cpus, --pids and --disk")
			}
			resp, err := cl.SetContainerLimits(ctx, &containerv1.SetContainerLimitsRequest{Name: args[0], Limits: lim})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			l := resp.GetLimits()
			fmt.Fprintf(g.stdout, "%s: memory %s, cpus %g, pids %d, disk %s\n", args[0], bytesize.Format(l.GetMemoryBytes()), l.GetCpus(), l.GetPids(), bytesize.Format(l.GetDiskBytes()))
			for _, n := range resp.GetNotes() {
				fmt.Fprintf(g.stdout, "note: %s\n", n)
			}
			return nil
		}),
	}
	limitsCmd.Flags().StringVar(&lMemory, "memory", "", "memory limit, such as 1Gi")
	limitsCmd.Flags().Float64Var(&lCPUs, "cpus", 0, "CPU limit in CPUs, such as 1.5")
	limitsCmd.Flags().Int64Var(&lPids, "pids", 0, "process limit")
	limitsCmd.Flags().StringVar(&lDisk, "disk", "", "disk size, such as 20Gi (only larger)")
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
	var force, purge bool
	rm := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove a stopped container and everything made for it",
		Args:    cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			if _, err := cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: args[0], Force: force, PurgeVolumes: purge}); err != nil {
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
	rm.Flags().BoolVar(&purge, "purge-volumes", false, "also remove the container's volumes (kept by default)")
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
				addr := c.GetAddress()
				if addr == "" {
					addr = "-"
				}
				rows = append(rows, []string{c.GetName(), stateName(c.GetState()), pid, addr, up})
			}
			return g.table([]string{"NAME", "STATE", "PID", "ADDRESS", "UP"}, rows)
		}),
	}
	statusCmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a container, guestd's own answer from inside it, and its daemons",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", newClients, func(ctx context.Context, cl clients, args []string) error {
			return g.containerStatus(ctx, cl, args[0], nil)
		}),
	}
	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a container's images, overlays, volumes, limits, id range, and cgroup and disk usage",
		Args:  cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewContainerServiceClient, func(ctx context.Context, cl containerv1.ContainerServiceClient, args []string) error {
			resp, err := cl.GetContainer(ctx, &containerv1.GetContainerRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			return g.showDetails(resp)
		}),
	}
	cmd.AddCommand(create, start, stop, rm, ls, statusCmd, inspect, limitsCmd)
	return cmd
}

func stateName(s containerv1.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONTAINER_STATE_"))
}

func (g *globals) showDetails(resp *containerv1.GetContainerResponse) error {
	c, d := resp.GetContainer(), resp.GetDetails()
	fmt.Fprintf(g.stdout, "%s\t%s\tinit pid %d\n", c.GetName(), stateName(c.GetState()), c.GetInitPid())
	limits := func(l *containerv1.Limits) string {
		if l == nil {
			return "-"
		}
		s := fmt.Sprintf("memory %s, cpus %g, pids %d", bytesize.Format(l.GetMemoryBytes()), l.GetCpus(), l.GetPids())
		if l.GetDiskBytes() > 0 { // the cgroup holds no disk limit
			s += ", disk " + bytesize.Format(l.GetDiskBytes())
		}
		return s
	}
	kv := []string{"limits", limits(d.GetLimits())}
	if n := d.GetHostIdCount(); n > 0 {
		kv = append(kv, "host ids", fmt.Sprintf("%d-%d (root is %d)", d.GetHostIdBase(), uint64(d.GetHostIdBase())+uint64(n)-1, d.GetHostIdBase()))
	}
	if c.GetState() == containerv1.ContainerState_CONTAINER_STATE_RUNNING {
		u := d.GetUsage()
		kv = append(kv, "cgroup limits", limits(d.GetCgroupLimits()),
			"usage", fmt.Sprintf("memory %s, pids %d, cpu %.2fs", human(u.GetMemoryBytes()), u.GetPids(), u.GetCpuSeconds()))
	}
	if dk := d.GetDisk(); dk != nil {
		if dk.GetError() != "" {
			kv = append(kv, "disk", fmt.Sprintf("size %s (%s)", human(dk.GetSizeBytes()), dk.GetError()))
		} else {
			pct := 0.0
			if dk.GetSizeBytes() > 0 {
				pct = 100 * float64(dk.GetUsedBytes()) / float64(dk.GetSizeBytes())
			}
			kv = append(kv, "disk", fmt.Sprintf("%s used of %s (%.0f%%)", human(dk.GetUsedBytes()), human(dk.GetSizeBytes()), pct))
		}
	}
	if err := g.fields(kv...); err != nil {
		return err
	}
	var rows [][]string
	for _, img := range d.GetImages() {
		m := "not mounted"
		if img.GetMounted() {
			m = "mounted"
		}
		rows = append(rows, []string{"image", img.GetName(), short(img.GetDigest()), img.GetPath(), m})
	}
	for _, o := range d.GetOverlays() {
		rows = append(rows, []string{"overlay", o.GetName(), "image " + o.GetImage(), o.GetPath(), ""})
		for _, b := range o.GetBinds() {
			rows = append(rows, []string{"  bind", b.GetVolume(), "", o.GetPath() + b.GetPath(), map[bool]string{true: "read-only"}[b.GetReadOnly()]})
		}
	}
	for _, v := range d.GetVolumes() {
		rows = append(rows, []string{"volume", v.GetName(), "", v.GetHostPath(), "(host)"})
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(g.stdout)
	return g.table([]string{"KIND", "NAME", "WHAT", "PATH", ""}, rows)
}

// limitFlags turns limit flags into Limits; empty and zero flags stay zero.
func limitFlags(memory, disk string, cpus float64, pids int64) (*containerv1.Limits, error) {
	l := &containerv1.Limits{Cpus: cpus, Pids: pids}
	for _, f := range []struct {
		flag, value string
		to          *int64
	}{{"--memory", memory, &l.MemoryBytes}, {"--disk", disk, &l.DiskBytes}} {
		if f.value == "" {
			continue
		}
		n, err := bytesize.Parse(f.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
		*f.to = n
	}
	return l, nil
}

// containerStatus shows a container, guestd's own answer and its package's daemons;
// with pkg, what its scripts set and what it waits for too (showPackageStatus).
func (g *globals) containerStatus(ctx context.Context, cl clients, name string, pkg *hostv1.GetStatusResponse) error {
	resp, err := cl.containers.GetContainer(ctx, &containerv1.GetContainerRequest{Name: name})
	if err != nil {
		return err
	}
	var daemons *guestv1.GetStatusResponse
	if gi := resp.GetGuest(); gi != nil && gi.GetPackage() != "" {
		if daemons, err = cl.guest.GetStatus(forContainer(ctx, name), &guestv1.GetStatusRequest{}); err != nil {
			return err
		}
	}
	if g.output == "json" {
		// One document: the container, and its package's daemons under "status"
		// (null when it runs no package).
		if pkg != nil {
			return g.printJSONWithAll(resp, map[string]proto.Message{"status": daemons, "package_status": pkg})
		}
		return g.printJSONWith(resp, "status", daemons)
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
	if c.GetAddress() != "" {
		kv = append(kv, "address", c.GetAddress())
	} else if c.GetState() == containerv1.ContainerState_CONTAINER_STATE_RUNNING {
		kv = append(kv, "address", "none (loopback only: netd is not running)")
	}
	if gi := resp.GetGuest(); gi != nil && gi.GetPackage() != "" {
		kv = append(kv, "package", gi.GetPackage())
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
	if err := g.fields(kv...); err != nil {
		return err
	}
	if daemons != nil {
		fmt.Fprintln(g.stdout)
		if err := g.showDaemons(daemons.GetDaemons()); err != nil {
			return err
		}
	}
	return g.showPackageStatus(pkg)
}
