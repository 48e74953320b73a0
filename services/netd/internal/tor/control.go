package tor

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
)

// This file speaks tor's control protocol (control-spec.txt) on one connection:
// commands are sent one at a time, and a reader goroutine hands each reply to the
// command that waits for it, so a connection that drops is noticed at once, even idle.

// ReplyError is tor's refusal of a command: its status code and text. It wraps the error
// kind of its code (errdefs), so errors.Is(err, errdefs.ErrNotFound) holds for 552.
type ReplyError struct {
	Command string // the command's keyword (never its arguments: they may hold a key)
	Code    int
	Text    string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("tor refused %s: %d %s", e.Command, e.Code, e.Text)
}

// Unwrap returns the kind of the reply's code.
func (e *ReplyError) Unwrap() error {
	switch e.Code {
	case 451:
		return errdefs.ErrResourceExhausted
	case 510:
		return errdefs.ErrUnimplemented
	case 512, 513, 553:
		return errdefs.ErrInvalidArgument
	case 514, 515:
		return errdefs.ErrPermissionDenied
	case 550:
		if strings.Contains(strings.ToLower(e.Text), "collision") {
			return errdefs.ErrAlreadyExists
		}
		return errdefs.ErrFailedPrecondition
	case 552:
		return errdefs.ErrNotFound
	case 551:
		return errdefs.ErrInternal
	}
	return errdefs.ErrFailedPrecondition
}

// replyLine is one line of a reply: "CODE-text", "CODE+text" with data lines after
// it, or the last one, "CODE text".
type replyLine struct {
	code int
	text string
	data string // the data lines of a "+" line, unstuffed, joined by "\n"
}

type reply []replyLine

// status is the code of the final line.
func (r reply) status() int {
	if len(r) == 0 {
		return 0
	}
	return r[len(r)-1].code
}

func (r reply) err(command string) error {
	if c := r.status(); c/100 != 2 {
		return &ReplyError{Command: command, Code: c, Text: r[len(r)-1].text}
	}
	return nil
}

// controlConn is one control connection.
type controlConn struct {
	nc      net.Conn
	timeout time.Duration
	replies chan reply
	done    chan struct{} // closed when the connection is gone
	errOnce sync.Once
	err     error // why it is gone; set before done closes
	cmd     sync.Mutex
	version string // tor's, from PROTOCOLINFO
}

// parseControlAddress returns the network and address of "unix:/path", "/path" or
// "host:port".
func parseControlAddress(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		address = strings.TrimPrefix(addr, "unix:")
		if filepath.IsAbs(address) {
			return "unix", address, nil
		}
	case filepath.IsAbs(addr):
		return "unix", addr, nil
	default:
		if host, port, err := net.SplitHostPort(addr); err == nil && host != "" {
			if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 65536 {
				return "tcp", addr, nil
			}
		}
	}
	return "", "", fmt.Errorf("tor control address %q: give unix:/path, an absolute path of a Unix socket, or host:port: %w", addr, errdefs.ErrInvalidArgument)
}

// auth is what a controller may authenticate with.
type auth struct {
	password   string
	cookieFile string // overrides PROTOCOLINFO's COOKIEFILE
}

// dialControl connects to addr and authenticates.
func dialControl(ctx context.Context, addr string, a auth, timeout time.Duration) (*controlConn, error) {
	network, address, err := parseControlAddress(addr)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("tor control port %s: %w: %w", addr, err, errdefs.ErrUnavailable)
	}
	c := &controlConn{nc: nc, timeout: timeout, replies: make(chan reply), done: make(chan struct{})}
	go c.read()
	if err := c.authenticate(a); err != nil {
		c.close(err)
		return nil, fmt.Errorf("tor control port %s: %w", addr, err)
	}
	return c, nil
}

func (c *controlConn) close(why error) {
	c.errOnce.Do(func() {
		c.err = why
		c.nc.Close()
		close(c.done)
	})
}

