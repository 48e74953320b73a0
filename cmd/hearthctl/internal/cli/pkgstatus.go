package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// packageStatus shows a package's container and daemons, then the health results and
// progress its scripts set and the dependencies it waits for.
func (g *globals) packageStatus(ctx context.Context, cl packageClients, id string) error {
	p, err := cl.packages.GetPackage(ctx, &containerv1.GetPackageRequest{Id: id})
	if err != nil {
		return err
	}
	st, err := cl.packages.GetPackageStatus(ctx, &containerv1.GetPackageStatusRequest{Id: id})
	if status.Code(err) == codes.Unimplemented {
		st, err = nil, nil // an older containerd-lite: the container and daemons only
	}
	if err != nil {
		return err
	}
	return g.containerStatus(ctx, cl.clients, p.GetPackage().GetContainer(), st.GetStatus())
}

// showPackageStatus prints what a package's scripts set and what it waits for; nothing
// for nil.
func (g *globals) showPackageStatus(st *hostv1.GetStatusResponse) error {
	if st == nil {
		return nil
	}
	if len(st.GetHealth()) > 0 {
		var rows [][]string
		for _, h := range st.GetHealth() {
			rows = append(rows, []string{h.GetName(), h.GetResult(), since(h.GetUpdatedAt()) + " ago", h.GetMessage()})
		}
		fmt.Fprintln(g.stdout)
		if err := g.table([]string{"HEALTH", "RESULT", "SET", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	if len(st.GetProgress()) > 0 {
		var rows [][]string
		for _, p := range st.GetProgress() {
			done := "-"
			switch {
			case p.GetTotal() > 0:
				done = fmt.Sprintf("%d/%d (%d%%)", p.GetDone(), p.GetTotal(), 100*p.GetDone()/p.GetTotal())
			case p.GetDone() > 0:
				done = fmt.Sprint(p.GetDone())
			}
			rows = append(rows, []string{p.GetPhase(), done, since(p.GetUpdatedAt()) + " ago", p.GetMessage()})
		}
		fmt.Fprintln(g.stdout)
		if err := g.table([]string{"PROGRESS", "DONE", "UPDATED", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	if len(st.GetWaitingFor()) > 0 {
		var ws []string
		for _, w := range st.GetWaitingFor() {
			ws = append(ws, fmt.Sprintf("%s (%s)", w.GetPackage(), w.GetReason()))
		}
		fmt.Fprintln(g.stdout)
		if _, err := fmt.Fprintf(g.stdout, "waiting for: %s\n", strings.Join(ws, ", ")); err != nil {
			return err
		}
	}
	return nil
}

// printJSONWithAll writes m as one JSON object with more fields (null for nil messages).
func (g *globals) printJSONWithAll(m proto.Message, extra map[string]proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	for key, x := range extra {
		if _, taken := obj[key]; taken {
			return fmt.Errorf("cannot add %q to %s: it has that field", key, m.ProtoReflect().Descriptor().FullName())
		}
		obj[key] = json.RawMessage("null")
		if x != nil && x.ProtoReflect().IsValid() {
			if obj[key], err = jsonOpts.Marshal(x); err != nil {
				return err
			}
		}
	}
	out, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(out))
	return err
}
