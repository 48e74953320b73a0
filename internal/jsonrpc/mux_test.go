package jsonrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"hearth.dev/internal/errkind"
)

type bindParams struct {
	Interface string   `json:"interface"`
	Port      uint16   `json:"port"`
	Tags      []string `json:"tags"`
	Inner     struct {
		On bool `json:"on"`
	} `json:"inner"`
}

func testMux() *Mux {
	var m Mux
	Register(&m, "bind", func(ctx context.Context, p bindParams) (map[string]any, error) {
		if p.Interface == "missing" {
			return nil, fmt.Errorf("interface %q: %w", p.Interface, errkind.NotFound)
		}
		if p.Port == 0 && p.Interface == "zero" {
			return nil, InvalidParams("port", "want 1 to 65535, got 0")
		}
		return map[string]any{"interface": p.Interface, "port": p.Port}, nil
	})
	Register(&m, "panic", func(ctx context.Context, p struct{}) (int, error) { panic("boom") })
	return &m
}

func TestMuxParams(t *testing.T) {
	m := testMux()
	tests := []struct {
		name, method, params string
		code                 int    // 0: success
		param, problem       string // the data of an invalid params error
		result               string
	}{
		{"ok", "bind", `{"interface":"web","port":80}`, 0, "", "", `{"interface":"web","port":80}`},
		{"no params", "bind", ``, 0, "", "", `{"interface":"","port":0}`},
		{"null params", "bind", `null`, 0, "", "", `{"interface":"","port":0}`},
		{"wrong type", "bind", `{"interface":5}`, CodeInvalidParams, "interface", "want a string, got a number", ""},
		{"out of range", "bind", `{"port":70000}`, CodeInvalidParams, "port", "want an integer from 0 to 65535, got 70000", ""},
		{"negative", "bind", `{"port":-1}`, CodeInvalidParams, "port", "want an integer from 0 to 65535, got -1", ""},
		{"array elem", "bind", `{"tags":[1]}`, CodeInvalidParams, "tags", "want a string, got a number", ""},
		{"nested", "bind", `{"inner":{"on":"yes"}}`, CodeInvalidParams, "inner.on", "want true or false, got a string", ""},
		{"unknown", "bind", `{"interfaces":"web"}`, CodeInvalidParams, "interfaces", "unknown parameter: this method takes interface, port, tags, inner", ""},
		{"unknown nested", "bind", `{"inner":{"off":1}}`, CodeInvalidParams, "off", "unknown field", ""},
		{"array params", "bind", `[1]`, CodeInvalidParams, "", "want an object, got an array", ""},
		{"handler's own", "bind", `{"interface":"zero"}`, CodeInvalidParams, "port", "want 1 to 65535, got 0", ""},
		{"kind", "bind", `{"interface":"missing"}`, CodeNotFound, "", "", ""},
		{"no method", "nope", `{}`, CodeMethodNotFound, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var params json.RawMessage
			if tt.params != "" && tt.params != "null" {
				params = json.RawMessage(tt.params)
			}
			res, err := m.Call(context.Background(), tt.method, params)
			if tt.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(res)
				if string(b) != tt.result {
					t.Fatalf("result %s, want %s", b, tt.result)
				}
				return
			}
			e := toError(err)
			if e.Code != tt.code {
				t.Fatalf("code %d (%v), want %d", e.Code, err, tt.code)
			}
			if tt.code == CodeInvalidParams {
				var d paramData
				if err := json.Unmarshal(e.Data, &d); err != nil {
					t.Fatal(err)
				}
				if d.Param != tt.param || d.Problem != tt.problem {
					t.Fatalf("data %s, want param %q problem %q", e.Data, tt.param, tt.problem)
				}
			}
		})
	}
}

func TestRegisterPanics(t *testing.T) {
	for _, name := range []string{"", "rpc.x", "bind"} {
		t.Run(name, func(t *testing.T) {
			m := testMux()
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%q) did not panic", name)
				}
			}()
			Register(m, name, func(context.Context, struct{}) (int, error) { return 0, nil })
		})
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		kind string
	}{
		{"not found", fmt.Errorf("x: %w", errkind.NotFound), CodeNotFound, "not_found"},
		{"already", errkind.AlreadyExists, CodeAlreadyExists, "already_exists"},
		{"precondition", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errkind.FailedPrecondition)), CodeFailedPrecondition, "failed_precondition"},
		{"denied", errkind.PermissionDenied, CodePermissionDenied, "permission_denied"},
		{"unavailable", errkind.Unavailable, CodeUnavailable, "unavailable"},
		{"exhausted", errkind.ResourceExhausted, CodeResourceExhausted, "resource_exhausted"},
		{"unimplemented", errkind.Unimplemented, CodeUnimplemented, "unimplemented"},
		{"aborted", errkind.Aborted, CodeAborted, "aborted"},
		{"internal", errkind.Internal, CodeInternalError, "internal"},
		{"canceled", context.Canceled, CodeCanceled, "canceled"},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), CodeDeadlineExceeded, "deadline_exceeded"},
		{"invalid", errkind.InvalidArgument, CodeInvalidParams, "invalid_argument"},
		{"join", errors.Join(errors.New("plain"), errkind.NotFound), CodeNotFound, "not_found"},
		{"outermost first", fmt.Errorf("%w: %w", errkind.PermissionDenied, errkind.NotFound), CodePermissionDenied, "permission_denied"},
		{"plain", errors.New("plain"), CodeUnknown, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := toError(tt.err)
			var d kindData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if e.Code != tt.code || d.Kind != tt.kind || e.Message != tt.err.Error() {
				t.Fatalf("%d %s %q, want %d %s %q", e.Code, d.Kind, e.Message, tt.code, tt.kind, tt.err.Error())
			}
			// The client's side: the code gives back the kind.
			if want := errors.Unwrap(tt.err); tt.kind != "unknown" {
				got := (&Error{Code: e.Code}).Unwrap()
				if !errors.Is(tt.err, got) {
					t.Fatalf("Unwrap of %d = %v, not in %v (%v)", e.Code, got, tt.err, want)
				}
			}
		})
	}
}
