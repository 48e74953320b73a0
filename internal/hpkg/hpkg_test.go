package hpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

const testManifest = `id: demo
version: 1.2.0
images:
  app: {oci: app.tar}
  db: {oci: db-layout}
daemons:
  app: {image: app, command: [/app]}
  db: {image: db, command: [/db]}
`

// testFiles returns the files of a small valid package: two images sharing a layer.
func testFiles(seed uint64) []File {
	rng := rand.New(rand.NewPCG(seed, 1))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var files []File
	add := func(data []byte) (string, int) {
		sum := fmt.Sprintf("%x", sha256.Sum256(data))
		files = with(files, Bytes("images/blobs/sha256/"+sum, data))
		return "sha256:" + sum, len(data)
	}
	shared, sharedSize := add(blob(1300))
	var idx []string
	for _, name := range []string{"app", "db"} {
		cfg, cfgSize := add([]byte(`{"architecture":"amd64","os":"linux","name":"` + name + `"}`))
		own, ownSize := add(blob(700))
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]}`,
			cfg, cfgSize, shared, sharedSize, own, ownSize)
		d, n := add([]byte(m))
		idx = append(idx, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{%q:%q}}`, d, n, AnnotationImageName, name))
	}
	files = append(files,
		Bytes("images/oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		Bytes("images/index.json", []byte(`{"schemaVersion":2,"manifests":[`+strings.Join(idx, ",")+`]}`)),
		Bytes(ManifestName, []byte(testManifest)),
		Bytes("LICENSE", []byte("MIT\n")),
		Bytes("assets/static/style.css", []byte("body{}\n")),
		File{Path: "assets/empty", Dir: true},
		Bytes("assets/zero", nil),
	)
	return files
}

func testKey(t testing.TB) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
}

func pack(t testing.TB, files []File, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, files, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// staging is a directory inside a parent that holds nothing else, so a test can check
// that nothing was written beside it.
type staging struct {
	parent, dir string
	root        *os.Root
}

func newStaging(t testing.TB) *staging {
	parent := fastTempDir(t)
	dir := filepath.Join(parent, "stage")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &staging{parent: parent, dir: dir, root: root}
}

// fastTempDir is a temporary directory on a memory file system when there is one: the
// refusal tests create and remove files thousands of times.
func fastTempDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "hpkg-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// positions are the offsets a test damages: every byte of the first two spans of each
// class (the table, the signature, the first headers, paddings and bodies, the end) and,
// in later spans, their first and last two bytes and a few between.
func positions(t testing.TB, pkg []byte) map[int]string {
	rng := rand.New(rand.NewPCG(1, 2))
	out := map[int]string{}
	seen := map[string]int{}
	for _, sp := range spans(t, pkg) {
		if seen[sp.class]++; seen[sp.class] <= 2 {
			for i := sp.start; i < sp.end; i++ {
				out[i] = sp.class
			}
			continue
		}
		n := sp.end - sp.start
		for _, i := range []int{0, 1, n - 2, n - 1, rng.IntN(n), rng.IntN(n), rng.IntN(n)} {
			if i >= 0 && i < n {
				out[sp.start+i] = sp.class
			}
		}
	}
	return out
}

func (s *staging) verify(pkg []byte, trust Trust, opts VerifyOptions) (*Verified, error) {
	return Verify(context.Background(), bytes.NewReader(pkg), trust, s.root, opts)
}

// empty fails unless the staging dir is empty and alone in its parent.
func (s *staging) empty(t testing.TB) {
	t.Helper()
	if ents, _ := os.ReadDir(s.dir); len(ents) != 0 {
		t.Fatalf("staging dir holds %d entries after a refusal, want none", len(ents))
	}
	if ents, _ := os.ReadDir(s.parent); len(ents) != 1 {
		t.Fatalf("the staging dir's parent holds %d entries, want 1", len(ents))
	}
}

func TestWriteIsReproducible(t *testing.T) {
	key := testKey(t)
	a := pack(t, testFiles(1), key)
	files := testFiles(1)
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	if b := pack(t, files, key); !bytes.Equal(a, b) {
		t.Fatal("the same files in another order gave different bytes")
	}
	if c := pack(t, testFiles(2), key); bytes.Equal(a, c) {
		t.Fatal("other content gave the same bytes")
	}
	if len(a)%blockSize != 0 {
		t.Fatalf("package is %d bytes, not whole blocks", len(a))
	}
}

func TestStandardTarReadsIt(t *testing.T) {
	pkg := pack(t, testFiles(1), testKey(t))
	tr := tar.NewReader(bytes.NewReader(pkg))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 || h.Format != tar.FormatUSTAR {
			t.Errorf("%s: uid %d gid %d mtime %v format %v", h.Name, h.Uid, h.Gid, h.ModTime, h.Format)
		}
		names = append(names, h.Name)
	}
	want := []string{TOCName, SigName, ManifestName, "LICENSE", "assets/", "assets/empty/", "assets/static/", "assets/static/style.css", "assets/zero", "images/"}
	if strings.Join(names[:len(want)], ",") != strings.Join(want, ",") {
		t.Fatalf("entries %v\nwant them to start %v", names, want)
	}
}

