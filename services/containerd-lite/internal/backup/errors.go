package backup

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/errdefs"
)

// ErrDamaged reports a repository with a corrupt, truncated or missing piece. Errors
// that match it carry gRPC's DataLoss code (errdefs has no kind for it): errdefs.Code
// finds it through GRPCStatus.
var ErrDamaged = errors.New("backup repository is damaged")

type damageError struct{ err error }

func (e *damageError) Error() string        { return e.err.Error() }
func (e *damageError) Unwrap() error        { return e.err }
func (e *damageError) Is(target error) bool { return target == ErrDamaged }
func (e *damageError) GRPCStatus() *status.Status {
	return status.New(codes.DataLoss, e.Error())
}

// damaged makes an ErrDamaged error; its message should say what is damaged and what to do.
func damaged(format string, args ...any) error {
	return &damageError{fmt.Errorf(format, args...)}
}

// classify gives err, met while reading or writing the repository at dir, a kind: the
// kinds of the system's errors where they say the storage is unreachable or full, and
// ErrDamaged for anything else (an authentication failure, a short or missing piece,
// something that does not parse). what names the operation and its input.
func classify(err error, dir, what string) error {
	if err == nil {
		return nil
	}
	var errno unix.Errno
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &errno):
		switch errno {
		case unix.EACCES, unix.EPERM, unix.EROFS:
			return fmt.Errorf("%s: repository %s: %w (%w)", what, dir, err, errdefs.ErrPermissionDenied)
		case unix.ENOSPC, unix.EDQUOT:
			return fmt.Errorf("%s: repository %s: %w (%w)", what, dir, err, errdefs.ErrResourceExhausted)
		case unix.ENOTCONN, unix.ESTALE, unix.ETIMEDOUT, unix.EHOSTDOWN, unix.EHOSTUNREACH,
			unix.ENODEV, unix.ENXIO, unix.ECONNREFUSED, unix.ECONNRESET, unix.EAGAIN:
			return fmt.Errorf("%s: repository %s is unreachable: %w (%w)", what, dir, err, errdefs.ErrUnavailable)
		}
	}
	return damaged("%s: repository %s is damaged: %w", what, dir, err)
}
