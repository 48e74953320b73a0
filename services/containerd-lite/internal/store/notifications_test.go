package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func ids(ns []Notification) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func TestNotificationsBoundedAndOrdered(t *testing.T) {
	s, path := openTemp(t)
	if got, err := s.ListNotifications("", true); err != nil || len(got) != 0 {
		t.Fatalf("a new database lists %v, %v; want none", got, err)
	}
	now := time.Now().UTC()
	// a: 5 notifications kept at most 3; b: 2 in between.
	var added []string
	for i := range 7 {
		pkg := "a"
		if i == 2 || i == 4 {
			pkg = "b"
		}
		n, err := s.AddNotification(Notification{Package: pkg, Level: "info", Title: fmt.Sprint("t", i), CreatedAt: now}, 3)
		if err != nil {
			t.Fatal(err)
		}
		added = append(added, n.ID)
	}
	if !slices.Equal(added, []string{"1", "2", "3", "4", "5", "6", "7"}) {
		t.Fatalf("ids %v, want 1..7", added)
	}
	for _, tc := range []struct {
		pkg  string
		want []string
	}{
		{"a", []string{"7", "6", "4"}}, // 1 and 2 dropped: the oldest beyond 3
		{"b", []string{"5", "3"}},
		{"", []string{"7", "6", "5", "4", "3"}},
		{"c", nil},
	} {
		got, err := s.ListNotifications(tc.pkg, false)
		if err != nil || !slices.Equal(ids(got), tc.want) {
			t.Errorf("ListNotifications(%q) = %v, %v; want %v", tc.pkg, ids(got), err, tc.want)
		}
	}
	// Kept across a reopen, and the sequence goes on.
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.AddNotification(Notification{Package: "b", Level: "error", Title: "after"}, 3)
	if err != nil || n.ID != "8" {
		t.Fatalf("after reopen: %+v, %v; want id 8", n, err)
	}
	got, _ := s.ListNotifications("b", false)
	if !slices.Equal(ids(got), []string{"8", "5", "3"}) || got[0].Title != "after" || got[0].Level != "error" {
		t.Fatalf("b after reopen: %+v", got)
	}
}

func TestDismissNotifications(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ids       []string
		pkg       string
		wantN     int
		wantErr   error
		remaining []string // not dismissed, newest first
	}{
		{"one id", []string{"2"}, "", 1, nil, []string{"4", "3", "1"}},
		{"ids of two packages", []string{"1", "3"}, "", 2, nil, []string{"4", "2"}},
		{"a package", nil, "a", 2, nil, []string{"4", "3"}},
		{"an id of that package", []string{"3"}, "b", 1, nil, []string{"4", "2", "1"}},
		{"an unknown id changes nothing", []string{"1", "99"}, "", 0, errdefs.ErrNotFound, []string{"4", "3", "2", "1"}},
		{"another package's id changes nothing", []string{"1"}, "b", 0, errdefs.ErrNotFound, []string{"4", "3", "2", "1"}},
		{"a package with none", nil, "zzz", 0, nil, []string{"4", "3", "2", "1"}},
		{"dismissed twice counts once", []string{"2", "2"}, "", 1, nil, []string{"4", "3", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			for _, pkg := range []string{"a", "a", "b", "b"} {
				if _, err := s.AddNotification(Notification{Package: pkg, Level: "info", Title: "x"}, 100); err != nil {
					t.Fatal(err)
				}
			}
			n, err := s.DismissNotifications(tc.ids, tc.pkg)
			if n != tc.wantN || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("DismissNotifications(%v, %q) = %d, %v; want %d, %v", tc.ids, tc.pkg, n, err, tc.wantN, tc.wantErr)
			}
			got, _ := s.ListNotifications("", false)
			if !slices.Equal(ids(got), tc.remaining) {
				t.Errorf("left %v, want %v", ids(got), tc.remaining)
			}
			all, _ := s.ListNotifications("", true)
			if len(all) != 4 {
				t.Errorf("with --all: %d, want the 4", len(all))
			}
			if n, _ := s.DismissNotifications(tc.ids, tc.pkg); n != 0 {
				t.Errorf("dismissing again dismissed %d", n)
			}
		})
	}
}

func TestDeleteNotifications(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.DeleteNotifications("a"); err != nil {
		t.Fatalf("delete with no bucket: %v", err)
	}
	for _, pkg := range []string{"a", "b", "a"} {
		if _, err := s.AddNotification(Notification{Package: pkg, Title: "x"}, 100); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNotifications("a"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.ListNotifications("", true)
	if !slices.Equal(ids(got), []string{"2"}) || got[0].Package != "b" {
		t.Fatalf("after deleting a's: %+v", got)
	}
}

func TestDataVersion(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.DataVersion("p"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("data version of a missing package: %v, want ErrNotFound", err)
	}
	if err := s.SetDataVersion("p", "1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("set on a missing package: %v, want ErrNotFound", err)
	}
	// Installing: the journal's new record takes it, and the commit keeps it.
	to := Package{ID: "p", Version: "1.0.0"}
	if err := s.PutJournal(Journal{Op: "install", ID: "p", Step: "started", To: &to}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetDataVersion("p", "1"))
	if v, err := s.DataVersion("p"); v != "1" || err != nil {
		t.Fatalf("during install: %q, %v", v, err)
	}
	// A later step journals the operation again, from the operation's own copy.
	must(s.PutJournal(Journal{Op: "install", ID: "p", Step: "ready", To: &to}))
	if v, _ := s.DataVersion("p"); v != "1" {
		t.Fatalf("after another step: %q", v)
	}
	must(s.CommitPackage(to))
	if p, _ := s.GetPackage("p"); p.DataVersion != "1" {
		t.Fatalf("committed record: %+v", p)
	}
	// An update under way sets the new record's; a rollback (the journal dropped) keeps
	// the installed one's.
	from, _ := s.GetPackage("p")
	to = from
	to.Version = "2.0.0"
	must(s.PutJournal(Journal{Op: "update", ID: "p", Step: "started", From: &from, To: &to}))
	must(s.SetDataVersion("p", "2"))
	if p, _ := s.GetPackage("p"); p.DataVersion != "1" {
		t.Fatalf("installed record changed during an update: %+v", p)
	}
	if v, _ := s.DataVersion("p"); v != "2" {
		t.Fatalf("during the update: %q, want 2", v)
	}
	must(s.DeleteJournal("p"))
	if v, _ := s.DataVersion("p"); v != "1" {
		t.Fatalf("after a rollback: %q, want 1", v)
	}
	// The rolled-back version does not come back with the next operation's commit.
	must(s.PutJournal(Journal{Op: "update", ID: "p", Step: "started", From: &from, To: &to}))
	must(s.CommitPackage(to))
	if p, _ := s.GetPackage("p"); p.DataVersion != "1" || p.Version != "2.0.0" {
		t.Fatalf("a commit after a rolled-back set: %+v", p)
	}
	must(s.CommitPackage(from))
	// No operation: the installed record.
	must(s.SetDataVersion("p", "3"))
	if p, _ := s.GetPackage("p"); p.DataVersion != "3" || p.Version != "1.0.0" {
		t.Fatalf("installed record: %+v", p)
	}
	// An uninstall's journal has no new record: the installed one still counts.
	must(s.PutJournal(Journal{Op: "uninstall", ID: "p", Step: "started", From: &from}))
	if v, _ := s.DataVersion("p"); v != "3" {
		t.Fatalf("during uninstall: %q", v)
	}
}
