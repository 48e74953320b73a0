package images

import (
	"golang.org/x/sys/unix"

	"hearth.dev/services/containerd-lite/internal/unpack"
)

// flushEvery is how much an import unpacks between two of its background syncs.
const flushEvery = 32 << 20

// flusher writes what an import has unpacked so far to disk in the background, a sync
// of the file system every flushEvery bytes, while the unpacking goes on: the sync
// that commits the image then has only the last part left to wait for, instead of the
// whole image. A sync still running when the next is due is not queued twice.
type flusher struct {
	fd   int
	next int64
	kick chan struct{}
	done chan struct{}
}

// startFlusher starts syncing the file system that holds dir.
func startFlusher(dir string) (*flusher, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := &flusher{fd: fd, next: flushEvery, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go f.run()
	return f, nil
}

func (f *flusher) run() {
	defer close(f.done)
	for range f.kick {
		// A failed background sync costs only time: the commit's own sync reports.
		_ = unix.Syncfs(f.fd)
	}
}

// progress is the unpacker's Progress: it asks for a sync each flushEvery bytes.
func (f *flusher) progress(st unpack.Stats) {
	if st.Bytes < f.next {
		return
	}
	f.next = st.Bytes + flushEvery
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// stop waits for a sync under way and ends the flusher.
func (f *flusher) stop() {
	close(f.kick)
	<-f.done
	unix.Close(f.fd)
}
