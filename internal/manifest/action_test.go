package manifest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const withActions = `id: p
version: 1.0.0
images: {a: {ref: x}}
volumes: [data]
daemons: {d: {image: a}}
actions:
  reset:
    name: Reset the password
    description: Makes a new admin password.
    image: a
    command: [/reset]
    mounts: [{volume: data, path: /data}]
    input:
      len: {type: integer, min: 8, max: 64, default: 20}
      user: {type: string, required: true, min: 1, max: 16, pattern: "[a-z]+"}
      notify: {type: boolean, default: true}
      mode: {type: enum, values: [fast, safe], default: safe}
      token: {type: secret, min: 4}
  vacuum: {image: a, command: [/vacuum], when: stopped, timeout: 1m}
`

func reset(t *testing.T) *Action {
	t.Helper()
	m, err := Parse([]byte(withActions))
	if err != nil {
		t.Fatal(err)
	}
	a := m.Actions["reset"]
	return &a
}

func TestParseActions(t *testing.T) {
	m, err := Parse([]byte(withActions))
	if err != nil {
		t.Fatal(err)
	}
	r, v := m.Actions["reset"], m.Actions["vacuum"]
	if r.Title("reset") != "Reset the password" || r.Offered() != WhenAny || v.Offered() != WhenStopped || v.Title("vacuum") != "vacuum" {
		t.Errorf("reset %+v, vacuum %+v", r, v)
	}
	if f := r.Input["len"]; f.Type != TypeInteger || *f.Min != 8 || *f.Max != 64 || f.Default != 20 {
		t.Errorf("len: %+v", f)
	}
	if j := r.Job(); j.Image != "a" || len(j.Mounts) != 1 || j.Restart.Policy != "never" {
		t.Errorf("job %+v", j)
	}
	// The manifest goes to guestd as JSON: the actions come back the same.
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("after JSON: %v", err)
	}
	if in, err := (&Action{Input: back.Actions["reset"].Input}).CheckInput([]byte(`{"user": "bob"}`)); err != nil || in["len"] != int64(20) {
		t.Errorf("defaults after JSON: %v %v", in, err)
	}
}

