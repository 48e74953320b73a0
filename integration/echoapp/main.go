// Command echoapp is the integration tests' app behind netd's proxy: on -http it answers
// every request with what it saw (host, protocol, forwarding headers, peer), and echoes
// WebSocket messages on /ws; on -tcp it echoes each line it reads, prefixed "echo: ".
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
)

func main() {
	httpAddr := flag.String("http", "", "address of the HTTP server")
	tcpAddr := flag.String("tcp", "", "address of the line echo server")
	name := flag.String("name", "echoapp", "name put in every answer")
	flag.Parse()
	errc := make(chan error, 2)
	if *tcpAddr != "" {
		go func() { errc <- serveTCP(*tcpAddr, *name) }()
	}
	if *httpAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/ws", websocketEcho)
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s host=%s proto=%s xff=%s xfp=%s xfh=%s path=%s peer=%s\n", *name, r.Host, r.Proto,
				r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.URL.Path, r.RemoteAddr)
		})
		go func() { errc <- http.ListenAndServe(*httpAddr, mux) }()
	}
	log.Fatal(<-errc)
}

func serveTCP(addr, name string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			s := bufio.NewScanner(c)
			for s.Scan() {
				fmt.Fprintf(c, "%s echo: %s\n", name, s.Text())
			}
		}()
	}
}

// websocketEcho is RFC 6455's handshake and an echo of each frame (up to 1 MiB, no
// fragmentation), enough for a test.
func websocketEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", base64.StdEncoding.EncodeToString(h[:]))
	if rw.Flush() != nil {
		return
	}
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(rw, hdr[:]); err != nil {
			return
		}
		op, n := hdr[0]&0x0f, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(rw, b[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(rw, b[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 1<<20 {
			return
		}
		var mask [4]byte
		if hdr[1]&0x80 != 0 {
			if _, err := io.ReadFull(rw, mask[:]); err != nil {
				return
			}
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(rw, payload); err != nil {
			return
		}
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
		if op == 8 { // close: answer it and end
			rw.Write([]byte{0x88, 0})
			rw.Flush()
			return
		}
		out := []byte{0x80 | op}
		switch {
		case n < 126:
			out = append(out, byte(n))
		case n < 1<<16:
			out = append(out, 126, byte(n>>8), byte(n))
		default:
			out = append(out, 127)
			out = binary.BigEndian.AppendUint64(out, n)
		}
		rw.Write(append(out, payload...))
		if rw.Flush() != nil {
			return
		}
	}
}
