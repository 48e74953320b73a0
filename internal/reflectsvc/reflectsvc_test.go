package reflectsvc_test

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"hearth.dev/internal/reflectsvc"
	"hearth.dev/internal/reflectsvc/fileset"
)

// serve starts a server with health and reflection (ours, or grpc-go's when set is nil)
// and returns a reflection stream on it.
func serve(t *testing.T, set []byte) rpb.ServerReflection_ServerReflectionInfoClient {
	t.Helper()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	if set != nil {
		reflectsvc.Register(s, set)
	} else {
		reflection.Register(s)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func ask(t *testing.T, st rpb.ServerReflection_ServerReflectionInfoClient, req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
	t.Helper()
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func fileNames(t *testing.T, resp *rpb.ServerReflectionResponse) []string {
	t.Helper()
	var names []string
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatalf("a file sent does not parse: %v", err)
		}
		names = append(names, fd.GetName())
	}
	return names
}

var services = []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}

// TestAnswers: the services listed; a symbol's file with its imports, each file once per
// stream; what is unknown, NotFound.
func TestAnswers(t *testing.T) {
	set, err := fileset.Of(services...)
	if err != nil {
		t.Fatal(err)
	}
	st := serve(t, set)

	resp := ask(t, st, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	var listed []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed = append(listed, s.GetName())
	}
	if !slices.Equal(listed, services) {
		t.Errorf("listed %v, want %v", listed, services)
	}

	resp = ask(t, st, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.HealthCheckRequest"}})
	if got := fileNames(t, resp); !slices.Equal(got, []string{"grpc/health/v1/health.proto"}) {
		t.Errorf("file containing grpc.health.v1.HealthCheckRequest: %v (error %v)", got, resp.GetErrorResponse())
	}
	resp = ask(t, st, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.Health.Watch"}})
	if got := fileNames(t, resp); len(got) != 0 || resp.GetErrorResponse() != nil {
		t.Errorf("a file sent twice on one stream: %v (error %v)", got, resp.GetErrorResponse())
	}

	for _, req := range []*rpb.ServerReflectionRequest{
		{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "no.such.Thing"}},
		{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: "no/such.proto"}},
		{MessageRequest: &rpb.ServerReflectionRequest_AllExtensionNumbersOfType{AllExtensionNumbersOfType: "no.such.Type"}},
		{MessageRequest: &rpb.ServerReflectionRequest_FileContainingExtension{FileContainingExtension: &rpb.ExtensionRequest{ContainingType: "no.such.Type", ExtensionNumber: 5}}},
	} {
		resp := ask(t, st, req)
		if e := resp.GetErrorResponse(); e == nil || codes.Code(e.GetErrorCode()) != codes.NotFound {
			t.Errorf("%v: %v, want NotFound", req.GetMessageRequest(), resp.GetMessageResponse())
		}
	}
}

// TestSameAsGRPC: for each file, the bytes grpc-go's own reflection sends are ours.
func TestSameAsGRPC(t *testing.T) {
	set, err := fileset.Of(services...)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := serve(t, set), serve(t, nil)
	for _, f := range []string{"grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"} {
		req := &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: f}}
		a := ask(t, ours, req).GetFileDescriptorResponse().GetFileDescriptorProto()
		b := ask(t, theirs, req).GetFileDescriptorResponse().GetFileDescriptorProto()
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: %d files sent, grpc-go sends %d", f, len(a), len(b))
		}
		for i := range a {
			var x, y descriptorpb.FileDescriptorProto
			if proto.Unmarshal(a[i], &x) != nil || proto.Unmarshal(b[i], &y) != nil || !proto.Equal(&x, &y) {
				t.Errorf("%s: file %d differs from grpc-go's", f, i)
			}
		}
	}
}

// TestBadSet: a set that does not parse is an Internal error on the call, not a crash.
func TestBadSet(t *testing.T) {
	st := serve(t, []byte{0x0a, 0xff})
	resp := ask(t, st, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: "grpc/health/v1/health.proto"}})
	if e := resp.GetErrorResponse(); e == nil || codes.Code(e.GetErrorCode()) != codes.Internal {
		t.Errorf("bad set: %v, want Internal", resp.GetMessageResponse())
	}
}
