package guestapi

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"hearth.dev/internal/errdefs"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/reaper"
)

// Exec implements GuestService: a command in a daemon's subcontainer, as its user, on
// pipes or on a pseudo-terminal. The command leads its own process group; when the caller
// goes away the group is killed (through the reaper, which never signals a pid it has
// already collected), and Exec returns once the command has been reaped and its output
// copied, holding no goroutine or descriptor past the call.
func (s *Server) Exec(stream grpc.BidiStreamingServer[guestv1.ExecRequest, guestv1.ExecResponse]) error {
	if err := s.needPackage(); err != nil {
		return err
	}
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil || len(start.GetArgv()) == 0 {
		return fmt.Errorf("the first Exec request must say what to run (start, with argv): %w", errdefs.ErrInvalidArgument)
	}
	spec, err := s.job(start.GetDaemon())
	if err != nil {
		return err
	}
	cmd, err := s.procs.Build(start.GetDaemon(), spec, start.GetArgv(), start.GetEnv())
	if err != nil {
		return fmt.Errorf("exec in %s: %w", start.GetDaemon(), err)
	}
	// Every descriptor Exec opens is closed when it returns (closing twice is harmless).
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	var stdin *os.File
	var outputs, child []*os.File
	if start.GetTty() {
		master, slave, err := openPTY()
		if err != nil {
			return fmt.Errorf("exec in %s: open a pseudo-terminal: %w", start.GetDaemon(), err)
		}
		opened = append(opened, master, slave)
		setSize(master, start.GetSize())
		child = []*os.File{slave, slave, slave}
		cmd.Attr.Sys.Setsid, cmd.Attr.Sys.Setctty, cmd.Attr.Sys.Ctty = true, true, 0
		cmd.Attr.Sys.Setpgid = false
		stdin, outputs = master, []*os.File{master}
	} else {
		var pipes [3][2]*os.File
		for i := range pipes {
			r, w, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("exec in %s: pipes: %w", start.GetDaemon(), err)
			}
			opened = append(opened, r, w)
			pipes[i] = [2]*os.File{r, w}
		}
		child = []*os.File{pipes[0][0], pipes[1][1], pipes[2][1]}
		stdin, outputs = pipes[0][1], []*os.File{pipes[1][0], pipes[2][0]}
	}
	cmd.Attr.Files = []uintptr{child[0].Fd(), child[1].Fd(), child[2].Fd()}
	pid, exited, err := s.procs.Spawn(cmd)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("exec in %s: start %v: %w: %w", start.GetDaemon(), start.GetArgv(), err, errdefs.ErrFailedPrecondition)
	}
	s.env.Logger.Info("exec", "daemon", start.GetDaemon(), "argv", start.GetArgv(), "pid", pid, "tty", start.GetTty())
	var sendMu sync.Mutex
	send := func(r *guestv1.ExecResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(r)
	}
	var copies sync.WaitGroup
	for i, f := range outputs {
		copies.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					b := append([]byte(nil), buf[:n]...)
					msg := &guestv1.ExecResponse{Msg: &guestv1.ExecResponse_Stdout{Stdout: b}}
					if i == 1 {
						msg = &guestv1.ExecResponse{Msg: &guestv1.ExecResponse_Stderr{Stderr: b}}
					}
					if send(msg) != nil {
						return
					}
				}
				if err != nil {
					return // EOF, EIO from a pty whose other side closed, or closed by us
				}
			}
		})
	}
	// Stdin and resizes, until the caller closes its side or goes away. Recv returns then,
	// at the latest when the call ends.
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			switch m := req.GetMsg().(type) {
			case *guestv1.ExecRequest_Stdin:
				_, _ = stdin.Write(m.Stdin)
			case *guestv1.ExecRequest_CloseStdin:
				if !start.GetTty() {
					stdin.Close()
				} else {
					_, _ = stdin.Write([]byte{4}) // ^D
				}
			case *guestv1.ExecRequest_Resize:
				if start.GetTty() {
					setSize(stdin, m.Resize)
				}
			}
		}
	}()
	var e reaper.Exit
	select {
	case e = <-exited:
	case <-ctx.Done():
		// The caller went away: the command goes too, with its process group.
		if err := s.procs.Signal(pid, syscall.SIGKILL); err != nil && !errors.Is(err, reaper.ErrReaped) {
			s.env.Logger.Warn("exec: kill", "pid", pid, "error", err)
		}
		e = <-exited
	}
	if !start.GetTty() {
		stdin.Close()
	}
	// Output the command's descendants still hold flows until they close it, or until the
	// caller goes away: then closing our ends stops the copies.
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-ctx.Done():
		for _, f := range outputs {
			f.Close()
		}
		<-copied
	}
	return send(&guestv1.ExecResponse{Msg: &guestv1.ExecResponse_Exit{Exit: exitProto(e)}})
}

// openPTY opens a new pseudo-terminal pair from the container's devpts.
func openPTY() (*os.File, *os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, e
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// setSize sets the terminal's size. Through SyscallConn, so that a concurrent Close cannot
// hand the descriptor's number to another file in between.
func setSize(f *os.File, size *guestv1.TermSize) {
	if size == nil || size.GetRows() == 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(size.GetRows()), Col: uint16(size.GetCols())})
	})
}
