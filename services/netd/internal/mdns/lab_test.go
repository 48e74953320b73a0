package mdns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/testtool"
	"hearth.dev/services/netd/internal/netnstest"
)

// The lab: network namespaces joined by veths to a bridge in a namespace of its own, so
// that every packet stays inside namespaces the test makes. Each host namespace has eth0
// with 192.168.77.<n>/24. Responders run as helper processes (this test binary again,
// entered into a namespace with nsenter --net=), exactly as netd would run one: they list
// their namespace's interfaces themselves. Queries and the rogue responder are sockets
// opened inside a namespace from this process.

const helperEnv = "HEARTH_MDNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "responder" {
		os.Exit(helperResponder())
	}
	os.Exit(m.Run())
}

// helperResponder runs a Responder on the namespace's LAN interfaces; it reads commands
// ("publish NAME", "unpublish NAME") from stdin and writes every event as a JSON line to
// stdout. At the end of stdin it closes the responder (goodbyes) and exits.
func helperResponder() int {
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	r, err := New(Config{
		Interfaces: LAN(),
		Rescan:     time.Second,
		Log:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnEvent: func(ev Event) {
			mu.Lock()
			defer mu.Unlock()
			enc.Encode(ev)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, name, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "publish":
			err = r.Publish(name, nil)
		case "unpublish":
			r.Unpublish(name)
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type host struct {
	name string
	ns   string // path of the network namespace
	addr netip.Addr
}

type lab struct {
	t     *testing.T
	hosts map[string]*host
}

// newLab makes a LAN of the named hosts, removed when the test ends.
func newLab(t *testing.T, names ...string) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces")
	}
	testtool.Need(t, "ip", "nsenter")
	tag := fmt.Sprintf("hmdns%04x", rand.N(0x10000))
	l := &lab{t: t, hosts: map[string]*host{}}
	addNetns := func(name string) string {
		l.ip("netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		return "/run/netns/" + name
	}
	lan := tag + "-lan"
	addNetns(lan)
	l.ip("-n", lan, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", lan, "link", "set", "br0", "up")
	for i, name := range names {
		ns := tag + "-" + name
		h := &host{name: name, ns: addNetns(ns), addr: netip.AddrFrom4([4]byte{192, 168, 77, byte(i + 1)})}
		port := fmt.Sprintf("p%d", i)
		l.ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("-n", lan, "link", "set", port, "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", h.addr.String()+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.hosts[name] = h
	}
	return l
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) host(name string) *host { return l.hosts[name] }

var inNetns = netnstest.InNetns

// responder is a helper process running a Responder in a host of the lab.
type responder struct {
	t      *testing.T
	host   *host
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan Event
	stderr *lockedBuffer

	mu   sync.Mutex
	seen []Event
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startResponder starts a responder in h, stopped (gracefully if it can) when the test
// ends.
func (l *lab) startResponder(h *host) *responder {
	t := l.t
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &responder{t: t, host: h, events: make(chan Event, 64), stderr: &lockedBuffer{}}
	p.cmd = exec.Command("nsenter", "--net="+h.ns, exe, "-test.run=^$")
	p.cmd.Env = append(os.Environ(), helperEnv+"=responder")
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.events)
		dec := json.NewDecoder(stdout)
		for {
			var ev Event
			if err := dec.Decode(&ev); err != nil {
				return
			}
			p.events <- ev
		}
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("responder in %s logged:\n%s", h.name, p.stderr)
		}
	})
	return p
}

// stop closes the responder's stdin (it says goodbye and exits) and kills it if it has
// not exited within five seconds.
func (p *responder) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.t.Errorf("responder in %s did not exit after its stdin closed; killing it", p.host.name)
		p.cmd.Process.Kill()
		<-done
	}
}

// kill ends the responder at once: no goodbye.
func (p *responder) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func (p *responder) command(format string, args ...any) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.stdin, format+"\n", args...); err != nil {
		p.t.Fatalf("responder in %s: %v", p.host.name, err)
	}
}

// wait returns the first event of kind for host (any host when ""), failing the test
// after timeout.
func (p *responder) wait(kind EventKind, host string, timeout time.Duration) Event {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("responder in %s exited waiting for %v %s; events %v\n%s", p.host.name, kind, host, p.seenCopy(), p.stderr)
			}
			p.mu.Lock()
			p.seen = append(p.seen, ev)
			p.mu.Unlock()
			if ev.Kind == kind && (host == "" || ev.Name.Host == host) {
				return ev
			}
		case <-deadline:
			p.t.Fatalf("responder in %s: no %v event for %q within %v; events %v", p.host.name, kind, host, timeout, p.history())
		}
	}
}