func TestVerifyRoundTrip(t *testing.T) {
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	files := testFiles(1)
	for _, tc := range []struct {
		name    string
		key     ed25519.PrivateKey
		trust   Trust
		allow   bool
		signer  string
		trusted bool
	}{
		{"trusted", key, TrustKeys{pub}, false, "signed by trusted key " + KeyID(pub), true},
		{"untrusted allowed", key, nil, true, "signed by untrusted key " + KeyID(pub), false},
		{"unsigned allowed", nil, TrustKeys{pub}, true, "unsigned", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStaging(t)
			var accepted *Verified
			var last int64
			v, err := s.verify(pack(t, files, tc.key), tc.trust, VerifyOptions{
				AllowUntrusted: tc.allow,
				Accept:         func(v *Verified) error { accepted = v; return nil },
				Progress:       func(done, total int64) { last = done; _ = total },
			})
			if err != nil {
				t.Fatal(err)
			}
			if v.Signer() != tc.signer || v.Trusted != tc.trusted || accepted != v {
				t.Fatalf("signer %q trusted %v, want %q %v", v.Signer(), v.Trusted, tc.signer, tc.trusted)
			}
			if v.TOC.Package != (Package{"demo", "1.2.0"}) || v.Manifest.ID != "demo" || last != v.TOC.Size() {
				t.Fatalf("package %+v, manifest %s, progress %d of %d", v.TOC.Package, v.Manifest.ID, last, v.TOC.Size())
			}
			for _, f := range files {
				got, err := os.ReadFile(filepath.Join(s.dir, f.Path))
				if f.Dir {
					if fi, err := os.Stat(filepath.Join(s.dir, f.Path)); err != nil || !fi.IsDir() {
						t.Errorf("%s: not a directory: %v", f.Path, err)
					}
					continue
				}
				rc, _ := f.Open()
				want, _ := io.ReadAll(rc)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, want %d (%v)", f.Path, len(got), len(want), err)
				}
			}
		})
	}
}

// span is where a part of a package lies.
type span struct {
	class      string
	start, end int
}

// spans cuts a package into its parts: headers, bodies, padding, the end blocks.
func spans(t testing.TB, pkg []byte) []span {
	var out []span
	off := 0
	for off < len(pkg) {
		h := pkg[off : off+blockSize]
		if isZero(h) {
			out = append(out, span{"end", off, len(pkg)})
			break
		}
		name := headerName(h)
		kind := "entry"
		switch name {
		case TOCName:
			kind = "toc"
		case SigName:
			kind = "sig"
		}
		size, _ := headerSize(h)
		out = append(out, span{kind + " header", off, off + blockSize})
		off += blockSize
		if size > 0 {
			out = append(out, span{kind + " body", off, off + int(size)})
			off += int(size)
		}
		if p := int(padding(size)); p > 0 {
			out = append(out, span{kind + " padding", off, off + p})
			off += p
		}
	}
	return out
}

func TestVerifyRefusesEveryFlippedByte(t *testing.T) {
	if testing.Short() {
		t.Skip("verifies the package once per byte")
	}
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	for _, signed := range []bool{true, false} {
		k, opts := key, VerifyOptions{}
		if !signed {
			k, opts = nil, VerifyOptions{AllowUntrusted: true}
		}
		pkg := pack(t, testFiles(3), k)
		if _, err := newStaging(t).verify(pkg, TrustKeys{pub}, opts); err != nil {
			t.Fatal(err)
		}
		s := newStaging(t)
		classes := map[string]int{}
		for i, class := range positions(t, pkg) {
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(pkg)
				bad[i] ^= mask
				_, err := s.verify(bad, TrustKeys{pub}, opts)
				if err == nil {
					t.Fatalf("signed=%v: byte %d (%s) ^ %#x accepted", signed, i, class, mask)
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrPermissionDenied) {
					t.Fatalf("byte %d (%s): error of no kind: %v", i, class, err)
				}
			}
			classes[class]++
		}
		s.empty(t)
		want := []string{"toc header", "toc body", "toc padding", "entry header", "entry body", "entry padding", "end"}
		if signed {
			want = append(want, "sig header", "sig body", "sig padding")
		}
		for _, c := range want {
			if classes[c] == 0 {
				t.Errorf("signed=%v: no byte of class %s was flipped", signed, c)
			}
		}
		t.Logf("signed=%v: %d positions of %d bytes flipped, each refused; by class: %v", signed, len(positions(t, pkg)), len(pkg), classes)
	}
}

func TestVerifyRefusesTruncation(t *testing.T) {
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	pkg := pack(t, testFiles(4), key)
	s := newStaging(t)
	for n := range positions(t, pkg) {
		if testing.Short() && n%97 != 0 {
			continue
		}
		_, err := s.verify(pkg[:n], TrustKeys{pub}, VerifyOptions{})
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(pkg), err)
		}
		if n > 0 && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("truncated to %d: %v, want it to say truncated", n, err)
		}
	}
	s.empty(t)
}

// rawEntry is a tar entry made with archive/tar, headers as an attacker likes them.
func rawEntry(t testing.TB, h *tar.Header, body []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Flush()
	return buf.Bytes()
}

// cut returns pkg with insert put at offset at and the bytes [at, at+drop) removed.
func cut(pkg []byte, at, drop int, insert []byte) []byte {
	out := append(bytes.Clone(pkg[:at]), insert...)
	return append(out, pkg[at+drop:]...)
}

func TestVerifyRefuses(t *testing.T) {
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	files := testFiles(5)
	pkg := pack(t, files, key)
	sp := spans(t, pkg)
	// Entries after the manifest: [start, end) of each whole entry.
	type ent struct {
		name       string
		start, end int
	}
	var ents []ent
	for i, s := range sp {
		if s.class == "entry header" {
			e := ent{name: headerName(pkg[s.start:s.end]), start: s.start, end: s.end}
			for _, n := range sp[i+1:] {
				if !strings.HasPrefix(n.class, "entry ") || n.class == "entry header" {
					break
				}
				e.end = n.end
			}
			ents = append(ents, e)
		}
	}
	endAt := sp[len(sp)-1].start
	find := func(name string) ent {
		for _, e := range ents {
			if e.name == name {
				return e
			}
		}
		t.Fatalf("no entry %s", name)
		return ent{}
	}
	lic, zero := find("LICENSE"), find("assets/zero")
	extra := rawEntry(t, &tar.Header{Name: "assets/extra", Mode: 0o644, Size: 3, Format: tar.FormatUSTAR}, []byte("bad"))
	symlink := rawEntry(t, &tar.Header{Name: "assets/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow", Format: tar.FormatUSTAR}, nil)
	traversal := rawEntry(t, &tar.Header{Name: "../../escaped", Mode: 0o644, Size: 3, Format: tar.FormatUSTAR}, []byte("bad"))
	absolute := rawEntry(t, &tar.Header{Name: "/tmp/escaped", Mode: 0o644, Size: 3, Format: tar.FormatUSTAR}, []byte("bad"))
	device := rawEntry(t, &tar.Header{Name: "assets/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Format: tar.FormatUSTAR}, nil)
	secondTOC := pkg[sp[0].start:sp[2].end] // the table's header, body and padding

	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	badManifest := replaceFile(files, ManifestName, []byte("id: demo\nversion: 1.2.0\nimages: {app: {oci: a}}\ndaemons: {app: {image: nope}}\n"))
	refImage := replaceFile(files, ManifestName, []byte(strings.Replace(testManifest, "{oci: app.tar}", "{ref: app:1}", 1)))
	extraImage := replaceFile(files, ManifestName, []byte(strings.Replace(testManifest, "db: {oci: db-layout}", "db: {oci: db-layout}\n  web: {oci: web}", 1)))

	for _, tc := range []struct {
		name  string
		pkg   []byte
		trust Trust
		allow bool
		kind  error
		want  string
	}{
		{"entry added", cut(pkg, endAt, 0, extra), nil, true, errdefs.ErrInvalidArgument, "assets/extra is not in the table of contents"},
		{"entry added in the middle", cut(pkg, lic.end, 0, extra), nil, true, errdefs.ErrInvalidArgument, "assets/extra is not in the table of contents"},
		{"entry removed", cut(pkg, lic.start, lic.end-lic.start, nil), nil, true, errdefs.ErrInvalidArgument, "entry LICENSE is missing"},
		{"last entry removed", cut(pkg, ents[len(ents)-1].start, ents[len(ents)-1].end-ents[len(ents)-1].start, nil), nil, true, errdefs.ErrInvalidArgument, "is missing: the archive ends"},
		{"entries swapped", cut(cut(pkg, zero.start, zero.end-zero.start, nil), lic.start, 0, pkg[zero.start:zero.end]), nil, true, errdefs.ErrInvalidArgument, "out of order"},
		{"entry repeated", cut(pkg, lic.end, 0, pkg[lic.start:lic.end]), nil, true, errdefs.ErrInvalidArgument, "LICENSE appears twice"},
		{"symlink entry", cut(pkg, lic.end, 0, symlink), nil, true, errdefs.ErrInvalidArgument, "assets/link is a symbolic link"},
		{"device entry", cut(pkg, lic.end, 0, device), nil, true, errdefs.ErrInvalidArgument, "assets/null is a character device"},
		{"path traversal entry", cut(pkg, lic.end, 0, traversal), nil, true, errdefs.ErrInvalidArgument, "../../escaped is not in the table of contents"},
		{"absolute path entry", cut(pkg, lic.end, 0, absolute), nil, true, errdefs.ErrInvalidArgument, "not in the table of contents"},
		{"second table of contents", cut(pkg, lic.end, 0, secondTOC), nil, true, errdefs.ErrInvalidArgument, "a second table of contents"},
		{"second table at the end", cut(pkg, endAt, 0, secondTOC), nil, true, errdefs.ErrInvalidArgument, "a second table of contents"},
		{"trailing garbage", append(bytes.Clone(pkg), 'x'), nil, true, errdefs.ErrInvalidArgument, "data after the end of the archive"},
		{"trailing zero block", append(bytes.Clone(pkg), make([]byte, blockSize)...), nil, true, errdefs.ErrInvalidArgument, "data after the end of the archive"},
		{"signature removed", cut(pkg, sp[3].start, sp[5].end-sp[3].start, nil), TrustKeys{pub}, false, ErrUnsigned, "is not signed"},
		{"untrusted key", pkg, TrustKeys{other.Public().(ed25519.PublicKey)}, false, ErrUntrustedKey, "signed by key " + KeyID(pub) + ", which this host does not trust"},
		{"no trust at all", pkg, nil, false, errdefs.ErrPermissionDenied, "does not trust"},
		{"unsigned", pack(t, files, nil), TrustKeys{pub}, false, ErrUnsigned, "demo 1.2.0 is not signed"},
		{"signed by another key", resign(t, pkg, other), TrustKeys{pub}, false, ErrUntrustedKey, KeyID(other.Public().(ed25519.PublicKey))},
		{"not a package", []byte(strings.Repeat("x", 2048)), nil, true, errdefs.ErrInvalidArgument, "not a Hearth package"},
		{"empty", nil, nil, true, errdefs.ErrInvalidArgument, "truncated"},
		{"bad manifest", packUnchecked(t, badManifest, key), TrustKeys{pub}, false, errdefs.ErrInvalidArgument, "daemons.app.image: unknown image"},
		{"ref image", packUnchecked(t, refImage, key), TrustKeys{pub}, false, errdefs.ErrInvalidArgument, "images.app: ref \"app:1\""},
		{"image missing from the layout", packUnchecked(t, extraImage, key), TrustKeys{pub}, false, errdefs.ErrInvalidArgument, "no entry annotated org.opencontainers.image.ref.name=\"web\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStaging(t)
			_, err := s.verify(tc.pkg, tc.trust, VerifyOptions{AllowUntrusted: tc.allow})
			if err == nil || !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v\nwant an error of kind %q containing %q", err, tc.kind, tc.want)
			}
			s.empty(t)
		})
	}
}

