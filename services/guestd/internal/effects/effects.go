// Package effects is guestd's JSON-RPC shim: the effects of hearth.host.v1, served to
// package scripts on /media/hearth/rpc/effects.sock. The method table is read from the
// proto: every RPC marked with the (hearth.host.v1.effect).name option is served under
// that name, its params the request message in protobuf's JSON form, its result the
// response message in that form (proto field names, every field present). HostService's
// effects are forwarded to the host over guestd's connection to host.sock; the other
// services' (SubcontainerService.Exec) are guestd's own, given to New.
package effects

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/jsonrpc"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/guestd/internal/launch"
)

// Socket is the effects socket, as the container and every subcontainer see it (launch
// binds it into each subcontainer and names it in every job's environment).
const Socket = launch.EffectsSocket

// HostService is the service whose effects the host carries out.
const HostService protoreflect.FullName = "hearth.host.v1.HostService"

// Method is one effect: its JSON-RPC name and the RPC behind it.
type Method struct {
	Name string
	RPC  protoreflect.MethodDescriptor
}

// Local reports whether guestd serves the effect itself (any service but HostService).
func (m Method) Local() bool { return m.RPC.Parent().FullName() != HostService }

// FromFile lists the effects of a file's services, sorted by name: every method with
// the effect option. An effect name given twice is an error.
func FromFile(fd protoreflect.FileDescriptor) ([]Method, error) {
	var out []Method
	seen := map[string]protoreflect.FullName{}
	svcs := fd.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			md := ms.Get(j)
			opts, ok := md.Options().(*descriptorpb.MethodOptions)
			if !ok || opts == nil || !proto.HasExtension(opts, hostv1.E_Effect) {
				continue
			}
			name := proto.GetExtension(opts, hostv1.E_Effect).(*hostv1.Effect).GetName()
			if name == "" {
				return nil, fmt.Errorf("%s: the effect option has no name", md.FullName())
			}
			if other, dup := seen[name]; dup {
				return nil, fmt.Errorf("effect %q is both %s and %s", name, other, md.FullName())
			}
			seen[name] = md.FullName()
			out = append(out, Method{Name: name, RPC: md})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// LocalFunc serves an effect in guestd: req is the RPC's request message, the result its
// response message.
type LocalFunc func(ctx context.Context, req proto.Message) (proto.Message, error)

// BeforeFunc runs before a forwarded effect (guestd's share of it); an error stops it.
type BeforeFunc func(ctx context.Context, req proto.Message) error

// Handler serves the effects; it is a jsonrpc.Handler.
type Handler struct {
	host    grpc.ClientConnInterface
	methods map[string]*method
	names   string // the effects' names, sorted, for the method-not-found message
}

type method struct {
	Method
	in, out protoreflect.MessageType
	path    string // the gRPC method path, for forwarded effects
	local   LocalFunc
	before  BeforeFunc
}

var (
	unmarshal = protojson.UnmarshalOptions{}
	marshal   = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
)

// New builds the handler from hostv1's proto. host carries the forwarded effects; local
// serves each effect of another service, by its RPC's full name (every one must be
// given); before adds guestd's share to forwarded effects, by effect name.
func New(host grpc.ClientConnInterface, local map[protoreflect.FullName]LocalFunc, before map[string]BeforeFunc) (*Handler, error) {
	list, err := FromFile(hostv1.File_hearth_host_v1_host_proto)
	if err != nil {
		return nil, err
	}
	h := &Handler{methods: map[string]*method{}}
	for _, m := range list {
		in, err := protoregistry.GlobalTypes.FindMessageByName(m.RPC.Input().FullName())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(m.RPC.Output().FullName())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		mm := &method{Method: m, in: in, out: out, before: before[m.Name]}
		if m.Local() {
			if mm.local = local[m.RPC.FullName()]; mm.local == nil {
				return nil, fmt.Errorf("effect %s (%s) is served by guestd, and nothing serves it", m.Name, m.RPC.FullName())
			}
		} else {
			mm.path = "/" + string(m.RPC.Parent().FullName()) + "/" + string(m.RPC.Name())
		}
		h.methods[m.Name] = mm
	}
	for name := range local {
		if _, ok := h.methods[name2effect(list, name)]; !ok {
			return nil, fmt.Errorf("%s is given a local implementation but is no effect", name)
		}
	}
	for name := range before {
		if m, ok := h.methods[name]; !ok || m.Local() {
			return nil, fmt.Errorf("before-hook for %q: no forwarded effect of that name", name)
		}
	}
	h.host = host
	h.names = strings.Join(h.Names(), ", ")
	return h, nil
}

func name2effect(list []Method, rpc protoreflect.FullName) string {
	for _, m := range list {
		if m.RPC.FullName() == rpc {
			return m.Name
		}
	}
	return ""
}

// Names lists the effects served, sorted.
func (h *Handler) Names() []string {
	out := make([]string, 0, len(h.methods))
	for n := range h.methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Call implements jsonrpc.Handler.
func (h *Handler) Call(ctx context.Context, name string, params json.RawMessage) (any, error) {
	m, ok := h.methods[name]
	if !ok {
		return nil, &jsonrpc.Error{
			Code:    jsonrpc.CodeMethodNotFound,
			Message: "no effect " + strconv.Quote(name) + "; the effects are " + h.names,
			Data:    mustJSON(map[string]string{"method": name}),
		}
	}
	req := m.in.New().Interface()
	if len(params) > 0 {
		if e := checkParams(m.in.Descriptor(), params); e != nil {
			return nil, e
		}
		if err := unmarshal.Unmarshal(params, req); err != nil {
			return nil, jsonrpc.InvalidParams("", strings.TrimPrefix(err.Error(), "proto: "))
		}
	}
	var resp proto.Message
	var err error
	switch {
	case m.local != nil:
		resp, err = m.local(ctx, req)
	default:
		if m.before != nil {
			if err := m.before(ctx, req); err != nil {
				return nil, err
			}
		}
		resp = m.out.New().Interface()
		err = errdefs.FromGRPC(h.host.Invoke(ctx, m.path, req, resp))
	}
	if err != nil {
		return nil, err
	}
	b, err := marshal.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("%s: encode the result: %w: %w", name, err, errdefs.ErrInternal)
	}
	return json.RawMessage(b), nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
