package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A minimal WebSocket (RFC 6455), enough for an echo: the upgrade, and unfragmented
// binary or text frames.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsWrite writes one final frame; a client masks it.
func wsWrite(w io.Writer, opcode byte, payload []byte, mask bool) error {
	hdr := []byte{0x80 | opcode}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, m|byte(n))
	case n < 1<<16:
		hdr = append(hdr, m|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, m|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := payload
	if mask {
		var key [4]byte
		_, _ = rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		body = make([]byte, len(payload))
		for i := range payload {
			body[i] = payload[i] ^ key[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

// wsRead reads one frame and returns its opcode and unmasked payload.
func wsRead(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<24 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, p, nil
}

// wsEchoBackend upgrades and echoes every data frame until a close frame.
func wsEchoBackend(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
			http.Error(w, "want a websocket upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Seen-Xff: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")), r.Header.Get("X-Forwarded-For"))
		_ = rw.Flush()
		for {
			op, p, err := wsRead(rw)
			if err != nil {
				return
			}
			if op == 8 { // close
				_ = wsWrite(conn, 8, p, false)
				return
			}
			if err := wsWrite(conn, op, p, false); err != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// A WebSocket through the proxy: the upgrade reaches the backend, and frames go both
// ways, small and large, until the close.
func TestWebSocketEcho(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.SetRoute("ws.test", Route{Backend: wsEchoBackend(t), Kind: KindHTTP})
	_ = p.Certs().Set("ws.test", ca.leaf(t, "ws.test"))

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.httpsAddr,
		&tls.Config{ServerName: "ws.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var keyb [16]byte
	_, _ = rand.Read(keyb[:])
	key := base64.StdEncoding.EncodeToString(keyb[:])
	fmt.Fprintf(conn, "GET /echo HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	if got := resp.Header.Get("X-Seen-Xff"); got != "127.0.0.1" {
		t.Fatalf("the backend saw X-Forwarded-For %q, want 127.0.0.1", got)
	}
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for i, msg := range [][]byte{[]byte("hello"), bytes.Repeat([]byte("x"), 300), big, []byte("bye")} {
		op := byte(2)
		if i == 0 {
			op = 1
		}
		if err := wsWrite(conn, op, msg, true); err != nil {
			t.Fatal(err)
		}
		gotOp, got, err := wsRead(br)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if gotOp != op || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: echoed opcode %d, %d bytes; want %d, %d bytes", i, gotOp, len(got), op, len(msg))
		}
	}
	if err := wsWrite(conn, 8, []byte{0x03, 0xe8}, true); err != nil {
		t.Fatal(err)
	}
	if op, _, err := wsRead(br); err != nil || op != 8 {
		t.Fatalf("close: opcode %d, %v", op, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the close: %v, want EOF", err)
	}
}
