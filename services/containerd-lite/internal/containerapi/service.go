// Package containerapi serves ContainerService over the containers manager. Handlers
// return the manager's errors as they are: the server maps their kinds to gRPC codes.
package containerapi

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/hostapi"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Service implements ContainerService.
type Service struct {
	containerv1.UnimplementedContainerServiceServer
	m *containers.Manager
}

var _ containerv1.ContainerServiceServer = (*Service)(nil)

// New returns the service over m.
func New(m *containers.Manager) *Service { return &Service{m: m} }

// CreateContainer implements ContainerService.
func (s *Service) CreateContainer(ctx context.Context, req *containerv1.CreateContainerRequest) (*containerv1.CreateContainerResponse, error) {
	spec := containers.Spec{Images: req.GetSpec().GetImages(), Volumes: req.GetSpec().GetVolumes(), Manifest: req.GetSpec().GetManifest(), Limits: limitsFrom(req.GetSpec().GetLimits())}
	i, err := s.m.Create(ctx, req.GetName(), spec)
	if err != nil {
		return nil, err
	}
	return &containerv1.CreateContainerResponse{Container: toProto(i)}, nil
}

// SetContainerLimits implements ContainerService.
func (s *Service) SetContainerLimits(ctx context.Context, req *containerv1.SetContainerLimitsRequest) (*containerv1.SetContainerLimitsResponse, error) {
	i, l, notes, err := s.m.SetLimits(ctx, req.GetName(), limitsFrom(req.GetLimits()))
	if err != nil {
		return nil, err
	}
	return &containerv1.SetContainerLimitsResponse{Container: toProto(i), Limits: limitsProto(l), Notes: notes}, nil
}

func limitsFrom(l *containerv1.Limits) store.Limits {
	return store.Limits{MemoryBytes: l.GetMemoryBytes(), CPUs: l.GetCpus(), Pids: l.GetPids(), DiskBytes: l.GetDiskBytes()}
}

// StartContainer implements ContainerService.
func (s *Service) StartContainer(ctx context.Context, req *containerv1.StartContainerRequest) (*containerv1.StartContainerResponse, error) {
	i, err := s.m.Start(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	steps := make([]*containerv1.StartStep, len(i.Steps))
	for n, st := range i.Steps {
		steps[n] = &containerv1.StartStep{Name: st.Name, At: timestamppb.New(st.At)}
	}
	return &containerv1.StartContainerResponse{Container: toProto(i), Steps: steps}, nil
}

// StopContainer implements ContainerService.
func (s *Service) StopContainer(ctx context.Context, req *containerv1.StopContainerRequest) (*containerv1.StopContainerResponse, error) {
	var timeout time.Duration
	if req.GetTimeout() != nil {
		timeout = req.GetTimeout().AsDuration()
	}
	i, err := s.m.Stop(ctx, req.GetName(), timeout)
	if err != nil {
		return nil, err
	}
	return &containerv1.StopContainerResponse{Container: toProto(i)}, nil
}

// DeleteContainer implements ContainerService.
func (s *Service) DeleteContainer(ctx context.Context, req *containerv1.DeleteContainerRequest) (*containerv1.DeleteContainerResponse, error) {
	if err := s.m.Delete(ctx, req.GetName(), req.GetForce(), req.GetPurgeVolumes()); err != nil {
		return nil, err
	}
	return &containerv1.DeleteContainerResponse{}, nil
}

// ListContainers implements ContainerService.
func (s *Service) ListContainers(ctx context.Context, _ *containerv1.ListContainersRequest) (*containerv1.ListContainersResponse, error) {
	list, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListContainersResponse{}
	for _, i := range list {
		resp.Containers = append(resp.Containers, toProto(i))
	}
	return resp, nil
}

// GetContainer implements ContainerService. guestd is asked only when the container runs.
func (s *Service) GetContainer(ctx context.Context, req *containerv1.GetContainerRequest) (*containerv1.GetContainerResponse, error) {
	i, err := s.m.Get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	resp := &containerv1.GetContainerResponse{Container: toProto(i), Details: detailsProto(s.m.Details(ctx, i))}
	if i.State == lxcrt.Running {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if g, err := s.m.GuestInfo(gctx, i.Name); err != nil {
			resp.GuestError = err.Error()
		} else {
			resp.Guest = g
		}
	}
	return resp, nil
}

var states = map[lxcrt.State]containerv1.ContainerState{
	lxcrt.Stopped:  containerv1.ContainerState_CONTAINER_STATE_STOPPED,
	lxcrt.Missing:  containerv1.ContainerState_CONTAINER_STATE_STOPPED,
	lxcrt.Starting: containerv1.ContainerState_CONTAINER_STATE_STARTING,
	lxcrt.Running:  containerv1.ContainerState_CONTAINER_STATE_RUNNING,
	lxcrt.Stopping: containerv1.ContainerState_CONTAINER_STATE_STOPPING,
	lxcrt.Frozen:   containerv1.ContainerState_CONTAINER_STATE_FROZEN,
}

func toProto(i containers.Info) *containerv1.Container {
	c := &containerv1.Container{
		Name:      i.Name,
		State:     states[i.State],
		InitPid:   int32(i.InitPID),
		CreatedAt: timestamppb.New(i.CreatedAt),
		Rootfs:    i.Rootfs,
		RpcDir:    i.RPCDir,
		Address:   i.Address,
	}
	if !i.StartedAt.IsZero() {
		c.StartedAt = timestamppb.New(i.StartedAt)
	}
	return c
}

func limitsProto(l store.Limits) *containerv1.Limits {
	return &containerv1.Limits{MemoryBytes: l.MemoryBytes, Cpus: l.CPUs, Pids: l.Pids, DiskBytes: l.DiskBytes}
}

func detailsProto(d containers.Details) *containerv1.ContainerDetails {
	out := &containerv1.ContainerDetails{
		Limits:     limitsProto(d.Limits),
		Usage:      &containerv1.Usage{MemoryBytes: d.Usage.MemoryBytes, Pids: d.Usage.Pids, CpuSeconds: d.Usage.CPUSeconds},
		Disk:       &containerv1.DiskUsage{UsedBytes: d.DiskUsed, SizeBytes: d.DiskSize, Error: d.DiskError},
		HostIdBase: d.IDs.HostBase, HostIdCount: d.IDs.Size,
	}
	if d.CgroupError == "" {
		out.CgroupLimits = limitsProto(d.Cgroup)
	}
	for _, img := range d.Images {
		out.Images = append(out.Images, &containerv1.MountedImage{Name: img.Name, Digest: img.Digest, Path: img.Path, Mounted: img.Mounted})
	}
	for _, v := range d.Volumes {
		out.Volumes = append(out.Volumes, &containerv1.Volume{Name: v.Name, HostPath: v.HostPath})
	}
	for _, o := range d.Overlays {
		out.Overlays = append(out.Overlays, hostapi.OverlayProto(o))
	}
	return out
}
