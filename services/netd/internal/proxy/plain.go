package proxy

import (
	"net"
	"net/http"
	"strings"
)

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
