package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"hearth.dev/internal/errdefs"
)

func TestFSStoreLoadListDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store("ca/g1/root.key", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store("ca/g1/root.pem", []byte("cert")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store("ca/index.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("ca/g1/root.key")
	if err != nil || string(got) != "secret" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	// Every file 0600, every directory 0700.
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(FileMode)
		if fi.IsDir() {
			want = DirMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.List("ca")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ca/g1", "ca/index.json"}; !slices.Equal(keys, want) {
		t.Errorf("List(ca) = %q, want %q", keys, want)
	}
	if keys, err := s.List("nothing/here"); err != nil || len(keys) != 0 {
		t.Errorf("List of a missing prefix = %q, %v", keys, err)
	}
	if err := s.Delete("ca/g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("ca/g1/root.key"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Load after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete("ca/g1"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"certs/web.local-1a2b/cert.pem", true},
		{"index.json", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x", false},
		{"a/../../x", false},
		{"a//b", false},
		{"a/./b", false},
		{"a/", false},
		{"a/.hidden", false},
		{`a\b`, false},
	} {
		err := CheckKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CheckKey(%q) = %v, want ErrInvalidArgument", tc.key, err)
		}
	}
}

func TestJSONRoundTripAndDamage(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ A string }
	if err := StoreJSON(s, "r.json", rec{"x"}); err != nil {
		t.Fatal(err)
	}
	var r rec
	if err := LoadJSON(s, "r.json", &r); err != nil || r.A != "x" {
		t.Fatalf("LoadJSON = %+v, %v", r, err)
	}
	if err := s.Store("bad.json", []byte("{")); err != nil {
		t.Fatal(err)
	}
	if err := LoadJSON(s, "bad.json", &r); err == nil {
		t.Error("LoadJSON of damaged JSON succeeded")
	}
}
