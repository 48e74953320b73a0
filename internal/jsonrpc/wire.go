package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// MaxLineBytes is the longest line the server reads, newline excluded. A longer line is
// answered with one CodeInvalidRequest error and the connection is closed.
const MaxLineBytes = 1 << 20

// MaxBatch is the most requests one batch may hold.
const MaxBatch = 1000

// A request is one parsed request object. A request the server cannot run has err set
// and is answered with it, under its id when the id could be read and null otherwise.
type request struct {
	id     json.RawMessage // nil: a notification (or an id that could not be read)
	method string
	params json.RawMessage // nil when absent or null
	err    *Error
}

// parse reads one line: a request object or a batch array of them. A line that is not
// JSON, or is JSON but neither an object nor a non-empty array of at most MaxBatch
// elements, gives fail, to be answered alone with id null.
func parse(line []byte) (reqs []request, batch bool, fail *Error) {
	line = bytes.TrimSpace(line)
	if !json.Valid(line) {
		var v json.RawMessage
		err := json.Unmarshal(line, &v) // for the words: Valid does not say what is wrong
		problem := "not JSON"
		if err != nil {
			problem = err.Error()
		}
		return nil, false, protocolError(CodeParseError, "parse error: "+problem, problem)
	}
	switch line[0] {
	case '{':
		return []request{parseRequest(line)}, false, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(line, &elems); err != nil {
			return nil, false, protocolError(CodeParseError, "parse error: "+err.Error(), err.Error())
		}
		if len(elems) == 0 {
			return nil, false, invalidRequest("empty batch: a batch holds 1 to " + strconv.Itoa(MaxBatch) + " requests")
		}
		if len(elems) > MaxBatch {
			return nil, false, invalidRequest("batch of " + strconv.Itoa(len(elems)) + " requests: the most is " + strconv.Itoa(MaxBatch) + "; send several")
		}
		reqs = make([]request, len(elems))
		for i, e := range elems {
			reqs[i] = parseRequest(e)
		}
		return reqs, true, nil
	default:
		return nil, false, invalidRequest("a line holds a request object or a batch array, not " + JSONType(line))
	}
}

// parseRequest reads one request object; raw is valid JSON.
func parseRequest(raw []byte) request {
	if raw[0] != '{' {
		return request{err: invalidRequest("a request is an object, not " + JSONType(raw))}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return request{err: invalidRequest(err.Error())}
	}
	var r request
	if id, ok := m["id"]; ok {
		switch id[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			r.id = id
		case 'n':
			r.id = id // null: a request (not a notification) whose answer carries id null
		default:
			r.err = invalidRequest("id must be a string, a number or null, not " + JSONType(id))
			return r
		}
	}
	var version string
	if v, ok := m["jsonrpc"]; !ok || json.Unmarshal(v, &version) != nil || version != "2.0" {
		r.err = invalidRequest(`"jsonrpc" must be "2.0"`)
		return r
	}
	if v, ok := m["method"]; !ok || v[0] != '"' || json.Unmarshal(v, &r.method) != nil {
		r.err = invalidRequest(`"method" must be a string`)
		return r
	}
	if p, ok := m["params"]; ok {
		switch p[0] {
		case '{', '[':
			r.params = p
		case 'n':
		default:
			r.err = invalidRequest(`"params" must be an object or an array, not ` + JSONType(p))
			return r
		}
	}
	if len(m) > 2 { // jsonrpc, method and at most id and params
		for k := range m {
			switch k {
			case "jsonrpc", "method", "id", "params":
			default:
				r.err = invalidRequest("unknown member " + strconv.Quote(k) + ": a request has jsonrpc, method, params and id")
				return r
			}
		}
	}
	return r
}

func protocolError(code int, msg, problem string) *Error {
	return &Error{Code: code, Message: msg, Data: mustJSON(paramData{Problem: problem})}
}

func invalidRequest(problem string) *Error {
	return protocolError(CodeInvalidRequest, "invalid request: "+problem, problem)
}

// JSONType names the type of a valid JSON value in words ("an object", "a string").
func JSONType(v []byte) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

var nullID = json.RawMessage("null")

// appendResult appends a success response line.
func appendResult(b []byte, id, result json.RawMessage) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// appendError appends an error response line; a nil id is written as null.
func appendError(b []byte, id json.RawMessage, e *Error) []byte {
	if id == nil {
		id = nullID
	}
	enc, err := json.Marshal(e)
	if err != nil { // a handler's *Error with Data that is not JSON: send it without
		enc = mustJSON(&Error{Code: e.Code, Message: e.Message})
	}
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"error":`...)
	b = append(b, enc...)
	return append(b, '}')
}
