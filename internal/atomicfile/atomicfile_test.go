package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWriteReplacesWithModeAndOwner: Write (synced) and Replace (not) replace the file
// whole, with its mode (and Write's owner), leave no temporary, and replace a symlink at
// the name instead of following it.
func TestWriteReplacesWithModeAndOwner(t *testing.T) {
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = 12345, 23456
	}
	for _, tc := range []struct {
		name     string
		write    func(path string, data []byte, mode os.FileMode) error
		uid, gid int
	}{
		{"synced", func(p string, d []byte, m os.FileMode) error { return WriteOwned(p, d, m, uid, gid) }, uid, gid},
		{"replace", func(p string, d []byte, m os.FileMode) error { return ReplaceOwned(p, d, m, uid, gid) }, uid, gid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(p, []byte("new"), 0o640); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != "new" || fi.Mode().Perm() != 0o640 {
				t.Fatalf("content %q mode %v", b, fi.Mode())
			}
			if st := fi.Sys().(*syscall.Stat_t); tc.uid >= 0 && (int(st.Uid) != tc.uid || int(st.Gid) != tc.gid) {
				t.Fatalf("owner %d:%d, want %d:%d", st.Uid, st.Gid, tc.uid, tc.gid)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("temporary files left: %v", ents)
			}
			// A symlink at the name is replaced, never followed.
			target := filepath.Join(dir, "target")
			os.WriteFile(target, []byte("keep"), 0o600)
			link := filepath.Join(dir, "link")
			os.Symlink(target, link)
			if err := tc.write(link, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(target); string(b) != "keep" {
				t.Fatalf("write through a symlink changed its target: %q", b)
			}
		})
	}
}

func TestCommitDir(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".tmp")
	os.MkdirAll(filepath.Join(tmp, "a"), 0o755)
	os.WriteFile(filepath.Join(tmp, "a", "f"), []byte("data"), 0o644)
	final := filepath.Join(dir, "final")
	if err := CommitDir(tmp, final); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(final, "a", "f")); err != nil || string(b) != "data" {
		t.Fatalf("after commit: %q %v", b, err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("tmp still there: %v", err)
	}
	if err := CommitDir(filepath.Join(dir, "missing"), final+"2"); err == nil {
		t.Fatal("committing a missing tree succeeded")
	}
}