func TestParseActionsRefuses(t *testing.T) {
	act := func(s string) string {
		return "id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\nvolumes: [v]\ndaemons: {d: {image: a}}\nactions:\n  x:\n" + s
	}
	in := func(fields string) string { return act("    image: a\n    command: [/x]\n    input:\n" + fields) }
	for _, tc := range []struct{ name, yaml, want string }{
		{"image", act("    image: b\n    command: [/x]\n"), `manifest.yaml:8:12: actions.x.image: unknown image "b"`},
		{"command", act("    image: a\n"), "actions.x.command: missing"},
		{"when", act("    image: a\n    command: [/x]\n    when: sometimes\n"), `manifest.yaml:10:11: actions.x.when: "sometimes": use running, stopped or any`},
		{"timeout", act("    image: a\n    command: [/x]\n    timeout: 2h\n"), "actions.x.timeout: 2h0m0s"},
		{"volume", act("    image: a\n    command: [/x]\n    mounts: [{volume: w, path: /w}]\n"), `actions.x.mounts[0].volume: unknown volume "w"`},
		{"unknown key", act("    image: a\n    command: [/x]\n    colour: red\n"), "field colour not found"},
		{"unknown field key", in("      n: {type: integer, maximum: 3}\n"), "field maximum not found"},
		{"type", in("      n: {type: float}\n"), `manifest.yaml:11:17: actions.x.input.n.type: "float": use string, integer, boolean, enum or secret`},
		{"no type", in("      n: {description: hi}\n"), "actions.x.input.n.type: missing"},
		{"field name", in("      Bad: {type: string}\n"), `actions.x.input.Bad: name "Bad"`},
		{"max below min", in("      len: {type: integer, min: 8, max: 4}\n"), "manifest.yaml:11:41: actions.x.input.len.max: 4 is below min 8"},
		{"negative length", in("      s: {type: string, min: -1}\n"), "actions.x.input.s.min: -1: a length is at least 0"},
		{"bounds on bool", in("      b: {type: boolean, max: 1}\n"), "actions.x.input.b.min: a boolean has no bounds"},
		{"pattern", in("      s: {type: string, pattern: \"[a-\"}\n"), "actions.x.input.s.pattern"},
		{"pattern on integer", in("      n: {type: integer, pattern: \"1+\"}\n"), "a integer has no pattern"},
		{"enum values", in("      e: {type: enum}\n"), "actions.x.input.e.values: missing"},
		{"enum twice", in("      e: {type: enum, values: [a, a]}\n"), "actions.x.input.e.values[1]"},
		{"values on string", in("      s: {type: string, values: [a]}\n"), "only an enum lists values"},
		{"default type", in("      n: {type: integer, default: many}\n"), `actions.x.input.n.default: "many": give an integer`},
		{"default bounds", in("      n: {type: integer, max: 3, default: 4}\n"), "actions.x.input.n.default: 4 is out of bounds: give an integer of at most 3"},
		{"default enum", in("      e: {type: enum, values: [a], default: b}\n"), `actions.x.input.e.default: "b": give one of a`},
		{"default pattern", in("      s: {type: string, pattern: \"[0-9]+\", default: x1}\n"), "does not match"},
		{"secret default", in("      s: {type: secret, default: hunter2}\n"), "a secret has no default"},
		{"required default", in("      s: {type: string, required: true, default: a}\n"), "drop one of them"},
		{"file mount", "id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\nvolumes: [v]\ndaemons: {d: {image: a}}\nactions:\n  x: {image: a, command: [/x], mounts: [{volume: v, file: f, path: /f}]}\n", "actions.x.mounts[0].file: an action binds whole volumes"},
		{"id", "id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\ndaemons: {d: {image: a}}\nactions:\n  Big: {image: a, command: [/x]}\n", `actions.Big: id "Big"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckInput(t *testing.T) {
	a := reset(t)
	for _, tc := range []struct {
		name, input string
		want        map[string]any // nil: refused
		problems    []string       // each in the error
	}{
		{"defaults", `{"user": "bob"}`, map[string]any{"user": "bob", "len": int64(20), "notify": true, "mode": "safe"}, nil},
		{"all given", `{"user":"al","len":8,"notify":false,"mode":"fast","token":"abcd"}`,
			map[string]any{"user": "al", "len": int64(8), "notify": false, "mode": "fast", "token": "abcd"}, nil},
		{"null is not given", `{"user": "bob", "len": null}`, map[string]any{"user": "bob", "len": int64(20), "notify": true, "mode": "safe"}, nil},
		{"whitespace around", " \n{\"user\": \"bob\"}\n ", map[string]any{"user": "bob", "len": int64(20), "notify": true, "mode": "safe"}, nil},
		{"empty", ``, nil, []string{"user: missing: give a string of 1 to 16 characters matching [a-z]+"}},
		{"unknown", `{"user": "bob", "colour": "red"}`, nil, []string{"colour: unknown field: this action takes len, mode, notify, token, user"}},
		{"too short", `{"user": "bob", "len": 4}`, nil, []string{"len: 4 is out of bounds: give an integer from 8 to 64"}},
		{"too long", `{"user": "bob", "len": 65}`, nil, []string{"len: 65 is out of bounds"}},
		{"fraction", `{"user": "bob", "len": 8.5}`, nil, []string{"len: 8.5: give an integer from 8 to 64"}},
		{"integer as text", `{"user": "bob", "len": "12"}`, nil, []string{`len: "12": give an integer`}},
		{"huge", `{"user": "bob", "len": 99999999999999999999}`, nil, []string{"len: 99999999999999999999: give an integer"}},
		{"bool", `{"user": "bob", "notify": "yes"}`, nil, []string{`notify: "yes": give true or false`}},
		{"enum", `{"user": "bob", "mode": "slow"}`, nil, []string{`mode: "slow": give one of fast, safe`}},
		{"pattern whole", `{"user": "bob1"}`, nil, []string{`user: "bob1" does not match [a-z]+`}},
		{"length in characters", `{"user": "ééééééééééééééééé"}`, nil, []string{"has 17 characters: give a string of 1 to 16 characters"}},
		{"secret not echoed", `{"user": "bob", "token": "abc"}`, nil, []string{"token: the secret has 3 characters: give a secret of at least 4 characters"}},
		{"several", `{"len": 1, "mode": 3}`, nil, []string{"len: 1 is out of bounds", "mode: 3: give one of", "user: missing"}},
		{"array", `[1, 2]`, nil, []string{"(input): a JSON array: give an object"}},
		{"two objects", `{"user": "bob"} {}`, nil, []string{"text after the JSON value"}},
		{"trailing junk", `{"user": "bob"}}`, nil, []string{"text after the JSON value"}},
		{"not json", `user=bob`, nil, []string{"(input): not JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.CheckInput([]byte(tc.input))
			if tc.want != nil {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("CheckInput = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			var ps InputProblems
			if !errors.As(err, &ps) {
				t.Fatalf("CheckInput = %v, %v; want InputProblems", got, err)
			}
			for _, p := range tc.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q\nwant it to contain %q", err, p)
				}
			}
			if strings.Contains(err.Error(), `"abc"`) {
				t.Errorf("a secret was echoed: %v", err)
			}
		})
	}
	if _, err := (&Action{}).CheckInput([]byte(`{"x": 1}`)); err == nil || !strings.Contains(err.Error(), "this action takes no input") {
		t.Errorf("no fields: %v", err)
	}
	if _, err := a.CheckInput([]byte(`{"user": "` + strings.Repeat("a", MaxInputBytes) + `"}`)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too big: %v", err)
	}
}

func TestParseInputPairs(t *testing.T) {
	a := reset(t)
	for _, tc := range []struct {
		name  string
		pairs []string
		want  map[string]any
		fail  string
	}{
		{"typed", []string{"len=24", "notify=no", "user=bob", "mode=fast"}, map[string]any{"len": int64(24), "notify": false, "user": "bob", "mode": "fast"}, ""},
		{"value with =", []string{"token=a=b=c"}, map[string]any{"token": "a=b=c"}, ""},
		{"empty value", []string{"user="}, map[string]any{"user": ""}, ""},
		{"bool forms", []string{"notify=TRUE"}, map[string]any{"notify": true}, ""},
		{"no =", []string{"len"}, nil, `"len": write key=value, such as length=24`},
		{"no key", []string{"=3"}, nil, "write key=value"},
		{"unknown", []string{"size=3"}, nil, "size: unknown field: this action takes len, mode, notify, token, user"},
		{"twice", []string{"len=8", "len=9"}, nil, "len: given twice"},
		{"not an integer", []string{"len=long"}, nil, `len: "long" is not an integer: give an integer from 8 to 64, such as len=8`},
		{"not a bool", []string{"notify=maybe"}, nil, `notify: "maybe": give true or false, such as notify=true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInputPairs(a.Input, tc.pairs)
			if tc.fail == "" {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("ParseInputPairs = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.fail) {
				t.Fatalf("ParseInputPairs = %v, %v; want an error containing %q", got, err, tc.fail)
			}
		})
	}
}

