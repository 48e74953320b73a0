package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Action is a command a user runs on demand (hearthctl action run), as a job in a fresh
// subcontainer of one of the package's images: the input, checked against the action's
// fields and completed with their defaults, comes as one JSON object on its standard
// input; it answers with one JSON object on its standard output (ActionResult).
type Action struct {
	// Name is what a user reads (the action's id when empty); Description says what it does.
	Name        string `yaml:"name,omitempty" json:"name,omitempty"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Image       string `yaml:"image" json:"image"`
	// Command is what runs, followed by Args.
	Command []string          `yaml:"command" json:"command"`
	Args    []string          `yaml:"args,omitempty" json:"args,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Workdir string            `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	User    string            `yaml:"user,omitempty" json:"user,omitempty"`
	// Mounts bind the package's volumes into the action's subcontainer, as a daemon's do.
	Mounts []Mount `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	// When the action is offered: running (only while the package runs), stopped (only
	// while it is stopped: the host starts the container without its daemons for the
	// job, and stops it again), or any (the default).
	When string `yaml:"when,omitempty" json:"when,omitempty"`
	// Timeout bounds one run (DefaultActionTimeout when zero).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Input are the fields the action takes, by name.
	Input map[string]Field `yaml:"input,omitempty" json:"input,omitempty"`
}

// Field is one input field of an action.
type Field struct {
	// Type is string, integer, boolean, enum or secret (a string shown masked and never logged).
	Type        string `yaml:"type" json:"type"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Required fields must be given; a field that is not required and not given takes
	// its default, or is left out of the input when it has none.
	Required bool `yaml:"required,omitempty" json:"required,omitempty"`
	Default  any  `yaml:"default,omitempty" json:"default,omitempty"`
	// Min and Max bound an integer's value, and a string's or secret's length in characters.
	Min *int64 `yaml:"min,omitempty" json:"min,omitempty"`
	Max *int64 `yaml:"max,omitempty" json:"max,omitempty"`
	// Pattern is a regular expression (RE2) a string or secret must match whole.
	Pattern string `yaml:"pattern,omitempty" json:"pattern,omitempty"`
	// Values are an enum's allowed values.
	Values []string `yaml:"values,omitempty" json:"values,omitempty"`
}

// Field types.
const (
	TypeString  = "string"
	TypeInteger = "integer"
	TypeBoolean = "boolean"
	TypeEnum    = "enum"
	TypeSecret  = "secret"
)

// When an action is offered.
const (
	WhenAny     = "any"
	WhenRunning = "running"
	WhenStopped = "stopped"
)

// Limits of actions.
const (
	DefaultActionTimeout = 10 * time.Minute
	MaxActionTimeout     = time.Hour
	// MaxInputBytes bounds an action's input (the JSON object).
	MaxInputBytes = 64 << 10
	// MaxResultBytes bounds what an action may print as its result.
	MaxResultBytes = 1 << 20
	maxFields      = 64
	maxValues      = 64
)

var fieldRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,63}$`)

// Offered returns when the action is offered: running, stopped or any.
func (a *Action) Offered() string {
	if a.When == "" {
		return WhenAny
	}
	return a.When
}

// Title is the action's name, or id when it has none.
func (a *Action) Title(id string) string {
	if a.Name != "" {
		return a.Name
	}
	return id
}

// Argv is the action's command line: Command, then Args.
func (a *Action) Argv() []string { return append(slices.Clone(a.Command), a.Args...) }

// Job is the action as a job: its image, command and the volumes it mounts.
func (a *Action) Job() *Daemon {
	return &Daemon{Image: a.Image, Command: a.Command, Args: a.Args, Env: a.Env, Workdir: a.Workdir, User: a.User, Mounts: a.Mounts,
		Restart: Restart{Policy: "never"}}
}

// FieldNames are the action's input fields, sorted.
func (a *Action) FieldNames() []string { return slices.Sorted(maps.Keys(a.Input)) }

func (c *checker) actions(m *Manifest) {
	for _, id := range slices.Sorted(maps.Keys(m.Actions)) {
		a := m.Actions[id]
		f := "actions." + id
		if !nameRE.MatchString(id) {
			c.add(f, "id %q: use lower-case letters, digits, '.', '_' and '-'", id)
		}
		if len(a.Name) > 100 || strings.ContainsAny(a.Name, "\n\r") {
			c.add(f+".name", "keep the name to one line of at most 100 bytes")
		}
		if len(a.Command) == 0 {
			c.add(f+".command", "missing: say what the action runs")
		}
		switch a.When {
		case "", WhenAny, WhenRunning, WhenStopped:
		default:
			c.add(f+".when", "%q: use running, stopped or any", a.When)
		}
		if a.Timeout < 0 || a.Timeout.D(0) > MaxActionTimeout {
			c.add(f+".timeout", "%v: give a duration above 0 and at most %v", a.Timeout.D(0), MaxActionTimeout)
		}
		c.job(m, f, a.Job(), true, nil)
		for i, mt := range a.Mounts {
			if mt.File != "" {
				c.add(fmt.Sprintf("%s.mounts[%d].file", f, i), "an action binds whole volumes: leave file out")
			}
		}
		if len(a.Input) > maxFields {
			c.add(f+".input", "%d fields: at most %d", len(a.Input), maxFields)
		}
		for _, n := range a.FieldNames() {
			for _, p := range a.Input[n].problems(n) {
				c.add(f+".input."+p.Field, "%s", p.Problem)
			}
		}
	}
}

// problems checks a field's declaration; each problem names name or one of its keys.
func (fd Field) problems(name string) []InputProblem {
	var out []InputProblem
	add := func(key, format string, a ...any) {
		f := name
		if key != "" {
			f += "." + key
		}
		out = append(out, InputProblem{Field: f, Problem: fmt.Sprintf(format, a...)})
	}
	if !fieldRE.MatchString(name) {
		add("", "name %q: use 1 to 64 lower-case letters, digits, '_' and '-', starting with a letter or '_'", name)
	}
	text := fd.Type == TypeString || fd.Type == TypeSecret
	switch fd.Type {
	case TypeString, TypeInteger, TypeBoolean, TypeEnum, TypeSecret:
	case "":
		add("type", "missing: give string, integer, boolean, enum or secret")
		return out
	default:
		add("type", "%q: use string, integer, boolean, enum or secret", fd.Type)
		return out
	}
	if (fd.Min != nil || fd.Max != nil) && !text && fd.Type != TypeInteger {
		add("min", "a %s has no bounds; min and max bound integers and the length of strings and secrets", fd.Type)
	}
	if text && fd.Min != nil && *fd.Min < 0 {
		add("min", "%d: a length is at least 0", *fd.Min)
	}
	if text && fd.Max != nil && *fd.Max < 1 {
		add("max", "%d: a length limit is at least 1", *fd.Max)
	}
	if fd.Min != nil && fd.Max != nil && *fd.Min > *fd.Max {
		add("max", "%d is below min %d", *fd.Max, *fd.Min)
	}
	if fd.Pattern != "" {
		if !text {
			add("pattern", "a %s has no pattern; patterns are for strings and secrets", fd.Type)
		} else if _, err := regexp.Compile(fd.Pattern); err != nil {
			add("pattern", "%q: %v", fd.Pattern, err)
		}
	}
	if fd.Type == TypeEnum {
		if len(fd.Values) == 0 {
			add("values", "missing: an enum lists its allowed values")
		}
		for i, v := range fd.Values {
			if v == "" || slices.Contains(fd.Values[:i], v) {
				add(fmt.Sprintf("values[%d]", i), "%q: give each value once, not empty", v)
			}
		}
	} else if len(fd.Values) > 0 {
		add("values", "only an enum lists values")
	}
	if fd.Default != nil {
		switch {
		case fd.Type == TypeSecret:
			add("default", "a secret has no default: it would be in the manifest for anyone to read")
		case fd.Required:
			add("default", "a required field is always given, so its default is never used: drop one of them")
		default:
			if _, p := fd.check(fd.Default); p != "" {
				add("default", "%s", p)
			}
		}
	}
	if len(fd.Description) > 1000 {
		add("description", "at most 1000 bytes")
	}
	return out
}

// InputProblem is one problem of an action's input (or of a field's declaration).
type InputProblem struct {
	Field, Problem string
}

// InputProblems are every problem CheckInput found.
type InputProblems []InputProblem

func (ps InputProblems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Field + ": " + p.Problem
	}
	return "input: " + strings.Join(parts, "; ")
}

// CheckInput checks input (a JSON object; empty means {}) against the action's fields:
// unknown keys, missing required fields, wrong types, values out of bounds, not matching
// the pattern or not among an enum's values. It returns the input with the defaults of
// the fields not given filled in, integers as int64; its error is InputProblems, each
// naming the field and what to give instead.
func (a *Action) CheckInput(input []byte) (map[string]any, error) {
	if len(input) > MaxInputBytes {
		return nil, InputProblems{{Field: "(input)", Problem: fmt.Sprintf("%d bytes: at most %d", len(input), MaxInputBytes)}}
	}
	raw := map[string]any{}
	if len(bytes.TrimSpace(input)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(input))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, InputProblems{{Field: "(input)", Problem: fmt.Sprintf("not JSON (%v): give an object such as {\"name\": \"value\"}", err)}}
		}
		if !onlySpace(input[dec.InputOffset():]) {
			return nil, InputProblems{{Field: "(input)", Problem: "text after the JSON value: give one object"}}
		}
		obj, ok := v.(map[string]any)
		if v != nil && !ok {
			return nil, InputProblems{{Field: "(input)", Problem: fmt.Sprintf("a %s: give an object such as {\"name\": \"value\"}", jsonKind(v))}}
		}
		if obj != nil {
			raw = obj
		}
	}
	return a.Complete(raw)
}

// Complete is CheckInput for an input already decoded (numbers as json.Number, int64
// or float64).
func (a *Action) Complete(raw map[string]any) (map[string]any, error) {
	var ps InputProblems
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if _, ok := a.Input[k]; !ok {
			name := k
			if !fieldRE.MatchString(k) {
				name = strconv.Quote(k)
			}
			ps = append(ps, InputProblem{Field: name, Problem: "unknown field: " + a.expects()})
		}
	}
	for _, n := range a.FieldNames() {
		fd := a.Input[n]
		v, given := raw[n]
		if !given || v == nil {
			switch {
			case fd.Required:
				ps = append(ps, InputProblem{Field: n, Problem: "missing: give " + fd.Expect()})
			case fd.Default != nil:
				d, p := fd.check(fd.Default)
				if p != "" { // a manifest that validated has good defaults
					ps = append(ps, InputProblem{Field: n, Problem: "the manifest's default: " + p})
				}
				out[n] = d
			}
			continue
		}
		val, p := fd.check(v)
		if p != "" {
			ps = append(ps, InputProblem{Field: n, Problem: p})
			continue
		}
		out[n] = val
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return out, nil
}

// expects lists the fields an action takes.
func (a *Action) expects() string {
	if len(a.Input) == 0 {
		return "this action takes no input"
	}
	return "this action takes " + strings.Join(a.FieldNames(), ", ")
}

// Expect says what a value of the field must be ("an integer from 8 to 64").
func (fd Field) Expect() string {
	bounds := func(unit string) string {
		switch {
		case fd.Min != nil && fd.Max != nil:
			return fmt.Sprintf(" of %d to %d%s", *fd.Min, *fd.Max, unit)
		case fd.Min != nil:
			return fmt.Sprintf(" of at least %d%s", *fd.Min, unit)
		case fd.Max != nil:
			return fmt.Sprintf(" of at most %d%s", *fd.Max, unit)
		}
		return ""
	}
	switch fd.Type {
	case TypeInteger:
		switch {
		case fd.Min != nil && fd.Max != nil:
			return fmt.Sprintf("an integer from %d to %d", *fd.Min, *fd.Max)
		case fd.Min != nil:
			return fmt.Sprintf("an integer of at least %d", *fd.Min)
		case fd.Max != nil:
			return fmt.Sprintf("an integer of at most %d", *fd.Max)
		}
		return "an integer"
	case TypeBoolean:
		return "true or false"
	case TypeEnum:
		return "one of " + strings.Join(fd.Values, ", ")
	case TypeString, TypeSecret:
		s := "a " + fd.Type + bounds(" characters")
		if fd.Pattern != "" {
			s += " matching " + fd.Pattern
		}
		return s
	}
	return "a value"
}

// check checks one value against the field; it returns the value as the input holds it
// (int64 for integers) or a problem that says what to give.
func (fd Field) check(v any) (any, string) {
	switch fd.Type {
	case TypeInteger:
		n, ok := asInt(v)
		if !ok {
			return nil, fmt.Sprintf("%s: give %s", describe(v), fd.Expect())
		}
		if (fd.Min != nil && n < *fd.Min) || (fd.Max != nil && n > *fd.Max) {
			return nil, fmt.Sprintf("%d is out of bounds: give %s", n, fd.Expect())
		}
		return n, ""
	case TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Sprintf("%s: give true or false", describe(v))
		}
		return b, ""
	case TypeEnum:
		s, ok := v.(string)
		if !ok || !slices.Contains(fd.Values, s) {
			return nil, fmt.Sprintf("%s: give %s", describe(v), fd.Expect())
		}
		return s, ""
	case TypeString, TypeSecret:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Sprintf("%s: give %s", describe(v), fd.Expect())
		}
		shown := describe(v)
		if fd.Type == TypeSecret {
			shown = "the secret" // never echoed
		}
		if !utf8.ValidString(s) {
			return nil, shown + " is not valid UTF-8"
		}
		n := int64(utf8.RuneCountInString(s))
		if (fd.Min != nil && n < *fd.Min) || (fd.Max != nil && n > *fd.Max) {
			return nil, fmt.Sprintf("%s has %d characters: give %s", shown, n, fd.Expect())
		}
		if fd.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + fd.Pattern + `)$`)
			if err != nil {
				return nil, fmt.Sprintf("the manifest's pattern %q: %v", fd.Pattern, err)
			}
			if !re.MatchString(s) {
				return nil, fmt.Sprintf("%s does not match %s: give %s", shown, fd.Pattern, fd.Expect())
			}
		}
		return s, ""
	}
	return nil, fmt.Sprintf("the field's type %q is unknown", fd.Type)
}

// asInt reads an integer from JSON (json.Number, float64) or YAML (int) decoding.
func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	case float64:
		if n != math.Trunc(n) || n < math.MinInt64 || n >= math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

// describe shows a value in a problem, cut short.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = strings.ToValidUTF8(x[:40], "") + "…"
		}
		return strconv.Quote(x)
	case json.Number, int, int64, uint64, float64, bool:
		return fmt.Sprint(x)
	}
	return "a " + jsonKind(v)
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "JSON object"
	case []any:
		return "JSON array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "number"
}

// ParseInputPairs reads key=value pairs (hearthctl action run --input) into an input
// object, each value read as its field's type says: integers in decimal, booleans as
// true/false (or yes/no, 1/0), anything else as the text after the first '='. It checks
// only the form; CheckInput (on the host) checks the values.
func ParseInputPairs(fields map[string]Field, pairs []string) (map[string]any, error) {
	out := map[string]any{}
	var ps InputProblems
	names := slices.Sorted(maps.Keys(fields))
	takes := "this action takes no input"
	if len(names) > 0 {
		takes = "this action takes " + strings.Join(names, ", ")
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			ps = append(ps, InputProblem{Field: describe(p), Problem: "write key=value, such as length=24"})
			continue
		}
		fd, known := fields[k]
		if !known {
			ps = append(ps, InputProblem{Field: k, Problem: "unknown field: " + takes})
			continue
		}
		if _, dup := out[k]; dup {
			ps = append(ps, InputProblem{Field: k, Problem: "given twice: give each field once"})
			continue
		}
		switch fd.Type {
		case TypeInteger:
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				ps = append(ps, InputProblem{Field: k, Problem: fmt.Sprintf("%s is not an integer: give %s, such as %s=%d", describe(v), fd.Expect(), k, example(fd))})
				continue
			}
			out[k] = n
		case TypeBoolean:
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true", "yes", "1", "on":
				out[k] = true
			case "false", "no", "0", "off":
				out[k] = false
			default:
				ps = append(ps, InputProblem{Field: k, Problem: fmt.Sprintf("%s: give true or false, such as %s=true", describe(v), k)})
				continue
			}
		default:
			out[k] = v
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return out, nil
}

// example is an integer the field takes.
func example(fd Field) int64 {
	switch {
	case fd.Min != nil:
		return *fd.Min
	case fd.Max != nil:
		return *fd.Max
	}
	return 1
}

// ActionResult is what an action prints on its standard output: one JSON object.
type ActionResult struct {
	// Message tells the user what the action did.
	Message string `json:"message"`
	// Values are what it returns to the user (a generated password, say).
	Values []ActionValue `json:"values,omitempty"`
}

// ActionValue is one value an action returns.
type ActionValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Secret values are shown once, marked, and never logged.
	Secret bool `json:"secret,omitempty"`
	// Copyable values are meant to be copied (a client offers a button).
	Copyable bool `json:"copyable,omitempty"`
}

// ErrResult is the error of an action result that is not as documented.
var ErrResult = errors.New("the action's result is not as actions print it")

// ParseResult reads an action's standard output: one JSON object (whitespace around it
// allowed) with a message and values, each value a name and a string.
func ParseResult(stdout []byte) (*ActionResult, error) {
	if len(stdout) > MaxResultBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrResult, len(stdout), MaxResultBytes)
	}
	if len(bytes.TrimSpace(stdout)) == 0 {
		return nil, fmt.Errorf("%w: it printed nothing; print {\"message\": \"...\"}", ErrResult)
	}
	dec := json.NewDecoder(bytes.NewReader(stdout))
	dec.DisallowUnknownFields()
	var r ActionResult
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v; print one JSON object {\"message\": \"...\", \"values\": [{\"name\": \"...\", \"value\": \"...\"}]}", ErrResult, err)
	}
	if !onlySpace(stdout[dec.InputOffset():]) {
		return nil, fmt.Errorf("%w: text after the JSON object; print one object and nothing else on standard output (use standard error for logs)", ErrResult)
	}
	if len(r.Values) > maxValues {
		return nil, fmt.Errorf("%w: %d values, at most %d", ErrResult, len(r.Values), maxValues)
	}
	for i, v := range r.Values {
		if v.Name == "" {
			return nil, fmt.Errorf("%w: values[%d] has no name", ErrResult, i)
		}
	}
	return &r, nil
}

func onlySpace(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }
