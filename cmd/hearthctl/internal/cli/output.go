package cli

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var jsonOpts = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}

// printJSON writes a message as JSON.
func (g *globals) printJSON(m proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// printJSONWith writes m as one JSON object with one more field, key, holding extra
// (null when extra is nil): a command that asks two services still prints one document.
func (g *globals) printJSONWith(m proto.Message, key string, extra proto.Message) error {
	return g.printJSONWithAll(m, map[string]proto.Message{key: extra})
}

// table writes rows under a header, aligned.
func (g *globals) table(header []string, rows [][]string) error {
	return g.aligned(2, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintln(w, strings.Join(r, "\t"))
		}
	})
}

// fields writes "name: value" lines, aligned.
func (g *globals) fields(kv ...string) error {
	return g.aligned(1, func(w *tabwriter.Writer) {
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(w, "%s:\t%s\n", kv[i], kv[i+1])
		}
	})
}

// aligned lays out what fill writes in columns padding spaces apart and writes it to stdout
// in one write: tabwriter alone writes cell by cell, so a reader that stops at its first match
// (grep -q) could end hearthctl with SIGPIPE half-way through a table.
func (g *globals) aligned(padding int, fill func(*tabwriter.Writer)) error {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 4, padding, ' ', 0)
	fill(w)
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := g.stdout.Write(b.Bytes())
	return err
}

// ago renders a timestamp as a time and how long ago it was.
func ago(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() || ts.AsTime().IsZero() {
		return "-"
	}
	t := ts.AsTime()
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), time.Since(t).Round(time.Second))
}

// since renders how long ago a timestamp was.
func since(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() || ts.AsTime().IsZero() {
		return "-"
	}
	return time.Since(ts.AsTime()).Round(time.Second).String()
}

// printJSONLine writes a message as one line of JSON (for streams).
func (g *globals) printJSONLine(m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}