func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      *ActionResult
		fail      string
	}{
		{"message", `{"message": "done"}`, &ActionResult{Message: "done"}, ""},
		{"values", "{\"message\": \"new password\", \"values\": [{\"name\": \"password\", \"value\": \"x\", \"secret\": true, \"copyable\": true}]}\n",
			&ActionResult{Message: "new password", Values: []ActionValue{{Name: "password", Value: "x", Secret: true, Copyable: true}}}, ""},
		{"nothing", "", nil, "it printed nothing"},
		{"text", "all good\n", nil, "print one JSON object"},
		{"two", `{"message": "a"}{"message": "b"}`, nil, "text after the JSON object"},
		{"logs after", "{\"message\": \"a\"}\nstarting...\n", nil, "text after the JSON object"},
		{"unknown key", `{"message": "a", "value": "b"}`, nil, `unknown field "value"`},
		{"number value", `{"message": "a", "values": [{"name": "n", "value": 3}]}`, nil, "print one JSON object"},
		{"no name", `{"message": "a", "values": [{"value": "3"}]}`, nil, "values[0] has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResult([]byte(tc.out))
			if tc.want != nil {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("ParseResult = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrResult) || !strings.Contains(err.Error(), tc.fail) {
				t.Fatalf("ParseResult = %+v, %v; want an error containing %q", got, err, tc.fail)
			}
		})
	}
}

