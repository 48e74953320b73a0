package logbuf

import (
	"fmt"
	"os"
	"path/filepath"
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
