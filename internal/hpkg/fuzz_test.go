package hpkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseTOC(f *testing.F) {
	pkg := pack(f, testFiles(1), nil)
	sp := spans(f, pkg)
	f.Add(pkg[sp[1].start:sp[1].end])
	f.Add([]byte(`{"format":1,"package":{"id":"a","version":"1"},"entries":[{"path":"manifest.yaml","type":"file","size":0,"sha256":"` + strings.Repeat("0", 64) + `"}]}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		toc, err := ParseTOC(data)
		if err != nil {
			return
		}
		again, err := toc.marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a table that does not re-encode to itself")
		}
		for i, e := range toc.Entries {
			if err := checkPath(e.Path); err != nil {
				t.Fatalf("accepted entry %d: %v", i, err)
			}
			if i > 1 && e.Path <= toc.Entries[i-1].Path {
				t.Fatalf("accepted entries out of order: %s after %s", e.Path, toc.Entries[i-1].Path)
			}
			if _, err := header(e.Path, e.Type, e.Size); err != nil {
				t.Fatalf("accepted an entry without a header: %v", err)
			}
		}
	})
}

// FuzzVerify feeds damaged packages to Verify: whatever it accepts is exactly what its
// table lists, and whatever it refuses leaves the staging directory empty.
//
// Run it with a bounded minimization: go test -fuzz FuzzVerify -fuzzminimizetime 200x.
// With the default (60 s per input), minimizing one of these 20 KiB inputs keeps the
// worker silent for a minute and the run looks stalled.
func FuzzVerify(f *testing.F) {
	key := testKey(f)
	signed := pack(f, testFiles(1), key)
	f.Add(signed)
	f.Add(pack(f, testFiles(2), nil))
	f.Add(signed[:len(signed)/2])
	s := newStaging(f)
	trust := TrustKeys{key.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := s.verify(data, trust, VerifyOptions{AllowUntrusted: true})
		if err != nil {
			if ents, _ := os.ReadDir(s.dir); len(ents) != 0 {
				t.Fatalf("refused (%v) but left %d entries in the staging dir", err, len(ents))
			}
			return
		}
		defer func() {
			ents, _ := os.ReadDir(s.dir)
			for _, e := range ents {
				os.RemoveAll(filepath.Join(s.dir, e.Name()))
			}
		}()
		n := 0
		filepath.WalkDir(s.dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || p == s.dir {
				return err
			}
			n++
			rel, _ := filepath.Rel(s.dir, p)
			e, ok := v.TOC.Lookup(filepath.ToSlash(rel))
			if !ok {
				t.Fatalf("%s was written but is not in the table", rel)
			}
			switch {
			case d.IsDir() && e.Type == TypeDir:
			case d.Type().IsRegular() && e.Type == TypeFile:
				b, _ := os.ReadFile(p)
				sum := sha256.Sum256(b)
				if hex.EncodeToString(sum[:]) != e.SHA256 {
					t.Fatalf("%s does not hold what the table says", rel)
				}
			default:
				t.Fatalf("%s is a %v, the table says %s", rel, d.Type(), e.Type)
			}
			return nil
		})
		if n != len(v.TOC.Entries) {
			t.Fatalf("%d entries written, the table lists %d", n, len(v.TOC.Entries))
		}
	})
}