// FuzzCheckInput: whatever the input, CheckInput either refuses it with problems that
// each name a field, or returns an input that holds every required field, only known
// fields, each of its type, and that passes CheckInput again unchanged.
func FuzzCheckInput(f *testing.F) {
	for _, s := range []string{`{"user": "bob"}`, `{"user":"al","len":8,"notify":false,"mode":"fast","token":"abcd"}`, `[]`, `{"len": 1e3}`, `null`, `{"user": "\u00e9"}`} {
		f.Add([]byte(s))
	}
	m, err := Parse([]byte(withActions))
	if err != nil {
		f.Fatal(err)
	}
	a := m.Actions["reset"]
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := a.CheckInput(data)
		if err != nil {
			var ps InputProblems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v is not InputProblems", err)
			}
			for _, p := range ps {
				if p.Field == "" || p.Problem == "" {
					t.Fatalf("problem without a field or text: %+v", p)
				}
			}
			return
		}
		for n, fd := range a.Input {
			v, ok := got[n]
			if fd.Required && !ok {
				t.Fatalf("required %s missing from %v", n, got)
			}
			if !ok {
				continue
			}
			var typeOK bool
			switch fd.Type {
			case TypeInteger:
				_, typeOK = v.(int64)
			case TypeBoolean:
				_, typeOK = v.(bool)
			default:
				_, typeOK = v.(string)
			}
			if !typeOK {
				t.Fatalf("%s = %#v, not a %s", n, v, fd.Type)
			}
		}
		for k := range got {
			if _, ok := a.Input[k]; !ok {
				t.Fatalf("unknown %s passed", k)
			}
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		got2, err := a.CheckInput(again)
		if err != nil || !reflect.DeepEqual(got, got2) {
			t.Fatalf("checked input %s checks again as %v, %v", again, got2, err)
		}
	})
}

// FuzzParseInputPairs: pairs either parse, each value of its field's type, or fail with
// problems; a parsed input never fails CheckInput for a type or an unknown field.
func FuzzParseInputPairs(f *testing.F) {
	f.Add("len=24", "user=bob")
	f.Add("notify=yes", "mode=fast")
	f.Add("len", "=")
	f.Add("token=a=b", "len=-1")
	m, err := Parse([]byte(withActions))
	if err != nil {
		f.Fatal(err)
	}
	a := m.Actions["reset"]
	f.Fuzz(func(t *testing.T, p1, p2 string) {
		got, err := ParseInputPairs(a.Input, []string{p1, p2})
		if err != nil {
			var ps InputProblems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v is not InputProblems", err)
			}
			return
		}
		data, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.CheckInput(data)
		var ps InputProblems
		if err != nil && !errors.As(err, &ps) {
			t.Fatalf("CheckInput: %v", err)
		}
		for _, p := range ps {
			if strings.Contains(p.Problem, "unknown field") || strings.Contains(p.Problem, "give true or false") ||
				(strings.Contains(p.Problem, "give an integer") && !strings.Contains(p.Problem, "out of bounds")) {
				// A string that is not valid UTF-8 becomes U+FFFD in JSON, so only the
				// kind of problem is checked, not the text.
				t.Fatalf("parsed pairs %q %q give %s: %s", p1, p2, p.Field, p.Problem)
			}
		}
	})
}
