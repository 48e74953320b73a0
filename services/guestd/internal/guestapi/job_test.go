package guestapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

func TestRunJob(t *testing.T) {
	cl := serve(t, newTestServer(t, header+"daemons: {d: {image: i, command: ['sleep 100']}}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		req      *guestv1.RunJobRequest
		code     int32
		stdout   string // prefix
		stderr   string
		outLen   int
		cut      bool
		timedOut bool
		refused  codes.Code
	}{
		{name: "input and exit", req: &guestv1.RunJobRequest{Name: "a", Image: "i", Argv: []string{"cat; echo oops >&2; exit 3"}, Stdin: []byte(`{"x": 1}`)},
			code: 3, stdout: `{"x": 1}`, stderr: "oops\n"},
		{name: "ignores its input", req: &guestv1.RunJobRequest{Name: "b", Image: "i", Argv: []string{"echo done"}, Stdin: []byte(strings.Repeat("x", 200000))},
			stdout: "done\n"},
		{name: "output cut", req: &guestv1.RunJobRequest{Name: "c", Image: "i", Argv: []string{"head -c 3000000 /dev/zero"}},
			outLen: maxJobOutput, cut: true},
		{name: "timeout", req: &guestv1.RunJobRequest{Name: "d", Image: "i", Argv: []string{"sleep 30"}, Timeout: durationpb.New(200 * time.Millisecond)},
			code: -1, timedOut: true},
		{name: "leftover holds output", req: &guestv1.RunJobRequest{Name: "e", Image: "i", Argv: []string{"(sleep 3 &); echo out"}},
			stdout: "out\n"},
		{name: "unknown image", req: &guestv1.RunJobRequest{Name: "f", Image: "nope", Argv: []string{"true"}}, refused: codes.InvalidArgument},
		{name: "long timeout", req: &guestv1.RunJobRequest{Name: "g", Image: "i", Argv: []string{"true"}, Timeout: durationpb.New(2 * time.Hour)}, refused: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, err := cl.RunJob(ctx, tc.req)
			if tc.refused != codes.OK {
				if status.Code(err) != tc.refused {
					t.Fatalf("RunJob = %v, %v; want %v", resp, err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetExit().GetCode() != tc.code || resp.GetTimedOut() != tc.timedOut || resp.GetStdoutTruncated() != tc.cut {
				t.Errorf("exit %v, timed out %v, cut %v", resp.GetExit(), resp.GetTimedOut(), resp.GetStdoutTruncated())
			}
			if !strings.HasPrefix(string(resp.GetStdout()), tc.stdout) || string(resp.GetStderr()) != tc.stderr {
				t.Errorf("stdout %.100q, stderr %q", resp.GetStdout(), resp.GetStderr())
			}
			if tc.outLen > 0 && len(resp.GetStdout()) != tc.outLen {
				t.Errorf("stdout has %d bytes, want %d", len(resp.GetStdout()), tc.outLen)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}
