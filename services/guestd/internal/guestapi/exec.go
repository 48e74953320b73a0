package guestapi

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// Exec implements GuestService: a command in a daemon's subcontainer, as its user, on
// pipes or on a pseudo-terminal.
func (s *Server) Exec(stream grpc.BidiStreamingServer[guestv1.ExecRequest, guestv1.ExecResponse]) error {
	if err := s.needPackage(); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil || len(start.GetArgv()) == 0 {
		return status.Error(codes.InvalidArgument, "the first Exec request must say what to run (start with argv)")
	}
	spec := s.bundle.Manifest.Daemons[start.GetDaemon()]
	if spec == nil {
		spec = s.bundle.Manifest.Oneshots[start.GetDaemon()]
	}
	if spec == nil {
		return status.Errorf(codes.NotFound, "no daemon or oneshot %q in %s", start.GetDaemon(), s.bundle.Manifest.ID)
	}
	cmd, err := s.launch.Build(start.GetDaemon(), spec, start.GetArgv(), start.GetEnv())
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	var stdin io.WriteCloser
	var outputs []*os.File
	var child []*os.File
	if start.GetTty() {
		master, slave, err := openPTY()
		if err != nil {
			return status.Errorf(codes.Internal, "pseudo-terminal: %v", err)
		}
		defer master.Close()
		setSize(master, start.GetSize())
		child = []*os.File{slave, slave, slave}
		cmd.Attr.Sys.Setsid, cmd.Attr.Sys.Setctty, cmd.Attr.Sys.Ctty = true, true, 0
		cmd.Attr.Sys.Setpgid = false
		stdin, outputs = master, []*os.File{master}
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			return err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return err
		}
		child = []*os.File{inR, outW, errW}
		stdin, outputs = inW, []*os.File{outR, errR}
	}
	cmd.Attr.Files = []uintptr{child[0].Fd(), child[1].Fd(), child[2].Fd()}
	pid, exited, err := s.launch.Spawn(cmd)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "start %v: %v", start.GetArgv(), err)
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
		copies.Add(1)
		go func(i int, f *os.File) {
			defer copies.Done()
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
					return // EOF, or EIO from a pty whose other side closed
				}
			}
		}(i, f)
	}
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				// The caller went away: the command goes too.
				if !errors.Is(err, io.EOF) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
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
				if f, ok := stdin.(*os.File); ok && start.GetTty() {
					setSize(f, m.Resize)
				}
			}
		}
	}()
	e := <-exited
	if !start.GetTty() {
		stdin.Close()
	}
	copies.Wait()
	for _, f := range outputs {
		f.Close()
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

func setSize(f *os.File, size *guestv1.TermSize) {
	if size == nil || size.GetRows() == 0 {
		return
	}
	_ = unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(size.GetRows()), Col: uint16(size.GetCols())})
}
