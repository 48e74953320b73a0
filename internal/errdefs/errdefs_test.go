package errdefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/errkind"
)

func TestToGRPC(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{nil, codes.OK},
		{fmt.Errorf("container %q: %w", "x", ErrNotFound), codes.NotFound},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrAlreadyExists)), codes.AlreadyExists},
		{fmt.Errorf("bad: %w", ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("busy: %w", ErrFailedPrecondition), codes.FailedPrecondition},
		{ErrPermissionDenied, codes.PermissionDenied},
		{ErrUnavailable, codes.Unavailable},
		{fmt.Errorf("conflict: %w", ErrAborted), codes.Aborted},
		{fmt.Errorf("bug: %w", ErrInternal), codes.Internal},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("wait: %w", context.Canceled), codes.Canceled},
		{errors.New("plain"), codes.Unknown},
		{status.Error(codes.Aborted, "already a status"), codes.Aborted},
		// Another daemon's error, wrapped: its code stays.
		{fmt.Errorf("attach: %w", status.Error(codes.ResourceExhausted, "subnet full")), codes.ResourceExhausted},
		{fmt.Errorf("attach: %w", FromGRPC(status.Error(codes.NotFound, "no veth"))), codes.NotFound},
		// A kind wrapped around another daemon's error decides: the outermost wins.
		{fmt.Errorf("netd refused: %w: %w", ErrFailedPrecondition, FromGRPC(status.Error(codes.NotFound, "no veth"))), codes.FailedPrecondition},
		{fmt.Errorf("%w: %w", FromGRPC(status.Error(codes.NotFound, "no veth")), ErrFailedPrecondition), codes.NotFound},
		{errors.Join(errors.New("first"), fmt.Errorf("second: %w", ErrNotFound)), codes.NotFound},
		// A full file system, met anywhere: ResourceExhausted, unless a kind says otherwise.
		{fmt.Errorf("staging: %w", &os.PathError{Op: "mkdir", Path: "/s/x", Err: syscall.ENOSPC}), codes.ResourceExhausted},
		{fmt.Errorf("write: %w", syscall.EDQUOT), codes.ResourceExhausted},
		{fmt.Errorf("bug: %w: %w", ErrInternal, syscall.ENOSPC), codes.Internal},
		{fmt.Errorf("read: %w", syscall.EIO), codes.Unknown},
	} {
		got := ToGRPC(tc.err)
		if m := status.Convert(got).Message(); tc.code == codes.ResourceExhausted && errors.Is(tc.err, syscall.ENOSPC) && !strings.HasSuffix(m, "free some space on it and try again") {
			t.Errorf("ToGRPC(%v) message %q says nothing of the fix", tc.err, m)
		}
		if c := status.Code(got); c != tc.code {
			t.Errorf("ToGRPC(%v) code %v, want %v", tc.err, c, tc.code)
		}
		if tc.err == nil {
			continue
		}
		if m := status.Convert(got).Message(); !strings.HasPrefix(m, tc.err.Error()) && !isStatus(tc.err) {
			t.Errorf("ToGRPC(%v) message %q lost the error text", tc.err, m)
		}
	}
}

func isStatus(err error) bool {
	_, ok := err.(interface{ GRPCStatus() *status.Status })
	return ok
}

// TestStatusPassesThrough: a status handed to ToGRPC is the same error afterwards.
func TestStatusPassesThrough(t *testing.T) {
	s := status.New(codes.Aborted, "lost a race")
	in := s.Err()
	if got := ToGRPC(in); got != in {
		t.Errorf("ToGRPC(status) = %v, want the same error %v", got, in)
	}
	r := FromGRPC(in)
	if got := ToGRPC(r); got != r {
		t.Errorf("ToGRPC(FromGRPC(status)) = %v, want the same error %v", got, r)
	}
}

