package images

import (
	"errors"
	"hash"
	"io"
)

// readAhead reads a stream to its end in a goroutine of its own, hashing it, a few
// blocks ahead of its reader: reading the file, decompressing and hashing run beside
// the unpacker's system calls instead of between them. Close stops the goroutine and
// waits for it; the hash is whole once Read has returned io.EOF.
type readAhead struct {
	full   chan []byte
	free   chan []byte
	stop   chan struct{}
	exited chan struct{}
	err    error // the error that ended the stream; written before full is closed
	cur    []byte
	buf    []byte // the block cur is in, to give back
}

const (
	readAheadBlock  = 256 << 10
	readAheadBlocks = 4
)

func newReadAhead(r io.Reader, h hash.Hash) *readAhead {
	ra := &readAhead{
		full:   make(chan []byte, readAheadBlocks),
		free:   make(chan []byte, readAheadBlocks+1),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range readAheadBlocks + 1 {
		ra.free <- make([]byte, readAheadBlock)
	}
	go ra.run(r, h)
	return ra
}

func (ra *readAhead) run(r io.Reader, h hash.Hash) {
	defer close(ra.exited)
	defer close(ra.full)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := fill(r, b)
		if n > 0 {
			h.Write(b[:n])
			select {
			case ra.full <- b[:n]:
			case <-ra.stop:
				return
			}
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

// fill reads into b until it is full or the stream ends (io.EOF) or fails.
func fill(r io.Reader, b []byte) (int, error) {
	n, empty := 0, 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k == 0 {
			if empty++; empty == 100 {
				return n, io.ErrNoProgress
			}
		}
	}
	return n, nil
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			if ra.err == nil {
				return 0, errors.New("read ahead: stream closed")
			}
			return 0, ra.err
		}
		ra.buf, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops reading ahead and waits for the goroutine to end.
func (ra *readAhead) Close() {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	<-ra.exited
}
