package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	type want struct {
		fail    int      // the line's error code, 0 for none
		batch   bool     //
		methods []string // per request: the method, or "!CODE" for a request error
		ids     []string // per request: the id as sent, "" for none
	}
	big := "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"m"},`, MaxBatch) + `{"jsonrpc":"2.0","method":"m"}]`
	full := "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"m"},`, MaxBatch-1) + `{"jsonrpc":"2.0","method":"m"}]`
	tests := []struct {
		name, line string
		want       want
	}{
		{"call", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":{"x":1}}`, want{methods: []string{"a.b"}, ids: []string{"1"}}},
		{"string id", `{"jsonrpc":"2.0","id":"x","method":"a"}`, want{methods: []string{"a"}, ids: []string{`"x"`}}},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"a"}`, want{methods: []string{"a"}, ids: []string{"null"}}},
		{"notification", `{"jsonrpc":"2.0","method":"a"}`, want{methods: []string{"a"}, ids: []string{""}}},
		{"spaces around", "  {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"a\"}\r", want{methods: []string{"a"}, ids: []string{"2"}}},
		{"params array", `{"jsonrpc":"2.0","id":1,"method":"a","params":[1,2]}`, want{methods: []string{"a"}, ids: []string{"1"}}},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"a","params":null}`, want{methods: []string{"a"}, ids: []string{"1"}}},
		{"not json", `{"jsonrpc":`, want{fail: CodeParseError}},
		{"garbage", `hello`, want{fail: CodeParseError}},
		{"empty batch", `[]`, want{fail: CodeInvalidRequest}},
		{"a number", `42`, want{fail: CodeInvalidRequest}},
		{"a string", `"x"`, want{fail: CodeInvalidRequest}},
		{"batch too big", big, want{fail: CodeInvalidRequest}},
		{"batch full", full, want{batch: true, methods: repeat("m", MaxBatch), ids: repeat("", MaxBatch)}},
		{"no version", `{"id":1,"method":"a"}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"version 1", `{"jsonrpc":"1.0","id":1,"method":"a"}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"method number", `{"jsonrpc":"2.0","id":1,"method":7}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"no method", `{"jsonrpc":"2.0","id":1}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"params string", `{"jsonrpc":"2.0","id":1,"method":"a","params":"x"}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"id object", `{"jsonrpc":"2.0","id":{},"method":"a"}`, want{methods: []string{"!-32600"}, ids: []string{""}}},
		{"unknown member", `{"jsonrpc":"2.0","id":1,"method":"a","extra":1}`, want{methods: []string{"!-32600"}, ids: []string{"1"}}},
		{"batch mixed", `[{"jsonrpc":"2.0","id":1,"method":"a"},1,{"jsonrpc":"2.0","method":"b"}]`,
			want{batch: true, methods: []string{"a", "!-32600", "b"}, ids: []string{"1", "", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, batch, fail := parse([]byte(tt.line))
			if tt.want.fail != 0 {
				if fail == nil || fail.Code != tt.want.fail {
					t.Fatalf("fail = %v, want code %d", fail, tt.want.fail)
				}
				checkProblem(t, fail)
				return
			}
			if fail != nil {
				t.Fatalf("fail = %v (%s)", fail, fail.Data)
			}
			if batch != tt.want.batch || len(reqs) != len(tt.want.methods) {
				t.Fatalf("batch %v with %d requests, want %v with %d", batch, len(reqs), tt.want.batch, len(tt.want.methods))
			}
			for i, r := range reqs {
				got := r.method
				if r.err != nil {
					got = "!" + itoa(r.err.Code)
					checkProblem(t, r.err)
				}
				if got != tt.want.methods[i] || string(r.id) != tt.want.ids[i] {
					t.Errorf("request %d: %s id %q, want %s id %q", i, got, r.id, tt.want.methods[i], tt.want.ids[i])
				}
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// checkProblem checks that a protocol error says what is wrong in its data.
func checkProblem(t *testing.T, e *Error) {
	t.Helper()
	var d struct{ Problem string }
	if err := json.Unmarshal(e.Data, &d); err != nil || d.Problem == "" {
		t.Errorf("error %q has data %s: want a problem", e.Message, e.Data)
	}
}

// FuzzParse checks that any line parses without panicking into requests or one error,
// and that every answer built from them is one valid JSON line.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"identity.get"}`,
		`{"jsonrpc":"2.0","id":"a","method":"x","params":{"n":1}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b","params":[]}]`,
		`{"jsonrpc":"2.0","id":null,"method":"a","params":null}`,
		`{"jsonrpc":"2.0","id":1e400,"method":"a"}`,
		`{"jsonrpc":"2.0","id":-0.5,"method":"\u0000"}`,
		`[1,"x",null,[]]`, `[]`, `{}`, `{"jsonrpc":`, "\xff\xfe", `  `, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		reqs, batch, fail := parse(line)
		check := func(b []byte) {
			if !json.Valid(b) {
				t.Fatalf("answer %q is not JSON (line %q)", b, line)
			}
			if strings.ContainsRune(string(b), '\n') {
				t.Fatalf("answer %q holds a newline", b)
			}
		}
		if fail != nil {
			if reqs != nil {
				t.Fatalf("both requests and an error for %q", line)
			}
			check(appendError(nil, nil, fail))
			return
		}
		if len(reqs) == 0 || len(reqs) > MaxBatch || (!batch && len(reqs) != 1) {
			t.Fatalf("%d requests (batch %v) for %q", len(reqs), batch, line)
		}
		for _, r := range reqs {
			if r.err != nil {
				check(appendError(nil, r.id, r.err))
				continue
			}
			if r.id != nil {
				check(appendResult(nil, r.id, json.RawMessage(`{}`)))
			}
			if r.params != nil && r.params[0] != '{' && r.params[0] != '[' {
				t.Fatalf("params %q passed through", r.params)
			}
		}
	})
}
