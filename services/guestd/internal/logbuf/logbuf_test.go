package logbuf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRingFileAndRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	l, err := New(path, 5, 300)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Copy("stdout", strings.NewReader("one\ntwo\nthree\n"+strings.Repeat("x", MaxLine+10)+"\nlast-no-newline"))
	tail := l.Tail(0)
	var texts []string
	for _, line := range tail {
		texts = append(texts, fmt.Sprintf("%d", len(line.Text)))
	}
	// 3 short lines, the long line split in two, the unterminated line: 6 lines, ring of 5.
	if len(tail) != 5 || tail[4].Text != "last-no-newline" || tail[0].Text != "two" {
		t.Fatalf("tail = %v", texts)
	}
	if got := l.Tail(2); len(got) != 2 || got[1].Text != "last-no-newline" {
		t.Fatalf("Tail(2) = %v", got)
	}
	for i := 0; i < 20; i++ {
		l.Add(Line{Time: time.Now(), Stream: "stderr", Text: "filler line"})
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 300 {
		t.Errorf("log file %v bytes, cap 300 (%v)", fi.Size(), err)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("no rotated file: %v", err)
	}
}

func TestFollow(t *testing.T) {
	l, _ := New("", 100, 0)
	l.Add(Line{Time: time.Now(), Stream: "stdout", Text: "before"})
	tail, ch, cancel := l.TailAndFollow(10)
	defer cancel()
	if len(tail) != 1 || tail[0].Text != "before" {
		t.Fatalf("tail %v", tail)
	}
	time.Sleep(time.Millisecond)
	l.Add(Line{Time: time.Now(), Stream: "stdout", Text: "after"})
	select {
	case line := <-ch:
		if line.Text != "after" {
			t.Fatalf("followed %q", line.Text)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("nothing followed")
	}
}

// Cancelling a follow closes its channel and forgets it, whatever the tail held, and
// however often cancel is called.
func TestFollowCancelReleases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int // lines in the log before following
	}{
		{"empty log", 0},
		{"lines in the tail", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := New("", 100, 0)
			for i := range tc.before {
				l.Add(Line{Time: time.Now(), Stream: "stdout", Text: fmt.Sprint(i)})
			}
			tail, ch, cancel := l.TailAndFollow(0)
			if len(tail) != tc.before {
				t.Fatalf("tail of %d lines, want %d", len(tail), tc.before)
			}
			l.Add(Line{Time: time.Now(), Stream: "stdout", Text: "followed"})
			if f := l.Followers(); f != 1 {
				t.Fatalf("%d followers, want 1", f)
			}
			cancel()
			cancel()
			l.Add(Line{Time: time.Now(), Stream: "stdout", Text: "after cancel"})
			var got []string
			timeout := time.After(2 * time.Second)
			for open := true; open; {
				select {
				case line, ok := <-ch:
					if ok {
						got = append(got, line.Text)
					}
					open = ok
				case <-timeout:
					t.Fatalf("the channel stayed open after cancel (read %q)", got)
				}
			}
			if strings.Join(got, ",") != "followed" {
				t.Errorf("followed %q, want the one line added while following", got)
			}
			if f := l.Followers(); f != 0 {
				t.Errorf("%d followers after cancel, want 0", f)
			}
		})
	}
}

// A writer racing with TailAndFollow: every line is in the tail or on the channel, once.
// (Fewer lines than the channel holds, so none is dropped for a slow follower.)
func TestFollowLosesAndRepeatsNothing(t *testing.T) {
	l, _ := New("", 10000, 0)
	const n = 1000
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if i == 100 {
				close(started)
			}
			l.Add(Line{Time: time.Now(), Stream: "stdout", Text: fmt.Sprint(i)})
		}
	}()
	<-started
	tail, ch, cancel := l.TailAndFollow(0)
	<-done
	cancel()
	seen := map[string]int{}
	for _, line := range tail {
		seen[line.Text]++
	}
	for line := range ch {
		seen[line.Text]++
	}
	for i := range n {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Fatalf("line %d seen %d times (tail of %d lines)", i, c, len(tail))
		}
	}
}

// Lines around Copy's read size and MaxLine come out whole, or in MaxLine pieces.
func TestCopyLongLines(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		in   string
		want []int // the lengths of the lines kept
	}{
		{x(readSize-1) + "\n" + x(readSize) + "\n" + x(readSize+1) + "\n", []int{readSize - 1, readSize, readSize + 1}},
		{x(3*readSize+5) + "\nxxxxx\n", []int{3*readSize + 5, 5}},
		{x(MaxLine) + "\n", []int{MaxLine}},
		{x(2*MaxLine+1) + "\n\n", []int{MaxLine, MaxLine, 1, 0}},
		{x(MaxLine + readSize), []int{MaxLine, readSize}},
	} {
		l, _ := New("", 100, 0)
		l.Copy("stdout", strings.NewReader(tc.in))
		var got []int
		for _, line := range l.Tail(0) {
			if strings.Trim(line.Text, "x") != "" {
				t.Fatalf("a line with more than x: %.20q", line.Text)
			}
			got = append(got, len(line.Text))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("lines of %v (%d bytes in): %v", tc.want, len(tc.in), got)
		}
	}
}

// The ring holds no room for lines not yet written, and wraps once full.
func TestRingGrows(t *testing.T) {
	l, _ := New("", 3, 0)
	if cap(l.ring) != 0 {
		t.Fatalf("a new log's ring has room for %d lines", cap(l.ring))
	}
	var texts []string
	for i := range 5 {
		l.Add(Line{Text: strconv.Itoa(i)})
		texts = texts[:0]
		for _, line := range l.Tail(0) {
			texts = append(texts, line.Text)
		}
	}
	if got := strings.Join(texts, ","); got != "2,3,4" || cap(l.ring) != 3 {
		t.Errorf("tail %s with a ring of %d, want 2,3,4 with 3", got, cap(l.ring))
	}
}