func replaceFile(files []File, path string, data []byte) []File {
	out := make([]File, 0, len(files))
	for _, f := range files {
		if f.Path == path {
			f = Bytes(path, data)
		}
		out = append(out, f)
	}
	return out
}

// packUnchecked writes a package the way Write does, without Write's checks of the
// manifest and images (as a hostile packer would).
func packUnchecked(t testing.TB, files []File, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteUnchecked(&buf, files, "demo", "1.2.0", key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// resign replaces the signature of pkg with one by key.
func resign(t testing.TB, pkg []byte, key ed25519.PrivateKey) []byte {
	sp := spans(t, pkg)
	toc := pkg[sp[1].start:sp[1].end]
	var buf bytes.Buffer
	sig := fmt.Sprintf(`{"algorithm":"ed25519","key":%q,"signature":%q}`+"\n",
		b64(key.Public().(ed25519.PublicKey)), b64(ed25519.Sign(key, toc)))
	if err := writeEntry(&buf, SigName, TypeFile, strings.NewReader(sig), int64(len(sig))); err != nil {
		t.Fatal(err)
	}
	return cut(pkg, sp[3].start, sp[5].end-sp[3].start, buf.Bytes())
}

func TestAcceptStopsBeforeTheImages(t *testing.T) {
	key := testKey(t)
	s := newStaging(t)
	var seen int64
	_, err := s.verify(pack(t, testFiles(1), key), TrustKeys{key.Public().(ed25519.PublicKey)}, VerifyOptions{
		Accept: func(v *Verified) error {
			return fmt.Errorf("version %s is older: %w", v.Manifest.Version, errdefs.ErrFailedPrecondition)
		},
		Progress: func(done, _ int64) { seen = done },
	})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Verify: %v", err)
	}
	if seen != int64(len(testManifest)) {
		t.Fatalf("read %d bytes of content before Accept refused, want only the manifest's %d", seen, len(testManifest))
	}
	s.empty(t)
}

func TestVerifyStopsOnCancel(t *testing.T) {
	key := testKey(t)
	s := newStaging(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Verify(ctx, bytes.NewReader(pack(t, testFiles(1), key)), TrustKeys{key.Public().(ed25519.PublicKey)}, s.root, VerifyOptions{
		Accept: func(*Verified) error { cancel(); return nil },
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify: %v", err)
	}
	s.empty(t)
}

func TestWriteRefuses(t *testing.T) {
	files := testFiles(1)
	for _, tc := range []struct {
		name  string
		files []File
		want  string
	}{
		{"no manifest", files[:len(files)-5], "no manifest.yaml"},
		{"dotdot", with(files, Bytes("assets/../x", nil)), `".." element`},
		{"absolute", with(files, Bytes("/etc/x", nil)), "absolute"},
		{"reserved", with(files, Bytes(TOCName, nil)), "reserved"},
		{"twice", with(files, Bytes("LICENSE", nil)), "LICENSE is given twice"},
		{"stray top-level", with(files, Bytes("notes.txt", nil)), "a package holds only"},
		{"two icons", with(files, Bytes("icon.png", nil), Bytes("icon.svg", nil)), "one icon"},
		{"junk in images", with(files, Bytes("images/extra", nil)), "images/ holds an OCI image layout"},
		{"misnamed blob", with(files, Bytes("images/blobs/sha256/"+strings.Repeat("0", 64), []byte("x"))), "a blob's name must be its sha256"},
		{"bad manifest", replaceFile(files, ManifestName, []byte("id: demo\n")), "manifest"},
		{"ref image", replaceFile(files, ManifestName, []byte(strings.Replace(testManifest, "{oci: app.tar}", "{ref: app:1}", 1))), "a package carries its images"},
		{"long path", with(files, Bytes("assets/"+strings.Repeat("a", 120), nil)), "path too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(io.Discard, tc.files, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLongPathsSplit(t *testing.T) {
	long := "assets/" + strings.Repeat("d", 90) + "/" + strings.Repeat("f", 99)
	key := testKey(t)
	pkg := pack(t, append(testFiles(1), Bytes(long, []byte("deep"))), key)
	s := newStaging(t)
	if _, err := s.verify(pkg, TrustKeys{key.Public().(ed25519.PublicKey)}, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, long)); err != nil || string(b) != "deep" {
		t.Fatalf("%s: %q %v", long, b, err)
	}
	tr := tar.NewReader(bytes.NewReader(pkg))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("standard tar reader never saw %s: %v", long, err)
		}
		if h.Name == long {
			break
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func with(files []File, more ...File) []File { return slices.Concat(files, more) }

// WriteUnchecked makes what Write refuses; Verify refuses it too.
func TestWriteUncheckedBadManifest(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	var buf bytes.Buffer
	if err := WriteUnchecked(&buf, []File{Bytes(ManifestName, []byte("id: demo\nversion: 1.2.0\n"))}, "demo", "1.2.0", key); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := Verify(context.Background(), &buf, TrustKeys{pub}, root, VerifyOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("Verify = %v, want the manifest refused", err)
	}
}
