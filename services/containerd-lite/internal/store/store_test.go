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

func TestMigrationV1ToV2KeepsContainers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		if err := meta.Put(schemaKey, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		b, err := tx.CreateBucket(containersBucket)
		if err != nil {
			return err
		}
		// A record as version 1 wrote it: no image map.
		return b.Put([]byte("old"), []byte(`{"name":"old","created_at":"2026-01-02T03:04:05Z","base_rootfs":"/b"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(); v != 2 {
		t.Fatalf("schema %d, want 2", v)
	}
	c, err := s.GetContainer("old")
	if err != nil || c.BaseRootfs != "/b" || len(c.Images) != 0 {
		t.Fatalf("old record after migration: %+v, %v", c, err)
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
}