// history returns every event seen so far, reading those still queued.
func (p *responder) history() []Event {
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return p.seenCopy()
			}
			p.mu.Lock()
			p.seen = append(p.seen, ev)
			p.mu.Unlock()
		default:
			return p.seenCopy()
		}
	}
}

func (p *responder) seenCopy() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.seen...)
}

// client is a socket in a host of the lab that asks mDNS questions.
type client struct {
	t    *testing.T
	host *host
	raw  net.PacketConn
	conn *ipv4.PacketConn
}

// openClient opens a UDP socket in h on port (0: any, a one-shot querier; 5353: a full
// mDNS querier that also hears multicast answers), closed when the test ends.
func (l *lab) openClient(h *host, port int) *client {
	t := l.t
	t.Helper()
	c := &client{t: t, host: h}
	err := inNetns(h.ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
		raw, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			return err
		}
		c.raw, c.conn = raw, ipv4.NewPacketConn(raw)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if err := c.conn.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := c.conn.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return err
		}
		if port == Port {
			return c.conn.JoinGroup(ifi, group)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("client socket in %s: %v", h.name, err)
	}
	t.Cleanup(func() { c.raw.Close() })
	return c
}

// heard is one response a client received.
type heard struct {
	msg   *dns.Msg
	src   netip.AddrPort
	dst   netip.Addr
	after time.Duration // since the query went out
}

// ask multicasts q and returns the first response that has a record for q's name,
// sending q again every second (as a querier does) until timeout; nil when none came.
func (c *client) ask(q *dns.Msg, timeout time.Duration) *heard {
	c.t.Helper()
	b, err := q.Pack()
	if err != nil {
		c.t.Fatal(err)
	}
	name := strings.ToLower(q.Question[0].Name)
	buf := make([]byte, maxPacket)
	c.drain(buf)
	start := time.Now()
	deadline := start.Add(timeout)
	for next := start; ; {
		if now := time.Now(); !now.Before(next) {
			if _, err := c.conn.WriteTo(b, nil, group); err != nil {
				c.t.Fatalf("send from %s: %v", c.host.name, err)
			}
			next = now.Add(time.Second)
		}
		wake := next
		if deadline.Before(wake) {
			wake = deadline
		}
		c.conn.SetReadDeadline(wake)
		n, cm, src, err := c.conn.ReadFrom(buf)
		if err != nil {
			if time.Now().Before(deadline) {
				continue
			}
			return nil
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
			if strings.ToLower(rr.Header().Name) == name {
				h := &heard{msg: m, src: src.(*net.UDPAddr).AddrPort(), after: time.Since(start)}
				if cm != nil {
					h.dst, _ = netip.AddrFromSlice(cm.Dst)
				}
				return h
			}
		}
	}
}

// drain reads and drops what the socket holds already (announcements heard before the
// query), so that what ask returns answers the query.
func (c *client) drain(buf []byte) {
	// A deadline already past fails the read before it looks at the socket: give it a
	// moment.
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	for {
		if _, _, _, err := c.conn.ReadFrom(buf); err != nil {
			return
		}
	}
}

// listen returns the first response with a record of name heard within timeout.
func (c *client) listen(name string, timeout time.Duration) *heard {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, maxPacket)
	c.conn.SetReadDeadline(deadline)
	for {
		n, _, src, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		for _, rr := range m.Answer {
			if strings.EqualFold(rr.Header().Name, name) {
				return &heard{msg: m, src: src.(*net.UDPAddr).AddrPort()}
			}
		}
	}
}

// resolve asks for name's A record as a one-shot querier; the invalid address when no
// answer came within timeout.
func (l *lab) resolve(c *client, name string, timeout time.Duration) (netip.Addr, time.Duration) {
	l.t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	h := c.ask(q, timeout)
	if h == nil {
		return netip.Addr{}, 0
	}
	for _, rr := range h.msg.Answer {
		if a, ok := addrOf(rr); ok && strings.EqualFold(rr.Header().Name, name) {
			return a, h.after
		}
	}
	return netip.Addr{}, 0
}

// rogue claims name for addr in h without probing: it announces once, then answers
// every query for the name, until the test ends.
func (l *lab) rogue(h *host, name string) {
	t := l.t
	t.Helper()
	c := l.openClient(h, Port)
	b, err := announcement(name, h.addr, ttl).Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.WriteTo(b, nil, group); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxPacket)
		for {
			c.conn.SetReadDeadline(time.Time{})
			n, _, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil || m.Response {
				continue
			}
			for _, q := range m.Question {
				if strings.EqualFold(q.Name, name) {
					c.conn.WriteTo(b, nil, group)
					break
				}
			}
		}
	}()
	t.Cleanup(func() { c.raw.Close(); <-done })
}
