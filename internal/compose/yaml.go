package compose

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// MaxSize bounds a compose file.
const MaxSize = 1 << 20

// maxNodes bounds the expanded tree: anchors and merge keys that multiply nodes (a "billion
// laughs" file) are refused past it.
const maxNodes = 200_000

// parse reads data into a tree with every alias resolved, every merge key (<<) applied and
// every scalar value interpolated from env.
func parse(name string, data []byte, env map[string]string) (*yaml.Node, error) {
	if len(data) > MaxSize {
		return nil, Problem{File: name, Msg: fmt.Sprintf("%d bytes; a compose file is at most %d", len(data), MaxSize)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problem{File: name, Msg: "empty: a compose file needs services"}
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, Problem{File: name, Line: line, Col: 1, Msg: m[2]}
		}
		return nil, Problem{File: name, Msg: msg}
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, Problem{File: name, Line: extra.Line, Col: extra.Column, Msg: "a second YAML document; a compose file holds one"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, Problem{File: name, Msg: "empty: a compose file needs services"}
	}
	x := &expander{name: name, env: env}
	root, err := x.expand(doc.Content[0], 0)
	if err != nil {
		return nil, err
	}
	return root, nil
}

type expander struct {
	name  string
	env   map[string]string
	nodes int
}

func (x *expander) at(n *yaml.Node, format string, a ...any) error {
	return Problem{File: x.name, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, a...)}
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// expand copies n with aliases resolved, merge keys applied and values interpolated.
func (x *expander) expand(n *yaml.Node, depth int) (*yaml.Node, error) {
	x.nodes++
	if x.nodes > maxNodes {
		return nil, x.at(n, "anchors expand to more than %d nodes", maxNodes)
	}
	if depth > 64 {
		return nil, x.at(n, "nested more than 64 levels deep")
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, x.at(n, "alias to nothing")
		}
		out, err := x.expand(n.Alias, depth+1)
		if err != nil {
			return nil, err
		}
		return out, nil
	case yaml.ScalarNode:
		c := *n
		c.Anchor = ""
		if n.Tag == "!!str" || n.Style != 0 || n.Tag == "" || strings.Contains(n.Value, "$") {
			v, err := interpolate(n.Value, x.env)
			if err != nil {
				return nil, x.at(n, "%v", err)
			}
			c.Value = v
		}
		return &c, nil
	case yaml.SequenceNode:
		c := *n
		c.Anchor = ""
		c.Content = nil
		for _, e := range n.Content {
			ee, err := x.expand(e, depth+1)
			if err != nil {
				return nil, err
			}
			c.Content = append(c.Content, ee)
		}
		return &c, nil
	case yaml.MappingNode:
		c := *n
		c.Anchor = ""
		c.Content = nil
		have := map[string]bool{}
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "!!merge" || k.Tag == "") {
				merges = append(merges, v)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, x.at(k, "a key must be a plain value")
			}
			if have[k.Value] {
				return nil, x.at(k, "key %q given twice", k.Value)
			}
			have[k.Value] = true
			vv, err := x.expand(v, depth+1)
			if err != nil {
				return nil, err
			}
			kc := *k
			kc.Anchor = ""
			c.Content = append(c.Content, &kc, vv)
		}
		// Keys of the mapping win over merged ones; earlier merged mappings over later.
		for _, m := range merges {
			srcs := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				srcs = m.Content
			}
			for _, s := range srcs {
				se, err := x.expand(s, depth+1)
				if err != nil {
					return nil, err
				}
				if se.Kind != yaml.MappingNode {
					return nil, x.at(s, "<< merges a mapping (or a list of them)")
				}
				for i := 0; i+1 < len(se.Content); i += 2 {
					if have[se.Content[i].Value] {
						continue
					}
					have[se.Content[i].Value] = true
					c.Content = append(c.Content, se.Content[i], se.Content[i+1])
				}
			}
		}
		return &c, nil
	}
	return nil, x.at(n, "unexpected YAML node")
}

// interpolate replaces $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
// ${VAR?error}, ${VAR:+alt}, ${VAR+alt} and $$ in s as compose does.
func interpolate(s string, env map[string]string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			b.WriteByte('$')
			i++
			continue
		}
		switch n := s[i+1]; {
		case n == '$':
			b.WriteByte('$')
			i += 2
		case n == '{':
			end, err := closing(s, i+2)
			if err != nil {
				return "", err
			}
			v, err := expr(s[i+2:end], env)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end + 1
		case isNameStart(n):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			b.WriteString(env[s[i+1:j]])
			i = j
		default:
			return "", fmt.Errorf("%q: a lone $ (write $$ for a literal $)", s)
		}
	}
	return b.String(), nil
}

// closing finds the } that ends the ${ opened before from, allowing nested ${...}.
func closing(s string, from int) (int, error) {
	depth := 1
	for j := from; j < len(s); j++ {
		switch {
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
			depth++
			j++
		case s[j] == '}':
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("%q: ${ without a closing }", s)
}

func expr(e string, env map[string]string) (string, error) {
	j := 0
	for j < len(e) && isNameChar(e[j]) {
		j++
	}
	name, rest := e[:j], e[j:]
	if name == "" || !isNameStart(name[0]) {
		return "", fmt.Errorf("${%s}: not a variable name", e)
	}
	val, set := env[name]
	if rest == "" {
		return val, nil
	}
	op := rest[:1]
	colon := false
	if op == ":" && len(rest) > 1 {
		colon, op, rest = true, rest[1:2], rest[2:]
	} else {
		rest = rest[1:]
	}
	// What follows the operator may itself hold variables.
	word, err := interpolate(rest, env)
	if err != nil {
		return "", err
	}
	empty := !set || (colon && val == "")
	switch op {
	case "-":
		if empty {
			return word, nil
		}
		return val, nil
	case "?":
		if empty {
			if word == "" {
				word = "is required"
			}
			return "", fmt.Errorf("variable %s: %s (set it in the environment or the env file)", name, word)
		}
		return val, nil
	case "+":
		if empty {
			return "", nil
		}
		return word, nil
	}
	return "", fmt.Errorf("${%s}: unknown operator %q (use :-, -, :?, ?, :+ or +)", e, op)
}

func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isNameChar(c byte) bool  { return isNameStart(c) || c >= '0' && c <= '9' }

// ReadEnvFile reads a .env file: KEY=VALUE lines, # comments, blank lines, an optional
// "export " prefix, values in single quotes (literal) or double quotes (with \n, \t, \\,
// \" escapes); an unquoted value ends at " #".
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseEnv(path, data)
}

// ParseEnv is ReadEnvFile for data read from name.
func ParseEnv(name string, data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxSize)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.TrimPrefix(l, "export ")
		k, v, ok := strings.Cut(l, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || !isNameStart(k[0]) || strings.IndexFunc(k, func(r rune) bool { return r > 127 || !isNameChar(byte(r)) }) >= 0 {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", name, line)
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
			v = strings.NewReplacer(`\n`, "\n", `\t`, "\t", `\"`, `"`, `\\`, `\`).Replace(v[1 : len(v)-1])
		default:
			if i := strings.Index(v, " #"); i >= 0 {
				v = strings.TrimSpace(v[:i])
			}
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// ShellSplit splits a command string into words as a POSIX shell would, without expanding
// anything: single quotes, double quotes (with \" \\ \$ \` escapes) and backslashes.
func ShellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
				}
			}
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%q: unclosed '", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%q: unclosed \"", s)
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
