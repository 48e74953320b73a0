package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("plain"), codes.Unknown},
		{status.Error(codes.Aborted, "already a status"), codes.Aborted},
	} {
		got := ToGRPC(tc.err)
		if c := status.Code(got); c != tc.code {
			t.Errorf("ToGRPC(%v) code %v, want %v", tc.err, c, tc.code)
		}
		if _, isStatus := status.FromError(tc.err); !isStatus && status.Convert(got).Message() != tc.err.Error() {
			t.Errorf("ToGRPC(%v) message %q lost the error text", tc.err, status.Convert(got).Message())
		}
	}
}
