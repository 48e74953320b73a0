// Package imageapi serves ImageService over the image store, streaming progress for
// imports and pulls. Handlers return the store's errors as they are: the server maps
// their kinds to gRPC codes.
package imageapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/internal/images"
)

// Service implements ImageService.
type Service struct {
	containerv1.UnimplementedImageServiceServer
	s *images.Service
}

var _ containerv1.ImageServiceServer = (*Service)(nil)

// New returns the service over s.
func New(s *images.Service) *Service { return &Service{s: s} }

// progressSender sends progress at most every 100ms, and every phase change.
func progressSender[T any](stream grpc.ServerStreamingServer[T], wrap func(*containerv1.ImageProgress) *T) func(images.Progress) {
	var last time.Time
	var lastPhase string
	return func(p images.Progress) {
		if p.Phase == lastPhase && time.Since(last) < 100*time.Millisecond && p.LayersDone != p.LayersTotal {
			return
		}
		last, lastPhase = time.Now(), p.Phase
		_ = stream.Send(wrap(&containerv1.ImageProgress{
			Phase: p.Phase, Layer: p.Layer, LayersDone: int32(p.LayersDone), LayersTotal: int32(p.LayersTotal),
			BytesDone: p.BytesDone, BytesTotal: p.BytesTotal,
		}))
	}
}

// ImportImage implements ImageService.
func (s *Service) ImportImage(req *containerv1.ImportImageRequest, stream grpc.ServerStreamingServer[containerv1.ImportImageResponse]) error {
	send := progressSender(stream, func(p *containerv1.ImageProgress) *containerv1.ImportImageResponse {
		return &containerv1.ImportImageResponse{Event: &containerv1.ImportImageResponse_Progress{Progress: p}}
	})
	img, err := s.s.Import(stream.Context(), req.GetPath(), req.GetName(), send)
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.ImportImageResponse{Event: &containerv1.ImportImageResponse_Image{Image: ToProto(img)}})
}

// PullImage implements ImageService.
func (s *Service) PullImage(req *containerv1.PullImageRequest, stream grpc.ServerStreamingServer[containerv1.PullImageResponse]) error {
	send := progressSender(stream, func(p *containerv1.ImageProgress) *containerv1.PullImageResponse {
		return &containerv1.PullImageResponse{Event: &containerv1.PullImageResponse_Progress{Progress: p}}
	})
	img, err := s.s.Pull(stream.Context(), req.GetReference(), req.GetName(), req.GetInsecure(), send)
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.PullImageResponse{Event: &containerv1.PullImageResponse_Image{Image: ToProto(img)}})
}

// ListImages implements ImageService.
func (s *Service) ListImages(ctx context.Context, _ *containerv1.ListImagesRequest) (*containerv1.ListImagesResponse, error) {
	list, err := s.s.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListImagesResponse{}
	for _, img := range list {
		resp.Images = append(resp.Images, ToProto(img))
	}
	return resp, nil
}

// GetImage implements ImageService.
func (s *Service) GetImage(ctx context.Context, req *containerv1.GetImageRequest) (*containerv1.GetImageResponse, error) {
	img, err := s.s.Get(ctx, req.GetRef())
	if err != nil {
		return nil, err
	}
	return &containerv1.GetImageResponse{Image: ToProto(img)}, nil
}

// TagImage implements ImageService.
func (s *Service) TagImage(ctx context.Context, req *containerv1.TagImageRequest) (*containerv1.TagImageResponse, error) {
	img, err := s.s.Tag(ctx, req.GetRef(), req.GetName())
	if err != nil {
		return nil, err
	}
	return &containerv1.TagImageResponse{Image: ToProto(img)}, nil
}

// DeleteImage implements ImageService.
func (s *Service) DeleteImage(ctx context.Context, req *containerv1.DeleteImageRequest) (*containerv1.DeleteImageResponse, error) {
	deleted, err := s.s.Delete(ctx, req.GetRef(), req.GetForce())
	if err != nil {
		return nil, err
	}
	return &containerv1.DeleteImageResponse{Deleted: deleted}, nil
}

// PruneImages implements ImageService.
func (s *Service) PruneImages(ctx context.Context, _ *containerv1.PruneImagesRequest) (*containerv1.PruneImagesResponse, error) {
	deleted, freed, err := s.s.Prune(ctx)
	if err != nil {
		return nil, err
	}
	return &containerv1.PruneImagesResponse{Deleted: deleted, BytesFreed: freed}, nil
}

// ToProto converts an image for the API.
func ToProto(img images.Image) *containerv1.Image {
	c := img.Config
	return &containerv1.Image{
		Digest: img.Digest, Names: img.Names, Size: img.Size, CreatedAt: timestamppb.New(img.CreatedAt),
		Rootfs: img.Rootfs, UsedBy: img.UsedBy,
		Config: &containerv1.ImageConfig{
			Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, User: c.User, WorkingDir: c.WorkingDir,
			ExposedPorts: c.ExposedPorts, Labels: c.Labels,
		},
	}
}