// TestRoundTrip sends every code through FromGRPC and ToGRPC, bare and wrapped, and
// checks the kind, the code and the words that arrive.
func TestRoundTrip(t *testing.T) {
	kindOf := map[codes.Code]error{}
	for _, k := range kinds {
		kindOf[k.code] = k.err
	}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			const words = `container "web": the words of the daemon that failed`
			got := FromGRPC(status.Error(c, words))
			if got.Error() != words {
				t.Errorf("FromGRPC message %q, want %q", got.Error(), words)
			}
			if strings.Contains(got.Error(), "rpc error") {
				t.Errorf("FromGRPC kept the rpc prefix: %q", got)
			}
			if kind, ok := kindOf[c]; ok && !errors.Is(got, kind) {
				t.Errorf("errors.Is(FromGRPC(%v), %v) = false", c, kind)
			}
			for _, k := range kinds {
				if k.code != c && errors.Is(got, k.err) {
					t.Errorf("FromGRPC(%v) is also %v", c, k.err)
				}
			}
			// Back to gRPC: bare, and wrapped by the daemon in between.
			if back := status.Convert(ToGRPC(got)); back.Code() != c || back.Message() != words {
				t.Errorf("ToGRPC(FromGRPC) = %v %q, want %v %q", back.Code(), back.Message(), c, words)
			}
			wrapped := fmt.Errorf("start web: %w", got)
			back := status.Convert(ToGRPC(wrapped))
			if back.Code() != c || back.Message() != "start web: "+words {
				t.Errorf("ToGRPC(wrapped) = %v %q, want %v %q", back.Code(), back.Message(), c, "start web: "+words)
			}
			// And at the far end: the same kind, both daemons' words.
			end := FromGRPC(ToGRPC(wrapped))
			if kind, ok := kindOf[c]; ok && !errors.Is(end, kind) {
				t.Errorf("after two hops errors.Is(%v) = false", kind)
			}
			if end.Error() != "start web: "+words {
				t.Errorf("after two hops %q", end)
			}
		})
	}
}

func TestFromGRPCLeavesOthers(t *testing.T) {
	plain := fmt.Errorf("socket: %w", ErrUnavailable)
	for _, tc := range []struct {
		name string
		in   error
		same bool
	}{
		{"nil", nil, true},
		{"plain error", plain, true},
		{"already converted", FromGRPC(status.Error(codes.NotFound, "x")), true},
		{"status", status.Error(codes.NotFound, "x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromGRPC(tc.in); (got == tc.in) != tc.same {
				t.Errorf("FromGRPC(%v) = %v; same: %v, want %v", tc.in, got, got == tc.in, tc.same)
			}
		})
	}
	if c := Code(FromGRPC(plain)); c != codes.Unavailable {
		t.Errorf("plain error after FromGRPC: code %v", c)
	}
	// A status without a message still says something.
	if got := FromGRPC(status.Error(codes.NotFound, "")).Error(); got == "" {
		t.Error("empty message")
	}
}

// TestKindsAreErrkind: errdefs and errkind name the same values, so a program that
// knows only errkind (hearth-effect) tells apart the kinds the daemons return.
func TestKindsAreErrkind(t *testing.T) {
	for _, tc := range []struct{ errdefs, errkind error }{
		{ErrInvalidArgument, errkind.InvalidArgument},
		{ErrNotFound, errkind.NotFound},
		{ErrAlreadyExists, errkind.AlreadyExists},
		{ErrFailedPrecondition, errkind.FailedPrecondition},
		{ErrPermissionDenied, errkind.PermissionDenied},
		{ErrUnavailable, errkind.Unavailable},
		{ErrResourceExhausted, errkind.ResourceExhausted},
		{ErrUnimplemented, errkind.Unimplemented},
		{ErrAborted, errkind.Aborted},
		{ErrInternal, errkind.Internal},
	} {
		if !errors.Is(fmt.Errorf("x: %w", tc.errkind), tc.errdefs) || Code(tc.errkind) != Code(tc.errdefs) {
			t.Errorf("errkind %v is not errdefs %v", tc.errkind, tc.errdefs)
		}
	}
}
