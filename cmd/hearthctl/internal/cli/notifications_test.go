package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// notes stands in for containerd-lite's NotificationService: two notifications of web,
// one of db (dismissed).
type notes struct {
	containerv1.UnimplementedNotificationServiceServer
	list []*containerv1.Notification
}

func (n *notes) ListNotifications(_ context.Context, req *containerv1.ListNotificationsRequest) (*containerv1.ListNotificationsResponse, error) {
	resp := &containerv1.ListNotificationsResponse{}
	for _, x := range n.list {
		if (req.GetPackage() == "" || x.GetPackage() == req.GetPackage()) && (req.GetAll() || !x.GetDismissed()) {
			resp.Notifications = append(resp.Notifications, x)
		}
	}
	return resp, nil
}

func (n *notes) DismissNotification(_ context.Context, req *containerv1.DismissNotificationRequest) (*containerv1.DismissNotificationResponse, error) {
	var count uint32
	for _, id := range req.GetIds() {
		if !slices.ContainsFunc(n.list, func(x *containerv1.Notification) bool { return x.GetId() == id }) {
			return nil, fmt.Errorf("notification %q: %w", id, errdefs.ErrNotFound)
		}
	}
	for _, x := range n.list {
		if !x.GetDismissed() && (slices.Contains(req.GetIds(), x.GetId()) || (len(req.GetIds()) == 0 && x.GetPackage() == req.GetPackage())) {
			x.Dismissed = true
			count++
		}
	}
	return &containerv1.DismissNotificationResponse{Dismissed: count}, nil
}

func notesLab(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ago := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(-d)) }
	n := &notes{list: []*containerv1.Notification{
		{Id: "3", Package: "web", Level: "warning", Title: "Disk nearly full", Message: "90% used\nclean up", CreatedAt: ago(time.Minute)},
		{Id: "2", Package: "db", Level: "info", Title: "Vacuumed", CreatedAt: ago(time.Hour), Dismissed: true},
		{Id: "1", Package: "web", Level: "success", Title: "Backup done", CreatedAt: ago(2 * time.Hour)},
	}}
	serve(t, dir, "containerd-lite", func(s *grpcserver.Server) { containerv1.RegisterNotificationServiceServer(s, n) })
	return dir
}

func TestNotificationsCommand(t *testing.T) {
	dir := notesLab(t)
	for _, tc := range []struct {
		args          []string
		code          int
		want, notWant []string // in stdout (stderr when code != 0)
	}{
		{[]string{"notifications"}, 0, []string{"ID", "PACKAGE", "LEVEL", "Disk nearly full", "90% used ...", "Backup done", "1m0s ago"}, []string{"Vacuumed", "clean up"}},
		{[]string{"notifications", "ls", "--all"}, 0, []string{"Vacuumed", "info (dismissed)"}, nil},
		{[]string{"notifications", "ls", "--package", "db"}, 0, []string{"no notifications"}, []string{"Disk"}},
		{[]string{"notifications", "dismiss"}, 1, []string{"give the ids to dismiss"}, nil},
		{[]string{"notifications", "dismiss", "9"}, 1, []string{`notification "9": not found (NotFound)`}, nil},
		{[]string{"notifications", "dismiss", "3"}, 0, []string{"1 dismissed"}, nil},
		{[]string{"notifications", "dismiss", "--package", "web"}, 0, []string{"1 dismissed"}, nil},
		{[]string{"notifications"}, 0, []string{"no notifications"}, nil},
	} {
		code, out, errOut := run(t, dir, tc.args...)
		if code != tc.code {
			t.Fatalf("%v: exit %d, want %d\n%s%s", tc.args, code, tc.code, out, errOut)
		}
		got := out
		if code != 0 {
			got = errOut
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: no %q in:\n%s", tc.args, w, got)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(got, w) {
				t.Errorf("%v: %q in:\n%s", tc.args, w, got)
			}
		}
	}
}

func TestNotificationsJSON(t *testing.T) {
	dir := notesLab(t)
	code, out, errOut := run(t, dir, "-o", "json", "notifications", "ls", "--all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Notifications []struct {
			ID        string `json:"id"`
			Package   string `json:"package"`
			Message   string `json:"message"`
			Dismissed bool   `json:"dismissed"`
		} `json:"notifications"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Notifications) != 3 || doc.Notifications[0].Message != "90% used\nclean up" || !doc.Notifications[1].Dismissed {
		t.Fatalf("notifications -o json: %v\n%s", err, out)
	}
	code, out, _ = run(t, dir, "-o", "json", "notifications", "dismiss", "1", "3")
	var d struct{ Dismissed int }
	if err := json.Unmarshal([]byte(out), &d); code != 0 || err != nil || d.Dismissed != 2 {
		t.Errorf("dismiss -o json: exit %d, %v\n%s", code, err, out)
	}
}
