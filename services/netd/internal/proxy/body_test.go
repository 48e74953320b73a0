package proxy

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestChunkSizeLines: size lines another reader would read differently are refused;
// the forms every reader agrees on are read.
func TestChunkSizeLines(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string // the body read; "" with bad: refused
		bad  bool
	}{
		{body: "5\r\nhello\r\n0\r\n\r\n", want: "hello"},
		{body: "5;ext=1\r\nhello\r\n0\r\n\r\n", want: "hello"},
		{body: "5 \r\nhello\r\n0\r\n\r\n", want: "hello"},
		{body: "5;\r\r\nhello\r\n0\r\n\r\n", bad: true}, // a CR inside the line
		{body: "5\r;\r\nhello\r\n0\r\n\r\n", bad: true},
		{body: " 5\r\nhello\r\n0\r\n\r\n", bad: true},  // whitespace before the size
		{body: "5 ;\r\nhello\r\n0\r\n\r\n", bad: true}, // before a ";"
		{body: "5;a\x00\r\nhello\r\n0\r\n\r\n", bad: true},
		{body: "5\nhello\r\n0\r\n\r\n", bad: true}, // a bare LF
		{body: "0x5\r\nhello\r\n0\r\n\r\n", bad: true},
	} {
		var b bodyReader
		b.reset(bufio.NewReader(strings.NewReader(tc.body)), bodyChunked, -1, 4<<10)
		var got []byte
		var err error
		for {
			var p []byte
			if p, err = b.next(); err != nil {
				break
			}
			got = append(got, p...)
			b.consume(len(p))
		}
		switch {
		case tc.bad && !errors.Is(err, errMalformed):
			t.Errorf("%q: read %q (%v), want it refused as malformed", tc.body, got, err)
		case !tc.bad && (err != io.EOF || string(got) != tc.want):
			t.Errorf("%q: read %q (%v), want %q", tc.body, got, err, tc.want)
		}
	}
}
