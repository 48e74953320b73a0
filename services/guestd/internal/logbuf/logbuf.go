// Package logbuf keeps a daemon's output: each line timestamped and tagged with its stream,
// in a bounded ring for quick tails, in a size-capped file rotated once, and sent to
// followers as it comes.
package logbuf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Line is one line of output.
type Line struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	Text   string
}

// MaxLine is the longest line kept whole; longer ones are split.
const MaxLine = 16 << 10

// Log is one daemon's output.
type Log struct {
	mu      sync.Mutex
	ring    []Line // grows to max lines, then wraps
	max     int
	next    int
	full    bool
	path    string
	file    *os.File
	size    int64
	maxFile int64
	subs    map[chan Line]struct{}
}

// New returns a log keeping ringSize lines in memory and up to maxFile bytes in path
// (plus one rotated file, path.1). An empty path keeps no file. The ring grows as lines
// come: a quiet daemon's log (most of them, and every finished hook's) holds no room
// for lines it never wrote (1,000 lines' room is 56 KiB).
func New(path string, ringSize int, maxFile int64) (*Log, error) {
	l := &Log{max: max(ringSize, 1), path: path, maxFile: maxFile, subs: map[chan Line]struct{}{}}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		fi, _ := f.Stat()
		l.file, l.size = f, fi.Size()
	}
	return l, nil
}

// Add records a line.
func (l *Log) Add(line Line) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep(line)
	if l.file != nil {
		s := fmt.Sprintf("%s %s %s\n", line.Time.UTC().Format(time.RFC3339Nano), line.Stream, line.Text)
		if l.size+int64(len(s)) > l.maxFile {
			l.rotate()
		}
		if n, err := l.file.WriteString(s); err == nil {
			l.size += int64(n)
		}
	}
	for ch := range l.subs {
		select {
		case ch <- line:
		default: // a follower too slow to keep up misses lines rather than stall the daemon
		}
	}
}

// keep puts line in the ring, growing it until it holds max lines.
func (l *Log) keep(line Line) {
	if len(l.ring) < l.max {
		l.ring = append(l.ring, line)
		if len(l.ring) == l.max {
			l.ring = slices.Clip(l.ring)
			l.full, l.next = true, 0
		}
		return
	}
	l.ring[l.next] = line
	l.next = (l.next + 1) % len(l.ring)
}

func (l *Log) rotate() {
	l.file.Close()
	_ = os.Rename(l.path, l.path+".1")
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		l.file = nil
		return
	}
	l.file, l.size = f, 0
}

// Tail returns the last n lines (all kept lines when n <= 0).
func (l *Log) Tail(n int) []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tailLocked(n)
}

func (l *Log) tailLocked(n int) []Line {
	var all []Line
	if l.full {
		all = append(all, l.ring[l.next:]...)
		all = append(all, l.ring[:l.next]...)
	} else {
		all = append(all, l.ring...)
	}
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// TailAndFollow returns the last n lines and a channel of the lines after them, with no
// line lost or repeated between the two (both are taken under one lock). cancel stops
// following and closes the channel; it may be called more than once. A follower too slow
// to keep up misses lines rather than stall the daemon.
func (l *Log) TailAndFollow(n int) ([]Line, <-chan Line, func()) {
	ch := make(chan Line, 1024)
	l.mu.Lock()
	tail := l.tailLocked(n)
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return tail, ch, func() {
		once.Do(func() {
			// Under the lock: Add sends only under it, so never on a closed channel.
			l.mu.Lock()
			delete(l.subs, ch)
			close(ch)
			l.mu.Unlock()
		})
	}
}

// Followers counts the channels following the log.
func (l *Log) Followers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		return l.file.Close()
	}
	return nil
}

// readSize is Copy's read buffer: lines longer than it are put together (up to MaxLine)
// in a buffer of their own, so that a running daemon's two copies do not each hold a
// MaxLine buffer for lines that are nearly always short.
const readSize = 2 << 10

// Copy reads r line by line into the log under stream until r ends. A line longer than
// MaxLine is kept as several.
func (l *Log) Copy(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, readSize)
	add := func(b []byte) { l.Add(Line{Time: time.Now(), Stream: stream, Text: string(b)}) }
	var long []byte // the line read so far, when it is longer than readSize
	split := false  // the line so far has been added in MaxLine pieces
	for {
		b, isPrefix, err := br.ReadLine()
		if isPrefix || len(long) > 0 {
			long = append(long, b...)
			for len(long) >= MaxLine {
				add(long[:MaxLine])
				long, split = long[MaxLine:], true
			}
			if isPrefix {
				continue
			}
			b, long = long, nil
		}
		if len(b) > 0 || (err == nil && !split) {
			add(b)
		}
		split = false
		if err != nil {
			return
		}
	}
}