// Err is why the connection is gone (nil while it is up).
func (c *controlConn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// read hands replies to the waiting command until the connection fails. Asynchronous
// events (6xx) are dropped: the controller asks for none.
func (c *controlConn) read() {
	br := bufio.NewReaderSize(c.nc, 4096)
	for {
		r, err := readReply(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = errors.New("tor closed the control connection")
			}
			c.close(err)
			return
		}
		if r.status()/100 == 6 {
			continue
		}
		select {
		case c.replies <- r:
		case <-c.done:
			return
		}
	}
}

const maxReplyLine = 64 << 10
const maxReplyLines = 4096

func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxReplyLine {
			return "", fmt.Errorf("a reply line longer than %d bytes", maxReplyLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// readReply reads one reply (control-spec 2.3).
func readReply(br *bufio.Reader) (reply, error) {
	var r reply
	for len(r) < maxReplyLines {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if len(line) < 4 || (line[3] != ' ' && line[3] != '-' && line[3] != '+') {
			return nil, fmt.Errorf("not tor's control protocol: got %q", truncate(line, 80))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 {
			return nil, fmt.Errorf("not tor's control protocol: got %q", truncate(line, 80))
		}
		l := replyLine{code: code, text: line[4:]}
		if line[3] == '+' {
			var data []string
			for {
				d, err := readLine(br)
				if err != nil {
					return nil, err
				}
				if d == "." {
					break
				}
				data = append(data, strings.TrimPrefix(d, "."))
				if len(data) > maxReplyLines {
					return nil, fmt.Errorf("a reply of more than %d lines", maxReplyLines)
				}
			}
			l.data = strings.Join(data, "\n")
		}
		r = append(r, l)
		if line[3] == ' ' {
			return r, nil
		}
	}
	return nil, fmt.Errorf("a reply of more than %d lines", maxReplyLines)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// do sends one command line and returns tor's reply, or a ReplyError when tor refuses
// it. name is the keyword to report (the line may hold a secret). A command that gets
// no reply within the connection's timeout closes the connection: its reply could no
// longer be told from the next one's.
func (c *controlConn) do(name, line string) (reply, error) {
	c.cmd.Lock()
	defer c.cmd.Unlock()
	if err := c.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, err, errdefs.ErrUnavailable)
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.close(err)
		return nil, fmt.Errorf("%s: %w: %w", name, err, errdefs.ErrUnavailable)
	}
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case r := <-c.replies:
		return r, r.err(name)
	case <-c.done:
		return nil, fmt.Errorf("%s: %w: %w", name, c.err, errdefs.ErrUnavailable)
	case <-t.C:
		err := fmt.Errorf("tor did not answer %s within %s", name, c.timeout)
		c.close(err)
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
}

// authenticate asks PROTOCOLINFO which methods tor takes and uses the first it can, in
// this order: none, SAFECOOKIE, COOKIE, HASHEDPASSWORD (with a password given).
func (c *controlConn) authenticate(a auth) error {
	r, err := c.do("PROTOCOLINFO", "PROTOCOLINFO 1")
	if err != nil {
		return err
	}
	var methods []string
	cookieFile := a.cookieFile
	for _, l := range r {
		switch {
		case strings.HasPrefix(l.text, "AUTH "):
			kv := parseKeyValues(strings.TrimPrefix(l.text, "AUTH "))
			methods = strings.Split(kv["METHODS"], ",")
			if cookieFile == "" {
				cookieFile = kv["COOKIEFILE"]
			}
		case strings.HasPrefix(l.text, "VERSION "):
			c.version = parseKeyValues(strings.TrimPrefix(l.text, "VERSION "))["Tor"]
		}
	}
	has := func(m string) bool { return slices.Contains(methods, m) }
	readCookie := func() ([]byte, error) {
		if cookieFile == "" {
			return nil, fmt.Errorf("tor asks for a cookie but names no cookie file: %w", errdefs.ErrFailedPrecondition)
		}
		cookie, err := os.ReadFile(cookieFile)
		if err != nil {
			return nil, fmt.Errorf("tor's authentication cookie: %w: %w", err, errdefs.ErrPermissionDenied)
		}
		if len(cookie) != 32 {
			return nil, fmt.Errorf("tor's authentication cookie %s: %d bytes, want 32: %w", cookieFile, len(cookie), errdefs.ErrPermissionDenied)
		}
		return cookie, nil
	}
	switch {
	case has("NULL"):
		_, err = c.do("AUTHENTICATE", "AUTHENTICATE")
	case has("SAFECOOKIE"):
		var cookie []byte
		if cookie, err = readCookie(); err == nil {
			err = c.safeCookie(cookie)
		}
	case has("COOKIE"):
		var cookie []byte
		if cookie, err = readCookie(); err == nil {
			_, err = c.do("AUTHENTICATE", "AUTHENTICATE "+hex.EncodeToString(cookie))
		}
	case has("HASHEDPASSWORD") && a.password != "":
		_, err = c.do("AUTHENTICATE", "AUTHENTICATE "+quote(a.password))
	default:
		return fmt.Errorf("tor asks for authentication by %s, which this controller cannot give (configure a password, or cookie authentication): %w",
			strings.Join(methods, " or "), errdefs.ErrPermissionDenied)
	}
	return err
}

const (
	safeCookieServerKey = "Tor safe cookie authentication server-to-controller hash"
	safeCookieClientKey = "Tor safe cookie authentication controller-to-server hash"
)

// safeCookie proves knowing the cookie without sending it, and checks that tor knows it
// too (control-spec 3.24).
func (c *controlConn) safeCookie(cookie []byte) error {
	clientNonce := make([]byte, 32)
	rand.Read(clientNonce)
	r, err := c.do("AUTHCHALLENGE", "AUTHCHALLENGE SAFECOOKIE "+hex.EncodeToString(clientNonce))
	if err != nil {
		return err
	}
	kv := parseKeyValues(strings.TrimPrefix(r[len(r)-1].text, "AUTHCHALLENGE "))
	serverHash, err1 := hex.DecodeString(kv["SERVERHASH"])
	serverNonce, err2 := hex.DecodeString(kv["SERVERNONCE"])
	if err1 != nil || err2 != nil || len(serverHash) != sha256.Size || len(serverNonce) != 32 {
		return fmt.Errorf("tor's AUTHCHALLENGE answer %q is malformed: %w", truncate(r[len(r)-1].text, 200), errdefs.ErrFailedPrecondition)
	}
	mac := func(key string) []byte {
		h := hmac.New(sha256.New, []byte(key))
		h.Write(cookie)
		h.Write(clientNonce)
		h.Write(serverNonce)
		return h.Sum(nil)
	}
	if !hmac.Equal(serverHash, mac(safeCookieServerKey)) {
		return fmt.Errorf("tor's SAFECOOKIE proof does not match the cookie file (is this the tor that wrote it?): %w", errdefs.ErrPermissionDenied)
	}
	_, err = c.do("AUTHENTICATE", "AUTHENTICATE "+hex.EncodeToString(mac(safeCookieClientKey)))
	return err
}

// parseKeyValues reads "K=V K2="quoted \" value"" as control-spec writes them.
func parseKeyValues(s string) map[string]string {
	kv := map[string]string{}
	for s = strings.TrimLeft(s, " "); s != ""; s = strings.TrimLeft(s, " ") {
		eq := strings.IndexAny(s, "= ")
		if eq < 0 || s[eq] == ' ' {
			// A bare word: skip it.
			if eq < 0 {
				break
			}
			s = s[eq:]
			continue
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			val = b.String()
			s = s[min(i+1, len(s)):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		kv[key] = val
	}
	return kv
}

// quote writes s as a control-spec QuotedString.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// getInfo asks GETINFO for keys and returns their values.
func (c *controlConn) getInfo(keys ...string) (map[string]string, error) {
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, " \r\n") {
			return nil, fmt.Errorf("GETINFO key %q: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	r, err := c.do("GETINFO", "GETINFO "+strings.Join(keys, " "))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range r {
		k, v, ok := strings.Cut(l.text, "=")
		if !ok {
			continue
		}
		if l.data != "" {
			v = l.data
		}
		out[k] = v
	}
	return out, nil
}
