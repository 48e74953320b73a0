// Package errdefs holds the error kinds shared by Hearth's daemons. Code inside a daemon
// wraps one of these with %w and a message a user can act on; the gRPC server maps the
// kind to a status code once, with ToGRPC, in an interceptor (internal/grpcserver), so
// handlers return plain errors. A client turns a status back into an error of the same
// kind with FromGRPC, and may wrap it in turn: an error from another daemon keeps its
// code and its words all the way to the user.
package errdefs

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/errkind"
)

// The error kinds. Each is the errkind value of the same name (errkind holds them
// without gRPC, for programs that must stay small).
var (
	ErrInvalidArgument    = errkind.InvalidArgument
	ErrNotFound           = errkind.NotFound
	ErrAlreadyExists      = errkind.AlreadyExists
	ErrFailedPrecondition = errkind.FailedPrecondition
	ErrPermissionDenied   = errkind.PermissionDenied
	ErrUnavailable        = errkind.Unavailable
	ErrResourceExhausted  = errkind.ResourceExhausted
	ErrUnimplemented      = errkind.Unimplemented
	// ErrAborted: the operation lost a race with another one (a conflicting change);
	// retrying it may succeed.
	ErrAborted = errkind.Aborted
	// ErrInternal: a broken invariant, a bug. The message says what broke.
	ErrInternal = errkind.Internal
)

// kinds pairs each kind with its code. The codes without a kind (Unknown, OutOfRange,
// DataLoss, Unauthenticated) still survive FromGRPC and ToGRPC, through GRPCStatus.
var kinds = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrUnavailable, codes.Unavailable},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrUnimplemented, codes.Unimplemented},
	{ErrAborted, codes.Aborted},
	{ErrInternal, codes.Internal},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

type grpcStatus interface{ GRPCStatus() *status.Status }

// Code returns the gRPC code of err: that of the first kind or status found in err's
// chain, outermost first (so a handler that wraps another daemon's error in a kind of
// its own decides the code), or Unknown when there is none.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if c, ok := code(err); ok {
		return c
	}
	if noSpace(err) {
		return codes.ResourceExhausted
	}
	return codes.Unknown
}

// noSpace reports whether err comes from a full file system (or a quota): without a kind
// of its own, such an error is ResourceExhausted, whichever step of whichever operation
// met it.
func noSpace(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EDQUOT)
}

// code walks err's tree in the order errors.Is does.
func code(err error) (codes.Code, bool) {
	is, _ := err.(interface{ Is(error) bool })
	for _, k := range kinds {
		if err == k.err || (is != nil && is.Is(k.err)) {
			return k.code, true
		}
	}
	if gs, ok := err.(grpcStatus); ok && gs.GRPCStatus() != nil {
		return gs.GRPCStatus().Code(), true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			return code(next)
		}
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			if next == nil {
				continue
			}
			if c, ok := code(next); ok {
				return c, true
			}
		}
	}
	return codes.Unknown, false
}

// ToGRPC turns err into a gRPC status error carrying its message and its kind's code. A
// status (or an error from FromGRPC) passes through unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(grpcStatus); ok {
		return err
	}
	if _, ok := code(err); !ok && noSpace(err) {
		return status.Error(codes.ResourceExhausted, err.Error()+": the file system is full: free some space on it and try again")
	}
	return status.Error(Code(err), err.Error())
}

// FromGRPC turns an error from a gRPC call into a plain error: its message is the
// status message (without the "rpc error: code = ... desc = " prefix), it wraps the
// kind of its code, so that errors.Is(err, ErrNotFound) holds, and it keeps its code
// when it reaches ToGRPC again, also wrapped with %w. Other errors are returned as
// they are.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*remote); ok {
		return err
	}
	gs, ok := err.(grpcStatus)
	if !ok {
		return err
	}
	s := gs.GRPCStatus()
	if s == nil || s.Code() == codes.OK {
		return err
	}
	r := &remote{s: s}
	for _, k := range kinds {
		if k.code == s.Code() {
			r.kind = k.err
			break
		}
	}
	return r
}

// remote is an error that came over gRPC.
type remote struct {
	s    *status.Status
	kind error
}

func (e *remote) Error() string {
	if m := e.s.Message(); m != "" {
		return m
	}
	return e.s.Code().String()
}

func (e *remote) Unwrap() error              { return e.kind }
func (e *remote) GRPCStatus() *status.Status { return e.s }
