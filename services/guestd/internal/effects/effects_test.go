package effects

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/jsonrpc"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// testHost is a HostService that answers a few effects.
type testHost struct {
	hostv1.UnimplementedHostServiceServer
}

func (testHost) GetIdentity(context.Context, *hostv1.GetIdentityRequest) (*hostv1.GetIdentityResponse, error) {
	return &hostv1.GetIdentityResponse{Container: "c1"}, nil
}

func (testHost) BindVolume(_ context.Context, r *hostv1.BindVolumeRequest) (*hostv1.BindVolumeResponse, error) {
	if r.GetVolume() == "other" {
		return nil, status.Error(codes.PermissionDenied, `volume "other" is not this package's`)
	}
	return &hostv1.BindVolumeResponse{Overlay: &hostv1.Overlay{Name: r.GetSubcontainer(), Binds: []*hostv1.VolumeBind{{Volume: r.GetVolume(), Path: r.GetPath(), ReadOnly: r.GetReadOnly()}}}}, nil
}

func (testHost) DestroyOverlay(_ context.Context, r *hostv1.DestroyOverlayRequest) (*hostv1.DestroyOverlayResponse, error) {
	return &hostv1.DestroyOverlayResponse{}, nil
}

func (testHost) GetCertificate(context.Context, *hostv1.GetCertificateRequest) (*hostv1.GetCertificateResponse, error) {
	return nil, status.Error(codes.Unavailable, "certd is not running")
}

