package selfstat

import (
	"os"
	"os/exec"
	"testing"
)

func TestCountsFollowWhatIsHeld(t *testing.T) {
	fds0, err := OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	for range 5 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if fds, _ := OpenFDs(); fds != fds0+5 {
		t.Errorf("after opening 5 files: %d descriptors, want %d", fds, fds0+5)
	}
	for _, f := range files {
		f.Close()
	}
	if fds, _ := OpenFDs(); fds != fds0 {
		t.Errorf("after closing them: %d descriptors, want %d", fds, fds0)
	}

	g0 := Goroutines()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { <-stop; close(done) }()
	if g := Goroutines(); g != g0+1 {
		t.Errorf("with one more goroutine: %d, want %d", g, g0+1)
	}
	close(stop)
	<-done

	c0, err := Children()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/busybox", "sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Skipf("no busybox to run a child: %v", err)
	}
	if c, _ := Children(); c != c0+1 {
		t.Errorf("with a child running: %d children, want %d", c, c0+1)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if c, _ := Children(); c != c0 {
		t.Errorf("after it was reaped: %d children, want %d", c, c0)
	}
}
