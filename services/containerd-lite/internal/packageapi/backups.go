package packageapi

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/internal/backup"
	"hearth.dev/services/containerd-lite/internal/packages"
)

// Backups is the package manager's backup side.
type Backups interface {
	Backup(ctx context.Context, id string, r packages.Repo, progress func(packages.Progress)) (backup.Snapshot, int64, error)
	Snapshots(ctx context.Context, r packages.Repo, id string) ([]backup.Snapshot, error)
	PruneSnapshots(ctx context.Context, r packages.Repo, id string, keep int) (int, error)
	Restore(ctx context.Context, id string, r packages.Repo, snapshotID string, pkg io.Reader, op packages.Op) (packages.Result, error)
}

// BackupService implements BackupService.
type BackupService struct {
	containerv1.UnimplementedBackupServiceServer
	b   Backups
	svc *Service
}

var _ containerv1.BackupServiceServer = (*BackupService)(nil)

// NewBackups returns the service; svc reports packages.
func NewBackups(b Backups, svc *Service) *BackupService { return &BackupService{b: b, svc: svc} }

func repo(r *containerv1.BackupRepository) packages.Repo {
	return packages.Repo{Dir: r.GetDir(), Password: r.GetPassword()}
}

func snapshotProto(s backup.Snapshot, stored int64) *containerv1.Snapshot {
	return &containerv1.Snapshot{Id: s.ID, Package: s.Package, Version: s.Version, Time: timestamppb.New(s.Time), Volumes: s.Volumes,
		Files: s.Files, Dirs: s.Dirs, Bytes: s.Bytes, Unchanged: s.Unchanged, StoredBytes: stored}
}

// BackupPackage implements BackupService.
func (s *BackupService) BackupPackage(req *containerv1.BackupPackageRequest, stream grpc.ServerStreamingServer[containerv1.BackupPackageResponse]) error {
	snap, stored, err := s.b.Backup(stream.Context(), req.GetId(), repo(req.GetRepository()), progress(func(p *containerv1.PackageProgress) error {
		return stream.Send(&containerv1.BackupPackageResponse{Event: &containerv1.BackupPackageResponse_Progress{Progress: p}})
	}))
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.BackupPackageResponse{Event: &containerv1.BackupPackageResponse_Snapshot{Snapshot: snapshotProto(snap, stored)}})
}

// ListBackups implements BackupService.
func (s *BackupService) ListBackups(ctx context.Context, req *containerv1.ListBackupsRequest) (*containerv1.ListBackupsResponse, error) {
	snaps, err := s.b.Snapshots(ctx, repo(req.GetRepository()), req.GetId())
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListBackupsResponse{}
	for _, sn := range snaps {
		resp.Snapshots = append(resp.Snapshots, snapshotProto(sn, 0))
	}
	return resp, nil
}

// PruneBackups implements BackupService.
func (s *BackupService) PruneBackups(ctx context.Context, req *containerv1.PruneBackupsRequest) (*containerv1.PruneBackupsResponse, error) {
	n, err := s.b.PruneSnapshots(ctx, repo(req.GetRepository()), req.GetId(), int(req.GetKeep()))
	if err != nil {
		return nil, err
	}
	return &containerv1.PruneBackupsResponse{Deleted: int32(n)}, nil
}

// RestorePackage implements BackupService.
func (s *BackupService) RestorePackage(stream grpc.BidiStreamingServer[containerv1.RestorePackageRequest, containerv1.RestorePackageResponse]) error {
	opts, err := firstOptions(stream.Recv, (*containerv1.RestorePackageRequest).GetOptions)
	if err != nil {
		return err
	}
	var pkg io.Reader
	if opts.GetWithPackage() {
		pkg = chunks(stream.Context(), stream.Recv, func(m *containerv1.RestorePackageRequest) ([]byte, bool) { return m.GetChunk(), m.GetOptions() == nil })
	}
	res, err := s.b.Restore(stream.Context(), opts.GetId(), repo(opts.GetRepository()), opts.GetSnapshot(), pkg, packages.Op{
		AllowUntrusted: opts.GetAllowUntrusted(),
		Progress: progress(func(p *containerv1.PackageProgress) error {
			return stream.Send(&containerv1.RestorePackageResponse{Event: &containerv1.RestorePackageResponse_Progress{Progress: p}})
		}),
	})
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.RestorePackageResponse{Event: &containerv1.RestorePackageResponse_Result{Result: s.svc.result(stream.Context(), res)}})
}
