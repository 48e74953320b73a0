// Package errkind holds the error kinds shared by Hearth's code, with nothing but the
// standard library behind them, so that a small program (a static client inside a
// container) can tell kinds apart without linking gRPC. Package errdefs re-exports each
// kind under its Err name and maps kinds to gRPC codes; both names are the same error
// value, so errors.Is(err, errkind.NotFound) and errors.Is(err, errdefs.ErrNotFound)
// agree.
package errkind

import "errors"

// The error kinds.
var (
	InvalidArgument    = errors.New("invalid argument")
	NotFound           = errors.New("not found")
	AlreadyExists      = errors.New("already exists")
	FailedPrecondition = errors.New("failed precondition")
	PermissionDenied   = errors.New("permission denied")
	Unavailable        = errors.New("unavailable")
	ResourceExhausted  = errors.New("resource exhausted")
	Unimplemented      = errors.New("not implemented")
	// Aborted: the operation lost a race with another one (a conflicting change);
	// retrying it may succeed.
	Aborted = errors.New("aborted")
	// Internal: a broken invariant, a bug. The message says what broke.
	Internal = errors.New("internal error")
)
