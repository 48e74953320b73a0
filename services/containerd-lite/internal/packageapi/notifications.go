package packageapi

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/errdefs"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/internal/store"
)

// NotificationRecords are the store's notifications.
type NotificationRecords interface {
	ListNotifications(pkg string, all bool) ([]store.Notification, error)
	DismissNotifications(ids []string, pkg string) (int, error)
}

// Notifications implements NotificationService: the notifications packages leave for
// the user (notify), kept until an uninstall with purge; a package keeps its newest 100.
type Notifications struct {
	containerv1.UnimplementedNotificationServiceServer
	Records NotificationRecords
}

var _ containerv1.NotificationServiceServer = (*Notifications)(nil)

// ListNotifications implements NotificationService.
func (n *Notifications) ListNotifications(_ context.Context, req *containerv1.ListNotificationsRequest) (*containerv1.ListNotificationsResponse, error) {
	list, err := n.Records.ListNotifications(strings.TrimSpace(req.GetPackage()), req.GetAll())
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListNotificationsResponse{}
	for _, r := range list {
		resp.Notifications = append(resp.Notifications, NotificationProto(r))
	}
	return resp, nil
}

// DismissNotification implements NotificationService.
func (n *Notifications) DismissNotification(_ context.Context, req *containerv1.DismissNotificationRequest) (*containerv1.DismissNotificationResponse, error) {
	if len(req.GetIds()) == 0 && req.GetPackage() == "" {
		return nil, fmt.Errorf("say what to dismiss: notification ids, or a package (all of its): %w", errdefs.ErrInvalidArgument)
	}
	for _, id := range req.GetIds() {
		if id == "" || strings.Trim(id, "0123456789") != "" {
			return nil, fmt.Errorf("notification id %q: ids are numbers (hearthctl notifications ls shows them): %w", id, errdefs.ErrInvalidArgument)
		}
	}
	count, err := n.Records.DismissNotifications(req.GetIds(), strings.TrimSpace(req.GetPackage()))
	if err != nil {
		return nil, err
	}
	return &containerv1.DismissNotificationResponse{Dismissed: uint32(count)}, nil
}

// NotificationProto converts a notification for the API.
func NotificationProto(r store.Notification) *containerv1.Notification {
	return &containerv1.Notification{Id: r.ID, Package: r.Package, Level: r.Level, Title: r.Title, Message: r.Message,
		CreatedAt: timestamppb.New(r.CreatedAt), Dismissed: r.Dismissed}
}
