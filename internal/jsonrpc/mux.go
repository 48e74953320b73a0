package jsonrpc

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Handler runs calls. params is the request's params as sent (an object or an array),
// or nil when absent or null. The result is encoded with encoding/json; an error is
// sent as described in the package doc.
type Handler interface {
	Call(ctx context.Context, method string, params json.RawMessage) (any, error)
}

// HandlerFunc is a function that is a Handler.
type HandlerFunc func(ctx context.Context, method string, params json.RawMessage) (any, error)

// Call calls f.
func (f HandlerFunc) Call(ctx context.Context, method string, params json.RawMessage) (any, error) {
	return f(ctx, method, params)
}

// Mux is a Handler that dispatches by method name to functions added with Register.
// Register every method before serving; the zero Mux is ready to use.
type Mux struct {
	methods map[string]*Method
	order   []*Method
}

// Method describes a registered method, for documentation.
type Method struct {
	Name   string
	Params reflect.Type // the P of Register
	Result reflect.Type // the R of Register
	call   func(ctx context.Context, params json.RawMessage) (any, error)
}

// Register adds the method name to m. Its params are decoded into a P strictly: a field
// P does not have is refused, absent or null params give the zero P. A params problem is
// answered with CodeInvalidParams, its data naming the parameter and the problem
// ({"param":"port","problem":"want an integer from 0 to 65535, got a string"}). Register
// panics on an empty name, a name starting with "rpc." (reserved by JSON-RPC) or a name
// already registered.
func Register[P, R any](m *Mux, name string, f func(ctx context.Context, p P) (R, error)) {
	if name == "" || strings.HasPrefix(name, "rpc.") {
		panic(fmt.Sprintf("jsonrpc: method name %q: empty or reserved", name))
	}
	if _, dup := m.methods[name]; dup {
		panic(fmt.Sprintf("jsonrpc: method %q registered twice", name))
	}
	if m.methods == nil {
		m.methods = map[string]*Method{}
	}
	pt := reflect.TypeFor[P]()
	known := fieldNames(pt)
	meth := &Method{
		Name:   name,
		Params: pt,
		Result: reflect.TypeFor[R](),
		call: func(ctx context.Context, params json.RawMessage) (any, error) {
			var p P
			if len(params) > 0 {
				dec := json.NewDecoder(bytes.NewReader(params))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&p); err != nil {
					return nil, paramsError(err, params, known)
				}
			}
			return f(ctx, p)
		},
	}
	m.methods[name] = meth
	m.order = append(m.order, meth)
}

// Methods returns the registered methods in the order they were registered.
func (m *Mux) Methods() []Method {
	out := make([]Method, len(m.order))
	for i, meth := range m.order {
		out[i] = *meth
	}
	return out
}

// Call runs the method registered as method, or returns a CodeMethodNotFound error whose
// data names it.
func (m *Mux) Call(ctx context.Context, method string, params json.RawMessage) (any, error) {
	meth, ok := m.methods[method]
	if !ok {
		return nil, &Error{
			Code:    CodeMethodNotFound,
			Message: "method not found: " + strconv.Quote(method),
			Data: mustJSON(struct {
				Method string `json:"method"`
			}{method}),
		}
	}
	return meth.call(ctx, params)
}

// paramsError turns a decoding error into a CodeInvalidParams error naming the parameter.
func paramsError(err error, params json.RawMessage, known []string) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return InvalidParams(te.Field, "want "+describe(te.Type)+", got "+got(te.Value))
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		if n, err := strconv.Unquote(name); err == nil {
			name = n
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(params, &top) == nil && known != nil {
			if _, ok := top[name]; ok && len(known) == 0 {
				return InvalidParams(name, "unknown parameter: this method takes none")
			} else if ok {
				return InvalidParams(name, "unknown parameter: this method takes "+strings.Join(known, ", "))
			}
		}
		return InvalidParams(name, "unknown field")
	}
	return InvalidParams("", strings.TrimPrefix(msg, "json: "))
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// describe says in JSON's words what a value of t must be.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return fmt.Sprintf("an integer from %d to %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return "an integer from 0"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return fmt.Sprintf("an integer from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Array:
		return fmt.Sprintf("an array of %d", t.Len())
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "a value of Go type " + t.String()
	}
}

// got words the Value of a json.UnmarshalTypeError.
func got(v string) string {
	if n, ok := strings.CutPrefix(v, "number "); ok {
		return n
	}
	switch v {
	case "string":
		return "a string"
	case "number":
		return "a number"
	case "object":
		return "an object"
	case "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return v
}

// fieldNames lists the JSON names of a struct type's fields (P or *P), in order (empty,
// not nil, for a struct without any), or nil for other types.
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	names := []string{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || len(f.Index) > 1 && !isPromoted(t, f) {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			continue // its fields are listed, promoted
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// isPromoted reports whether f, a field of an embedded struct, reaches t's JSON object:
// every struct it is embedded through is anonymous and untagged.
func isPromoted(t reflect.Type, f reflect.StructField) bool {
	for _, i := range f.Index[:len(f.Index)-1] {
		sf := t.Field(i)
		if !sf.Anonymous || sf.Tag.Get("json") != "" {
			return false
		}
		t = sf.Type
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return true
}
