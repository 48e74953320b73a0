package backup

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"google.golang.org/grpc/codes"

	"hearth.dev/internal/errdefs"
)

func TestWrongPassword(t *testing.T) {
	ctx := testContext(t)
	r, dir := openTestRepo(t, ctx)
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "f"), 1000, 1, 0o644, os.Getuid(), os.Getgid())
	if _, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, pw := range []string{"wrong", testPassword + " ", strings.ToUpper(testPassword)} {
		_, err := Open(ctx, dir, pw, Options{TempDir: t.TempDir()})
		if !errors.Is(err, errdefs.ErrPermissionDenied) || errors.Is(err, ErrDamaged) ||
			errdefs.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "wrong password") {
			t.Errorf("Open with password %q: %v (code %v), want a wrong password", pw, err, errdefs.Code(err))
		}
	}
	if _, err := Open(ctx, dir, "", Options{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open with no password: %v", err)
	}
	r2, err := Open(ctx, dir, testPassword, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Open with the right password after wrong ones: %v", err)
	}
	r2.Close()
}

func TestOpenRefusesOtherDirectories(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "photo.jpg"), []byte("not a repository"), 0o644))
	_, err := Open(ctx, dir, testPassword, Options{TempDir: t.TempDir()})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open on a directory holding other files: %v, want InvalidArgument", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("Open changed the directory: %v", ents)
	}
}

// damageFixture is a repository holding one snapshot, closed, with where its needed
// pieces lie.
type damageFixture struct {
	dir      string
	id       string
	dataPack string // a pack of file data, and a content in it (offset and length)
	dataOff  int64
	dataLen  int64
	metaPack string // the pack of the snapshot's root directory object, and where it is
	metaOff  int64
	metaLen  int64
	index    string // the largest index blob
}

func newDamageFixture(t *testing.T) damageFixture {
	ctx := testContext(t)
	r, dir := openTestRepo(t, ctx)
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "big"), 3<<20, 1, 0o644, os.Getuid(), os.Getgid())
	writeFile(t, filepath.Join(vol, "sub/small"), 300, 2, 0o644, os.Getuid(), os.Getgid())
	must(t, os.Symlink("sub/small", filepath.Join(vol, "link")))
	snap, err := r.Backup(ctx, "p", Meta{Version: "1"}, map[string]string{"v": vol}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := damageFixture{dir: dir, id: snap.ID}
	man, err := snapshot.LoadSnapshot(ctx, r.rep, manifest.ID(snap.ID))
	must(t, err)
	rootCID, _, ok := man.RootEntry.ObjectID.ContentID()
	if !ok {
		t.Fatal("root object has no content")
	}
	err = r.rep.ContentReader().IterateContents(ctx, content.IterateOptions{}, func(ci content.Info) error {
		switch {
		case ci.ContentID == rootCID:
			f.metaPack, f.metaOff, f.metaLen = string(ci.PackBlobID), int64(ci.PackOffset), int64(ci.PackedLength)
		case strings.HasPrefix(string(ci.PackBlobID), "p") && int64(ci.PackedLength) > f.dataLen:
			f.dataPack, f.dataOff, f.dataLen = string(ci.PackBlobID), int64(ci.PackOffset), int64(ci.PackedLength)
		}
		return nil
	})
	must(t, err)
	if f.metaPack == "" || f.dataPack == "" {
		t.Fatalf("pieces not found: %+v", f)
	}
	var best int64
	for _, p := range repoFiles(t, dir, "xn") {
		if info, _ := os.Stat(filepath.Join(dir, p)); info.Size() > best {
			best, f.index = info.Size(), p
		}
	}
	r.Close()
	f.dataPack, f.metaPack = blobPath(t, dir, f.dataPack), blobPath(t, dir, f.metaPack)
	return f
}

