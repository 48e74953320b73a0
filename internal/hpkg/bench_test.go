package hpkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// benchPackage is a signed package with 64 MiB of random content in four files.
func benchPackage(b *testing.B) ([]File, []byte) {
	rng := rand.New(rand.NewPCG(3, 4))
	files := testFiles(1)
	for _, n := range []string{"assets/a", "assets/b", "assets/c", "assets/d"} {
		data := make([]byte, 16<<20)
		for i := 0; i < len(data); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				data[i+j] = byte(v >> (8 * j))
			}
		}
		files = append(files, Bytes(n, data))
	}
	return files, pack(b, files, testKey(b))
}

func BenchmarkWrite(b *testing.B) {
	files, pkg := benchPackage(b)
	b.SetBytes(int64(len(pkg)))
	b.ResetTimer()
	for b.Loop() {
		if err := Write(io.Discard, files, testKey(b)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify verifies into a staging directory (on a memory file system when
// there is one), counting the package's bytes.
func BenchmarkVerify(b *testing.B) {
	_, pkg := benchPackage(b)
	trust := TrustKeys{testKey(b).Public().(ed25519.PublicKey)}
	b.SetBytes(int64(len(pkg)))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s := newStaging(b)
		b.StartTimer()
		if _, err := Verify(context.Background(), bytes.NewReader(pkg), trust, s.root, VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(s.dir)
		b.StartTimer()
	}
}
