package store

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth.dev/internal/errdefs"
)

func TestContainersRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(); v != SchemaVersion {
		t.Fatalf("new database at schema %d, want %d", v, SchemaVersion)
	}
	now := time.Now().UTC().Round(0)
	for _, n := range []string{"b", "a"} {
		if err := s.PutContainer(Container{Name: n, CreatedAt: now, BaseRootfs: "/base"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetContainer("a")
	if err != nil || got.Name != "a" || !got.CreatedAt.Equal(now) || got.BaseRootfs != "/base" {
		t.Fatalf("GetContainer = %+v, %v", got, err)
	}
	if _, err := s.GetContainer("zzz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing container: %v, want ErrNotFound", err)
	}
	list, err := s.ListContainers()
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("ListContainers = %+v, %v", list, err)
	}
	if err := s.DeleteContainer("a"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Records survive a reopen.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if list, _ := s.ListContainers(); len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("after reopen: %+v", list)
	}
}

func TestMigrationFromEmptyV0(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	// A version-0 database: bbolt file with no buckets at all.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(); v != SchemaVersion {
		t.Fatalf("schema %d after migration, want %d", v, SchemaVersion)
	}
	if err := s.PutContainer(Container{Name: "x"}); err != nil {
		t.Fatalf("write after migration: %v", err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		return b.Put(schemaKey, binary.BigEndian.AppendUint64(nil, SchemaVersion+5))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer than this containerd-lite") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestOpenHeldByAnother(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("second Open: %v, want ErrUnavailable", err)
	}
}

func writeV(t *testing.T, path string, v uint64, containers map[string]string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		if err := meta.Put(schemaKey, binary.BigEndian.AppendUint64(nil, v)); err != nil {
			return err
		}
		b, err := tx.CreateBucket(containersBucket)
		if err != nil {
			return err
		}
		if v >= 2 {
			for _, n := range [][]byte{imagesBucket, namesBucket} {
				if _, err := tx.CreateBucket(n); err != nil {
					return err
				}
			}
		}
		for k, rec := range containers {
			if err := b.Put([]byte(k), []byte(rec)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrationV1ToV3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	writeV(t, path, 1, nil)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(); v != SchemaVersion {
		t.Fatalf("schema %d, want %d", v, SchemaVersion)
	}
	if err := s.PutImage(Image{Digest: "sha256:aa"}, "app:1"); err != nil {
		t.Fatalf("images bucket missing after migration: %v", err)
	}
	if names, _ := s.NamesOf("sha256:aa"); len(names) != 1 || names[0] != "app:1" {
		t.Fatalf("NamesOf = %v", names)
	}
	if err := s.DeleteImage("sha256:aa"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Names(); len(n) != 0 {
		t.Fatalf("names left after DeleteImage: %v", n)
	}
	k := Kept{Name: "a", IDBase: 165536, Volumes: []string{"data"}, DiskBytes: 1 << 30}
	if err := s.PutKept(k); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetKept("a"); err != nil || got.IDBase != k.IDBase || len(got.Volumes) != 1 {
		t.Fatalf("GetKept = %+v, %v", got, err)
	}
	if l, _ := s.ListKept(); len(l) != 1 {
		t.Fatalf("ListKept = %v", l)
	}
	if err := s.DeleteKept("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKept("a"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetKept after delete: %v", err)
	}
}

// Containers of schema 2 share one id range: the migration refuses them, says what to
// do, and leaves the database as it was.
func TestMigrationV2RefusesSharedRangeContainers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	writeV(t, path, 2, map[string]string{"old": `{"name":"old","created_at":"2026-01-02T03:04:05Z","base_rootfs":"/b"}`})
	_, err := Open(path)
	if err == nil || !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "1 containers") || !strings.Contains(err.Error(), "--purge-volumes") {
		t.Fatalf("Open = %v, want a refusal naming the containers and the fix", err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := version(tx); v != 2 {
			t.Errorf("schema %d after a refused migration, want 2", v)
		}
		if tx.Bucket(containersBucket).Get([]byte("old")) == nil {
			t.Error("the old record is gone")
		}
		return nil
	})
}

func TestPackagesAndJournal(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := Package{ID: "pg", Version: "1.0.0", Container: "pg", Images: map[string]string{"db": "sha256:aa"}, InstalledAt: time.Now().UTC()}
	j := Journal{Op: "install", ID: "pg", Step: "images", To: &p}
	if err := s.PutJournal(j); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetJournal("pg"); err != nil || got.Step != "images" || got.To.Images["db"] != "sha256:aa" {
		t.Fatalf("GetJournal = %+v, %v", got, err)
	}
	if _, err := s.GetPackage("pg"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("package before commit: %v", err)
	}
	// Commit stores the package and ends the journal at once.
	if err := s.CommitPackage(p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJournal("pg"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("journal after commit: %v", err)
	}
	if got, err := s.GetPackage("pg"); err != nil || got.Version != "1.0.0" {
		t.Fatalf("GetPackage = %+v, %v", got, err)
	}
	if users, _ := s.PackagesUsing("sha256:aa"); len(users) != 1 || users[0] != "pg" {
		t.Fatalf("PackagesUsing = %v", users)
	}
	if l, _ := s.ListPackages(); len(l) != 1 {
		t.Fatalf("ListPackages = %v", l)
	}
	s.PutJournal(Journal{Op: "uninstall", ID: "pg", Step: "deleted"})
	if err := s.RemovePackage("pg"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.ListJournal(); len(l) != 0 {
		t.Fatalf("journal after remove: %v", l)
	}
	if l, _ := s.ListPackages(); len(l) != 0 {
		t.Fatalf("packages after remove: %v", l)
	}
}
