package effects

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"hearth.dev/internal/jsonrpc"
)

// checkParams checks params against the request message md before protojson reads them,
// so that a problem is reported naming the parameter ("port", "env.HOME", "names[2]")
// and what is wrong with it. It accepts what protojson accepts: proto or JSON field
// names, null for a default, integers as numbers or strings.
func checkParams(md protoreflect.MessageDescriptor, params json.RawMessage) *jsonrpc.Error {
	params = bytes.TrimSpace(params)
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	if params[0] != '{' {
		return jsonrpc.InvalidParams("", "params must be an object of named parameters, not "+jsonKind(params))
	}
	return checkMessage(md, params, "")
}

func checkMessage(md protoreflect.MessageDescriptor, raw json.RawMessage, path string) *jsonrpc.Error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return jsonrpc.InvalidParams(strings.TrimSuffix(path, "."), err.Error())
	}
	fields := md.Fields()
	for key, v := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			return jsonrpc.InvalidParams(path+key, "unknown parameter: "+takes(md, path))
		}
		if string(v) == "null" {
			continue
		}
		if e := checkField(fd, v, path+key); e != nil {
			return e
		}
	}
	return nil
}

// takes lists the fields a message has, in proto names.
func takes(md protoreflect.MessageDescriptor, path string) string {
	fields := md.Fields()
	if fields.Len() == 0 {
		if path == "" {
			return "this effect takes no parameters"
		}
		return strings.TrimSuffix(path, ".") + " has no fields"
	}
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	if path == "" {
		return "this effect takes " + strings.Join(names, ", ")
	}
	return strings.TrimSuffix(path, ".") + " has " + strings.Join(names, ", ")
}

func checkField(fd protoreflect.FieldDescriptor, v json.RawMessage, path string) *jsonrpc.Error {
	switch {
	case fd.IsMap():
		var obj map[string]json.RawMessage
		if v[0] != '{' || json.Unmarshal(v, &obj) != nil {
			return jsonrpc.InvalidParams(path, "want an object, got "+jsonKind(v))
		}
		for k, e := range obj {
			if e := checkValue(fd.MapValue(), e, path+"."+k); e != nil {
				return e
			}
		}
		return nil
	case fd.IsList():
		var arr []json.RawMessage
		if v[0] != '[' || json.Unmarshal(v, &arr) != nil {
			return jsonrpc.InvalidParams(path, "want an array, got "+jsonKind(v))
		}
		for i, e := range arr {
			if e := checkValue(fd, e, path+"["+strconv.Itoa(i)+"]"); e != nil {
				return e
			}
		}
		return nil
	}
	return checkValue(fd, v, path)
}

// checkValue checks one value of fd's kind (an element, for lists and maps).
func checkValue(fd protoreflect.FieldDescriptor, v json.RawMessage, path string) *jsonrpc.Error {
	bad := func(want string) *jsonrpc.Error {
		return jsonrpc.InvalidParams(path, "want "+want+", got "+jsonKind(v))
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if string(v) != "true" && string(v) != "false" {
			return bad("true or false")
		}
	case protoreflect.StringKind:
		if v[0] != '"' {
			return bad("a string")
		}
	case protoreflect.BytesKind:
		var s string
		if v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return bad("a base64 string")
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			if _, err := base64.URLEncoding.DecodeString(s); err != nil {
				return jsonrpc.InvalidParams(path, "want a base64 string: "+err.Error())
			}
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return checkInt(v, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return checkInt(v, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return checkUint(v, path, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return checkUint(v, path, math.MaxUint64)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if v[0] != '"' && !isNumber(v) {
			return bad("a number")
		}
	case protoreflect.EnumKind:
		if v[0] != '"' && !isNumber(v) {
			return bad("a string naming a value")
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName() == "google.protobuf.Timestamp" {
			if v[0] != '"' {
				return bad("an RFC 3339 time string")
			}
			return nil
		}
		if v[0] != '{' {
			return bad("an object")
		}
		return checkMessage(fd.Message(), v, path+".")
	}
	return nil
}

func isNumber(v json.RawMessage) bool { return v[0] == '-' || (v[0] >= '0' && v[0] <= '9') }

// number returns an integer given as a JSON number or a string holding one.
func number(v json.RawMessage) (string, bool) {
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	}
	return string(v), isNumber(v)
}

func checkInt(v json.RawMessage, path string, lo, hi int64) *jsonrpc.Error {
	want := fmt.Sprintf("an integer from %d to %d", lo, hi)
	s, ok := number(v)
	if !ok {
		return jsonrpc.InvalidParams(path, "want "+want+", got "+jsonKind(v))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return jsonrpc.InvalidParams(path, "want "+want+", got "+s)
	}
	return nil
}

func checkUint(v json.RawMessage, path string, hi uint64) *jsonrpc.Error {
	want := fmt.Sprintf("an integer from 0 to %d", hi)
	s, ok := number(v)
	if !ok {
		return jsonrpc.InvalidParams(path, "want "+want+", got "+jsonKind(v))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > hi {
		return jsonrpc.InvalidParams(path, "want "+want+", got "+s)
	}
	return nil
}

// jsonKind names a JSON value's type, with a number's value.
func jsonKind(v json.RawMessage) string {
	if isNumber(v) {
		return "a number (" + string(v) + ")"
	}
	return jsonrpc.JSONType(v)
}
