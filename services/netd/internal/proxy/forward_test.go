package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A backend that closes each keep-alive connection after one response (without
// saying so): the pooled connection is dead at the next request, which is sent again
// on a new one.
func TestStaleBackendConnection(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				body := "served " + req.URL.Path
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
				time.Sleep(20 * time.Millisecond) // the proxy pools the connection first
			}()
		}
	}()
	// GETs are sent again after the failure; POSTs cannot be: the dead connection
	// must be found before (here, after 10 ms idle; 1 s by default). Set before the
	// route, whose store the requests' handlers read after.
	p.backends.probeAfter = 10 * time.Millisecond
	_ = p.SetRoute("a.test", Route{Backend: l.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	c := client(ca, p.httpsAddr, false)
	for i := range 6 {
		time.Sleep(50 * time.Millisecond)
		req := mustRequest(t, "GET", "https://a.test/n"+itoa(i))
		if i%2 == 1 {
			req, _ = http.NewRequest("POST", "https://a.test/n"+itoa(i), strings.NewReader("body"))
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "served /n"+itoa(i) {
			t.Fatalf("request %d: %s %q", i, resp.Status, b)
		}
	}
}

// A streamed response (no length) reaches the client piece by piece: the first piece
// arrives while the backend still holds the rest back.
func TestStreamedResponseFlushes(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	defer backend.Close()
	defer close(release)
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	for _, h2 := range []bool{false, true} {
		resp, err := client(ca, p.httpsAddr, h2).Get("https://a.test/events")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			b := make([]byte, len("data: first\n\n"))
			_, err := io.ReadFull(resp.Body, b)
			if err != nil {
				got <- err.Error()
			}
			got <- string(b)
		}()
		select {
		case s := <-got:
			if s != "data: first\n\n" {
				t.Fatalf("h2=%v: first piece %q", h2, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("h2=%v: the first piece did not come while the backend held the rest", h2)
		}
		release <- struct{}{}
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(rest) != "data: second\n\n" {
			t.Fatalf("h2=%v: rest %q", h2, rest)
		}
	}
}

// Methods and bodies pass as they are; a response head over the cap is a 502.
func TestMethodsAndBodies(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{MaxHeaderBytes: 4 << 10})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/big-head":
			w.Header().Set("X-Big", strings.Repeat("y", 64<<10))
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Length", itoa(int(r.ContentLength)))
		_, _ = w.Write(append([]byte(r.Method+":"), b...))
	}))
	defer backend.Close()
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	for _, h2 := range []bool{false, true} {
		c := client(ca, p.httpsAddr, h2)
		for _, tc := range []struct {
			method, path, body string
			chunked            bool
			status             int
			want               string
		}{
			{"GET", "/", "", false, 200, "GET:"},
			{"POST", "/", "a=1&b=2", false, 200, "POST:a=1&b=2"},
			{"PUT", "/", "streamed body", true, 200, "PUT:streamed body"},
			{"DELETE", "/", "", false, 200, "DELETE:"},
			{"HEAD", "/", "", false, 200, ""},
			{"GET", "/no-content", "", false, 204, ""},
			{"GET", "/big-head", "", false, 502, "not answering"},
		} {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length
				}
			}
			req, _ := http.NewRequest(tc.method, "https://a.test"+tc.path, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) || tc.want == "" && len(b) != 0 {
				t.Errorf("h2=%v %s %s: %d %q, want %d %q", h2, tc.method, tc.path, resp.StatusCode, b, tc.status, tc.want)
			}
			if tc.status == 200 && resp.Header.Get("X-Method") != tc.method {
				t.Errorf("h2=%v %s: backend saw %q", h2, tc.method, resp.Header.Get("X-Method"))
			}
			if tc.chunked && resp.Header.Get("X-Length") != "-1" {
				t.Errorf("h2=%v %s: backend saw length %s, want a chunked body", h2, tc.method, resp.Header.Get("X-Length"))
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
