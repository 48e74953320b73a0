package supervisor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// An HTTP ready check is one GET on a connection of its own, judged by the answer's
// status line alone. net/http's client cost about 15 KiB of garbage and two goroutines
// (with their stacks) per check; with checks every 100 ms that garbage was most of what
// a quiet guestd allocated, and what its heap grew with between collections. A check
// here costs a few hundred bytes. Redirects are not followed: a 3xx answer passes, as
// the manifest says (2xx or 3xx).

// probeTLS is the TLS configuration of HTTPS checks: a daemon's own certificate is for
// its public names, not for 127.0.0.1.
var probeTLS = &tls.Config{InsecureSkipVerify: true}

// maxStatusLine bounds the first line of an answer a check reads.
const maxStatusLine = 512

// probeRequest is the request of an HTTP check of path on addr ("127.0.0.1:PORT"): the
// connection closes after the answer, so the daemon keeps nothing for guestd.
func probeRequest(addr, path string) (string, error) {
	u, err := url.Parse(path)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", path, err)
	}
	return "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUser-Agent: hearth-guestd\r\nConnection: close\r\n\r\n", nil
}

// httpProbe sends req to addr (over TLS when https) and returns the answer's status code
// and status ("200 OK"). The rest of the answer is not read.
func httpProbe(ctx context.Context, addr, req string, https bool) (int, string, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer raw.Close()
	// The check's timeout bounds every read and write; a cancelled check ends them at once.
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := raw
	if https {
		tc := tls.Client(raw, probeTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, "", fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, "", fmt.Errorf("send the request: %w", err)
	}
	return readStatus(conn)
}

// readStatus reads an HTTP/1.x status line from r and returns its code and status.
func readStatus(r io.Reader) (int, string, error) {
	var buf [maxStatusLine]byte
	n := 0
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return parseStatusLine(string(bytes.TrimSuffix(buf[:i], []byte("\r"))))
		}
		if n == len(buf) {
			return 0, "", fmt.Errorf("the answer's first line is longer than %d bytes", maxStatusLine)
		}
		m, err := r.Read(buf[n:])
		n += m
		if err != nil && bytes.IndexByte(buf[:n], '\n') < 0 {
			if errors.Is(err, io.EOF) {
				return 0, "", fmt.Errorf("the connection closed before an answer (%d bytes): %w", n, io.ErrUnexpectedEOF)
			}
			return 0, "", fmt.Errorf("read the answer: %w", err)
		}
	}
}

// parseStatusLine parses "HTTP/1.x CODE REASON".
func parseStatusLine(line string) (int, string, error) {
	proto, status, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, "", fmt.Errorf("not an HTTP/1 answer: %q", line)
	}
	code, err := strconv.Atoi(status[:min(3, len(status))])
	if err != nil || len(status) < 3 || code < 100 || code > 599 || len(status) > 3 && status[3] != ' ' {
		return 0, "", fmt.Errorf("malformed status line: %q", line)
	}
	return code, status, nil
}
