package images

import (
	"testing"

	"hearth.dev/services/containerd-lite/internal/unpack"
)

// TestFlusherKicks asks for a sync once each flushEvery bytes, never queues a second
// while one is pending, and stops cleanly with one pending.
func TestFlusherKicks(t *testing.T) {
	f := &flusher{next: flushEvery, kick: make(chan struct{}, 1)}
	for _, tc := range []struct {
		bytes   int64
		pending int
	}{
		{0, 0},
		{flushEvery - 1, 0},
		{flushEvery, 1},
		{flushEvery + 1, 1}, // the next is due at 2*flushEvery
		{2*flushEvery - 1, 1},
		{3 * flushEvery, 1}, // due, but one is pending: not queued twice
	} {
		f.progress(unpack.Stats{Bytes: tc.bytes})
		if got := len(f.kick); got != tc.pending {
			t.Fatalf("after %d bytes: %d syncs pending, want %d", tc.bytes, got, tc.pending)
		}
	}
	<-f.kick
	f.progress(unpack.Stats{Bytes: 4*flushEvery - 1})
	if len(f.kick) != 0 {
		t.Fatalf("a sync asked for before the next flushEvery bytes")
	}
	f.progress(unpack.Stats{Bytes: 4 * flushEvery})
	if len(f.kick) != 1 {
		t.Fatalf("no sync asked for after flushEvery more bytes")
	}

	// A real one syncs a real file system and stops with a sync asked for.
	g, err := startFlusher(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g.progress(unpack.Stats{Bytes: flushEvery})
	g.stop()
}