// blobPath finds the file of a blob (its id, sharded into directories, plus ".f").
func blobPath(t *testing.T, dir, id string) string {
	t.Helper()
	var found string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if strings.ReplaceAll(strings.TrimSuffix(rel, ".f"), "/", "") == id {
			found = rel
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no file for blob %s", id)
	}
	return found
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0x01
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func half(t *testing.T, p string) int64 {
	info, err := os.Stat(p)
	must(t, err)
	return info.Size() / 2
}

// A flipped byte, a truncated file or a deleted file, in each kind of piece a restore
// needs: Open or Verify fails with ErrDamaged (gRPC DataLoss), before a restore would
// touch anything; a restore run anyway fails too.
func TestDamageFoundBeforeRestore(t *testing.T) {
	fx := newDamageFixture(t)
	const formatBlob = "kopia.repository.f"
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"format blob: flipped byte", func(t *testing.T, d string) {
			flip(t, filepath.Join(d, formatBlob), half(t, filepath.Join(d, formatBlob)))
		}},
		{"format blob: flipped byte in its key salt", func(t *testing.T, d string) {
			b, err := os.ReadFile(filepath.Join(d, formatBlob))
			must(t, err)
			i := strings.Index(string(b), `"uniqueID": "`)
			if i < 0 {
				t.Fatalf("no uniqueID in %s", b)
			}
			b[i+14] ^= 0x01 // a base64 letter: still valid JSON, another salt
			must(t, os.WriteFile(filepath.Join(d, formatBlob), b, 0o600))
		}},
		{"format blob: truncated", func(t *testing.T, d string) {
			must(t, os.Truncate(filepath.Join(d, formatBlob), half(t, filepath.Join(d, formatBlob))))
		}},
		{"format blob: deleted", func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, formatBlob))) }},
		{"blob configuration: flipped byte", func(t *testing.T, d string) { flip(t, filepath.Join(d, "kopia.blobcfg.f"), 10) }},
		{"index: flipped byte", func(t *testing.T, d string) { flip(t, filepath.Join(d, fx.index), half(t, filepath.Join(d, fx.index))) }},
		{"index: truncated", func(t *testing.T, d string) {
			must(t, os.Truncate(filepath.Join(d, fx.index), half(t, filepath.Join(d, fx.index))))
		}},
		{"index: deleted", func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, fx.index))) }},
		{"file data: flipped byte", func(t *testing.T, d string) { flip(t, filepath.Join(d, fx.dataPack), fx.dataOff+fx.dataLen/2) }},
		{"file data: truncated", func(t *testing.T, d string) {
			must(t, os.Truncate(filepath.Join(d, fx.dataPack), fx.dataOff+fx.dataLen/2))
		}},
		{"file data: deleted", func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, fx.dataPack))) }},
		{"directory listing: flipped byte", func(t *testing.T, d string) { flip(t, filepath.Join(d, fx.metaPack), fx.metaOff+fx.metaLen/2) }},
		{"directory listing: truncated", func(t *testing.T, d string) {
			must(t, os.Truncate(filepath.Join(d, fx.metaPack), fx.metaOff+fx.metaLen/2))
		}},
		{"directory listing: deleted", func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, fx.metaPack))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			dir := filepath.Join(t.TempDir(), "repo")
			copyTree(t, fx.dir, dir)
			tc.damage(t, dir)
			target := t.TempDir()
			r, err := Open(ctx, dir, testPassword, Options{TempDir: t.TempDir()})
			if err == nil {
				defer r.Close()
				_, err = r.Verify(ctx, fx.id)
			}
			if !errors.Is(err, ErrDamaged) || errdefs.Code(err) != codes.DataLoss || errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Fatalf("Open+Verify: %v (code %v), want ErrDamaged", err, errdefs.Code(err))
			}
			t.Logf("%v", err)
			if r != nil {
				if _, err := r.Restore(ctx, fx.id, map[string]string{"v": target}, nil); err == nil {
					t.Errorf("Restore of a damaged snapshot succeeded")
				}
			}
		})
	}
}

// Verify reads the repository anew: damage done under an open Repo (which has read
// and cached the index) is found.
func TestVerifyReadsAnew(t *testing.T) {
	ctx := testContext(t)
	r, dir := openTestRepo(t, ctx)
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "f"), 100_000, 1, 0o644, os.Getuid(), os.Getgid())
	snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
	must(t, err)
	if _, err := r.Verify(ctx, snap.ID); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, p := range repoFiles(t, dir, "xn") {
		must(t, os.Remove(filepath.Join(dir, p)))
	}
	if _, err := r.Verify(ctx, snap.ID); !errors.Is(err, ErrDamaged) {
		t.Errorf("Verify after the indexes were deleted: %v, want ErrDamaged", err)
	}
}
