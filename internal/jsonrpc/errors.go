package jsonrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"hearth.dev/internal/errkind"
)

// The codes of the JSON-RPC 2.0 specification.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// The server error codes (-32000 to -32099) of the error kinds; see the package doc.
const (
	CodeUnknown            = -32000
	CodeNotFound           = -32001
	CodeAlreadyExists      = -32002
	CodeFailedPrecondition = -32003
	CodePermissionDenied   = -32004
	CodeUnavailable        = -32005
	CodeResourceExhausted  = -32006
	CodeUnimplemented      = -32007
	CodeAborted            = -32008
	CodeCanceled           = -32009
	CodeDeadlineExceeded   = -32010
)

// kinds pairs each error kind with its code and its name in an error's data. The first
// kind of a code is the one Error.Unwrap returns.
type kind struct {
	err  error
	code int
	name string // "" for the protocol's codes, which no handler's error maps to
}

var kinds = []kind{
	{errkind.InvalidArgument, CodeInvalidParams, "invalid_argument"},
	{errkind.NotFound, CodeNotFound, "not_found"},
	{errkind.AlreadyExists, CodeAlreadyExists, "already_exists"},
	{errkind.FailedPrecondition, CodeFailedPrecondition, "failed_precondition"},
	{errkind.PermissionDenied, CodePermissionDenied, "permission_denied"},
	{errkind.Unavailable, CodeUnavailable, "unavailable"},
	{errkind.ResourceExhausted, CodeResourceExhausted, "resource_exhausted"},
	{errkind.Unimplemented, CodeUnimplemented, "unimplemented"},
	{errkind.Aborted, CodeAborted, "aborted"},
	{errkind.Internal, CodeInternalError, "internal"},
	{context.Canceled, CodeCanceled, "canceled"},
	{context.DeadlineExceeded, CodeDeadlineExceeded, "deadline_exceeded"},
	// The protocol's own codes, for Unwrap: a request the server could not read is the
	// client's mistake; a method it does not know is not implemented.
	{errkind.InvalidArgument, CodeParseError, ""},
	{errkind.InvalidArgument, CodeInvalidRequest, ""},
	{errkind.Unimplemented, CodeMethodNotFound, ""},
}

// Error is a JSON-RPC error object: what a failed call returns, on the server's side
// and on the client's. A handler may return one (or wrap one) to choose the code and
// the data itself.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error returns the message, or the code when there is none.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return "JSON-RPC error " + strconv.Itoa(e.Code)
}

// Unwrap returns the error kind (an errkind value, or context.Canceled or
// DeadlineExceeded) of the code, or nil for CodeUnknown and codes outside the table.
func (e *Error) Unwrap() error {
	for _, k := range kinds {
		if k.code == e.Code {
			return k.err
		}
	}
	return nil
}

// InvalidParams returns a CodeInvalidParams error naming the parameter and what is
// wrong with it, as Register reports a parameter it cannot decode. A handler returns
// one for a parameter that decoded but makes no sense ("port", "want 1 to 65535, got 0").
func InvalidParams(param, problem string) *Error {
	msg := "invalid params: " + problem
	if param != "" {
		msg = "invalid params: " + param + ": " + problem
	}
	return &Error{Code: CodeInvalidParams, Message: msg, Data: mustJSON(paramData{param, problem})}
}

type paramData struct {
	Param   string `json:"param,omitempty"`
	Problem string `json:"problem"`
}

type kindData struct {
	Kind string `json:"kind"`
}

// toError turns a handler's error into the error object sent: an *Error in the chain
// gives its code and data, otherwise the first error kind found, outermost first, gives
// the code and {"kind": name}; the message is err's text either way.
func toError(err error) *Error {
	code, data := CodeUnknown, mustJSON(kindData{"unknown"})
	if e, k := find(err); e != nil {
		code, data = e.Code, e.Data
	} else if k != nil {
		code, data = k.code, mustJSON(kindData{k.name})
	}
	return &Error{Code: code, Message: err.Error(), Data: data}
}

// find walks err's tree in the order errors.Is does and stops at the first *Error or
// error kind.
func find(err error) (*Error, *kind) {
	if e, ok := err.(*Error); ok {
		return e, nil
	}
	is, _ := err.(interface{ Is(error) bool })
	for i := range kinds {
		k := &kinds[i]
		if k.name != "" && (err == k.err || (is != nil && is.Is(k.err))) {
			return nil, k
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			return find(next)
		}
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			if next == nil {
				continue
			}
			if e, k := find(next); e != nil || k != nil {
				return e, k
			}
		}
	}
	return nil, nil
}

// mustJSON encodes values this package builds, which always encode.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("jsonrpc: encode %T: %v", v, err))
	}
	return b
}