func newHandler(t *testing.T) (*Handler, *[]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "host.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hostv1.RegisterHostServiceServer(srv, testHost{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := dial.Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var log []string
	h, err := New(conn, map[protoreflect.FullName]LocalFunc{
		"hearth.host.v1.SubcontainerService.Exec": func(ctx context.Context, req proto.Message) (proto.Message, error) {
			r := req.(*hostv1.ExecRequest)
			log = append(log, "exec "+strings.Join(r.GetArgv(), " "))
			return &hostv1.ExecResponse{Stdout: r.GetEnv()["A"]}, nil
		},
	}, map[string]BeforeFunc{
		"subcontainer.destroy": func(ctx context.Context, req proto.Message) error {
			log = append(log, "before destroy "+req.(*hostv1.DestroyOverlayRequest).GetName())
			if req.(*hostv1.DestroyOverlayRequest).GetName() == "busy" {
				return errors.New("busy")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, &log
}

func TestEffects(t *testing.T) {
	h, log := newHandler(t)
	tests := []struct {
		name, method, params string
		result               string // the result, or
		code                 int    // the error's code
		data                 string // and its data
		log                  string // what guestd's own parts saw
	}{
		{"forwarded", "identity.get", ``, `{"container":"c1","package":""}`, 0, "", ""},
		{"empty params", "identity.get", `{}`, `{"container":"c1","package":""}`, 0, "", ""},
		{"proto names", "subcontainer.bind_volume", `{"volume":"v","subcontainer":"s","path":"/d","read_only":true}`,
			`{"overlay":{"name":"s","image":"","path":"","binds":[{"volume":"v","path":"/d","read_only":true}]}}`, 0, "", ""},
		{"json names", "subcontainer.bind_volume", `{"volume":"v","readOnly":false}`,
			`{"overlay":{"name":"","image":"","path":"","binds":[{"volume":"v","path":"","read_only":false}]}}`, 0, "", ""},
		{"local", "subcontainer.exec", `{"subcontainer":"s","argv":["a","b"],"env":{"A":"x"}}`,
			`{"exit_code":0,"signal":"","stdout":"x","stderr":"","truncated":false}`, 0, "", "exec a b"},
		{"before", "subcontainer.destroy", `{"name":"s"}`, `{}`, 0, "", "before destroy s"},
		{"before fails", "subcontainer.destroy", `{"name":"busy"}`, "", jsonrpc.CodeUnknown, `{"kind":"unknown"}`, "before destroy busy"},
		{"unknown method", "identity.set", `{}`, "", jsonrpc.CodeMethodNotFound, `{"method":"identity.set"}`, ""},
		{"unknown param", "identity.get", `{"name":"x"}`, "", jsonrpc.CodeInvalidParams, `{"param":"name","problem":"unknown parameter: this effect takes no parameters"}`, ""},
		{"unknown param listed", "subcontainer.destroy", `{"nam":"x"}`, "", jsonrpc.CodeInvalidParams, `{"param":"nam","problem":"unknown parameter: this effect takes name"}`, ""},
		{"string for bool", "subcontainer.bind_volume", `{"read_only":"yes"}`, "", jsonrpc.CodeInvalidParams, `{"param":"read_only","problem":"want true or false, got a string"}`, ""},
		{"number for string", "subcontainer.destroy", `{"name":5}`, "", jsonrpc.CodeInvalidParams, `{"param":"name","problem":"want a string, got a number (5)"}`, ""},
		{"negative uint", "subcontainer.exec", `{"timeout_seconds":-1}`, "", jsonrpc.CodeInvalidParams, `{"param":"timeout_seconds","problem":"want an integer from 0 to 4294967295, got -1"}`, ""},
		{"fraction", "progress.set", `{"done":1.5}`, "", jsonrpc.CodeInvalidParams, `{"param":"done","problem":"want an integer from 0 to 18446744073709551615, got 1.5"}`, ""},
		{"array elem", "subcontainer.exec", `{"argv":["a",2]}`, "", jsonrpc.CodeInvalidParams, `{"param":"argv[1]","problem":"want a string, got a number (2)"}`, ""},
		{"not array", "subcontainer.exec", `{"argv":"ls"}`, "", jsonrpc.CodeInvalidParams, `{"param":"argv","problem":"want an array, got a string"}`, ""},
		{"map value", "subcontainer.exec", `{"env":{"A":1}}`, "", jsonrpc.CodeInvalidParams, `{"param":"env.A","problem":"want a string, got a number (1)"}`, ""},
		{"params array", "identity.get", `[]`, "", jsonrpc.CodeInvalidParams, `{"problem":"params must be an object of named parameters, not an array"}`, ""},
		{"permission", "subcontainer.bind_volume", `{"volume":"other"}`, "", jsonrpc.CodePermissionDenied, `{"kind":"permission_denied"}`, ""},
		{"unavailable", "certificate.get", `{"names":["a.local"]}`, "", jsonrpc.CodeUnavailable, `{"kind":"unavailable"}`, ""},
		{"unimplemented", "notify", `{"level":"info"}`, "", jsonrpc.CodeUnimplemented, `{"kind":"unimplemented"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			*log = nil
			var params json.RawMessage
			if tt.params != "" {
				params = json.RawMessage(tt.params)
			}
			res, err := h.Call(context.Background(), tt.method, params)
			if got := strings.Join(*log, "; "); got != tt.log {
				t.Errorf("guestd's parts saw %q, want %q", got, tt.log)
			}
			if tt.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(res) // compacts, as the server does
				if string(b) != tt.result {
					t.Fatalf("result %s\nwant   %s", b, tt.result)
				}
				return
			}
			// The error as the server sends it.
			var e *jsonrpc.Error
			if !errors.As(err, &e) {
				e = roundTrip(t, h, tt.method, params)
			}
			if e.Code != tt.code || string(e.Data) != tt.data {
				t.Fatalf("error %d %s (%s), want %d %s", e.Code, e.Data, e.Message, tt.code, tt.data)
			}
		})
	}
}

// roundTrip makes the call through a real server, to see the error object it sends.
func roundTrip(t *testing.T, h *Handler, method string, params json.RawMessage) *jsonrpc.Error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "e.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &jsonrpc.Server{Handler: h}
	go s.Serve(context.Background(), l)
	defer s.Close()
	var p any
	if params != nil {
		p = params
	}
	err = jsonrpc.Call(context.Background(), path, method, p, nil)
	var e *jsonrpc.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a JSON-RPC error, got %v", err)
	}
	return e
}

func TestEveryEffectServed(t *testing.T) {
	h, _ := newHandler(t)
	list, err := FromFile(hostv1.File_hearth_host_v1_host_proto)
	if err != nil {
		t.Fatal(err)
	}
	// Every marked RPC of the proto, counted from the descriptor directly.
	n := 0
	svcs := hostv1.File_hearth_host_v1_host_proto.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			if proto.HasExtension(ms.Get(j).Options(), hostv1.E_Effect) {
				n++
			}
		}
	}
	if names := h.Names(); len(names) != n || len(list) != n {
		t.Fatalf("%d effects served (%v), %d listed, %d marked in the proto", len(names), names, len(list), n)
	}
	for _, want := range []string{"identity.get", "subcontainer.exec", "subcontainer.create", "data_version.set"} {
		if _, ok := h.methods[want]; !ok {
			t.Errorf("%s is not served", want)
		}
	}
	if _, err := New(nil, nil, nil); err == nil || !strings.Contains(err.Error(), "subcontainer.exec") {
		t.Fatalf("New without Exec: %v", err)
	}
}
