package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// newTransport makes the client side: HTTP/1.1 only, keep-alive connections pooled per
// backend, no proxy from the environment, bodies passed as they are.
func newTransport(cfg *Config) *http.Transport {
	var protos http.Protocols
	protos.SetHTTP1(true)
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		Protocols:              &protos,
		MaxIdleConns:           0, // no overall cap: MaxIdleConnsPerHost caps each backend
		MaxIdleConnsPerHost:    cfg.MaxIdleBackendConns,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: int64(cfg.MaxHeaderBytes) * 4,
		ReadBufferSize:         32 << 10,
		WriteBufferSize:        32 << 10,
	}
}

// bufferPool lends the 32 KiB buffers that bodies are copied through.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func (p *Proxy) newForwarder() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:    p.rewrite,
		Transport:  p.transport,
		BufferPool: &bufferPool{},
		// Write each chunk of a body to the client as it comes: streamed responses
		// (server-sent events, long polls, downloads) are never held back.
		FlushInterval: -1,
		ErrorHandler:  p.backendError,
		ErrorLog:      nil,
	}
}

// backendKey carries a request's route from serveTLSRequest to rewrite.
type backendKey struct{}

// rewrite sends the request to its route's backend, keeping the client's Host, with
// X-Forwarded-For, -Host and -Proto set from the connection (ReverseProxy has dropped
// the client's own, and Forwarded).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	backend, _ := pr.In.Context().Value(backendKey{}).(string)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = backend
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// backendError answers 502 when the backend cannot be reached or fails mid-response.
func (p *Proxy) backendError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	backend, _ := r.Context().Value(backendKey{}).(string)
	p.log.Warn("proxy: backend error", "host", r.Host, "backend", backend, "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, "502 bad gateway: the service for "+hostOnly(r.Host)+" is not answering", http.StatusBadGateway)
}

// serveTLSRequest routes a request of a terminated connection by its Host (as nginx
// does: the server name chose the certificate; a client may send requests for another
// name on the same connection, as HTTP/2 clients do when one certificate covers both).
func (p *Proxy) serveTLSRequest(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	route, ok := p.routes.get(host)
	if !ok {
		http.Error(w, "404 not found: no service is bound to "+host, http.StatusNotFound)
		return
	}
	if route.Kind != KindHTTP {
		// A passthrough name: its own TLS, on a connection of its own.
		http.Error(w, "421 misdirected request: open a new connection to "+host, http.StatusMisdirectedRequest)
		return
	}
	if r.ProtoMajor == 1 {
		// Let the backend's response start before the request body has all come
		// (HTTP/2 does this anyway).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	p.forwarder.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, route.Backend)))
}

// servePlainRequest answers HTTP-01 challenges and redirects everything else to https.
func (p *Proxy) servePlainRequest(w http.ResponseWriter, r *http.Request) {
	if token, ok := strings.CutPrefix(r.URL.Path, HTTP01Prefix); ok {
		ka, ok := p.challenges.KeyAuthorization(token)
		if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
			p.log.Debug("proxy: http-01 request for no pending token", "host", r.Host, "token", token, "remote", r.RemoteAddr)
			http.Error(w, "404 not found: no ACME challenge is pending for this token", http.StatusNotFound)
			return
		}
		p.log.Info("proxy: answered an http-01 challenge", "host", r.Host, "token", token, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ka))
		return
	}
	host := hostOnly(r.Host)
	if host == "" {
		http.Error(w, "400 bad request: no Host", http.StatusBadRequest)
		return
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port := p.redirectPort(); port != "" {
		host += ":" + port
	}
	w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusPermanentRedirect)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("308 permanent redirect: use https\n"))
	}
}

// hostOnly returns a Host header's name, normalized, without its port or IPv6 brackets.
func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	return normalizeHost(host)
}
