// Package jsonrpc is JSON-RPC 2.0 over a stream socket, one message per line: the
// protocol of guestd's effects socket, which package scripts call without a gRPC stack.
// It has a server (Server, with Mux and Register for typed methods) and a client (Dial,
// Client.Call), and links nothing but the standard library and internal/errkind, so a
// small static client can use it.
//
// # Framing
//
// Each line the client sends holds one request object or one batch (an array of 1 to
// MaxBatch request objects); each answered line gets one answer line, in the order the
// lines were sent: a response object, or an array of the batch's responses
// (notifications, requests without an id, get none; a line of notifications only gets no
// answer line). Lines are at most MaxLineBytes (1 MiB) long, newline excluded; a longer
// line is answered with CodeInvalidRequest (data {"problem":"line too long","limit":N})
// and the connection is closed, since the rest of that line cannot be told from the next
// request. A result that would not fit in a line is answered with CodeResourceExhausted.
//
// # Errors
//
// The protocol's own errors use the specification's codes, with data {"problem": ...}:
//
//	-32700 parse error       the line is not JSON
//	-32600 invalid request   JSON, but not a request (no "jsonrpc":"2.0", a method that
//	                         is not a string, an unknown member, an empty or too big batch)
//	-32601 method not found  data {"method": NAME}
//	-32602 invalid params    data {"param": NAME, "problem": WHAT}: the parameter and
//	                         what is wrong with it (an unknown field, a wrong type, a
//	                         value out of range)
//	-32603 internal error    a bug in the server (a panic, a result it cannot encode)
//
// A method's error is sent with the code of its error kind (internal/errkind; gRPC codes
// map to the same kinds through internal/errdefs) and data {"kind": NAME}, NAME being
// stable for scripts to test:
//
//	code    kind                 gRPC code
//	-32602  invalid_argument     InvalidArgument (with data {"param","problem"} when the
//	                             method names the parameter)
//	-32001  not_found            NotFound
//	-32002  already_exists       AlreadyExists
//	-32003  failed_precondition  FailedPrecondition
//	-32004  permission_denied    PermissionDenied
//	-32005  unavailable          Unavailable
//	-32006  resource_exhausted   ResourceExhausted
//	-32007  unimplemented        Unimplemented
//	-32008  aborted              Aborted
//	-32009  canceled             Canceled
//	-32010  deadline_exceeded    DeadlineExceeded
//	-32603  internal             Internal
//	-32000  unknown              Unknown, the gRPC codes not above, or an error of no kind
//
// A handler may also return an *Error (or wrap one) to choose the code and data itself.
//
// # Limits
//
// A Server bounds what its clients can make it hold: MaxConns connections (the next
// ones get one CodeResourceExhausted answer and are closed), MaxInFlight calls running
// per connection (it reads no more of a connection until one ends), MaxQueuedBytes of
// lines read and not yet answered across all connections, IdleTimeout for a connection
// with nothing in flight that sends nothing (or half a line), and WriteTimeout for a
// client that does not read its answers.
package jsonrpc
