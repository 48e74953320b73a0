package images

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadAhead(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		size    int
		failAt  int // the source fails after this many bytes (0: it does not)
		readLen int
	}{
		{"empty", 0, 0, 512},
		{"one byte", 1, 0, 512},
		{"one block less a byte", readAheadBlock - 1, 0, 512},
		{"one block", readAheadBlock, 0, 64 << 10},
		{"more blocks than buffers", (readAheadBlocks+3)*readAheadBlock + 17, 0, 4096},
		{"reads larger than a block", 3*readAheadBlock + 5, 0, 1 << 20},
		{"source fails", 2*readAheadBlock + 100, readAheadBlock + 3, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			rng := rand.NewChaCha8([32]byte{byte(tc.size)})
			rng.Read(data)
			var src io.Reader = iotest.HalfReader(bytes.NewReader(data))
			if tc.failAt > 0 {
				src = io.MultiReader(iotest.HalfReader(bytes.NewReader(data[:tc.failAt])), iotest.ErrReader(boom))
			}
			h := sha256.New()
			ra := newReadAhead(src, h)
			defer ra.Close()
			var got []byte
			buf := make([]byte, tc.readLen)
			var err error
			for {
				var n int
				n, err = ra.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if tc.failAt > 0 {
				if !errors.Is(err, boom) || !bytes.Equal(got, data[:tc.failAt]) {
					t.Fatalf("got %d bytes and %v; want the %d bytes before the failure, then it", len(got), err, tc.failAt)
				}
				return
			}
			if err != io.EOF || !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes (equal %v) and %v; want %d bytes and EOF", len(got), bytes.Equal(got, data), err, len(data))
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("hash differs from the data's")
			}
			if n, err := ra.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("read after EOF: %d, %v", n, err)
			}
		})
	}
}

// Close ends the goroutine while it is blocked handing over blocks nobody reads.
func TestReadAheadCloseEarly(t *testing.T) {
	data := make([]byte, 20*readAheadBlock)
	ra := newReadAhead(bytes.NewReader(data), sha256.New())
	buf := make([]byte, 10)
	if _, err := ra.Read(buf); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close() // twice is harmless
}
