// Package reflectsvc serves gRPC server reflection (grpc.reflection.v1) from a file
// descriptor set compiled into the binary, for a daemon that must stay small.
//
// grpc-go's own reflection service converts the process's descriptors back to
// FileDescriptorProtos with protodesc, and linking protodesc costs every process at start:
// its package init builds descriptor.proto's descriptors and keeps them (~135 KiB of live
// heap and ~2.5 ms of CPU per guestd, measured), whether reflection is ever called or not.
// Here the set is bytes until the first reflection call, and is then read with protowire
// alone. fileset makes the set (at build time, with protodesc).
package reflectsvc

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Register serves reflection on s, answering from set: a serialized
// google.protobuf.FileDescriptorSet holding every file of s's services and their imports.
// Symbols and extensions are looked up in the process's registries (every generated
// package registers its files there); the files sent are set's.
func Register(s *grpc.Server, set []byte) {
	rpb.RegisterServerReflectionServer(s, &server{srv: s, set: set})
}

type server struct {
	rpb.UnimplementedServerReflectionServer
	srv  *grpc.Server
	set  []byte
	once sync.Once
	idx  index
	err  error
}

// index is set read: each file's bytes and imports, by path.
type index struct {
	files map[string][]byte
	deps  map[string][]string
}

// load reads the set once.
func (s *server) load() (index, error) {
	s.once.Do(func() { s.idx, s.err = parseSet(s.set) })
	return s.idx, s.err
}

// parseSet splits a FileDescriptorSet into its files (field 1), each named by its field 1
// and importing its fields 3.
func parseSet(set []byte) (index, error) {
	idx := index{files: map[string][]byte{}, deps: map[string][]string{}}
	err := eachBytes(set, func(num protowire.Number, file []byte) error {
		if num != 1 {
			return nil
		}
		var name string
		var deps []string
		if err := eachBytes(file, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				name = string(v)
			case 3:
				deps = append(deps, string(v))
			}
			return nil
		}); err != nil {
			return fmt.Errorf("a file: %w", err)
		}
		if name == "" {
			return fmt.Errorf("a file has no name")
		}
		idx.files[name], idx.deps[name] = file, deps
		return nil
	})
	if err != nil {
		return idx, fmt.Errorf("descriptor set: %w", err)
	}
	return idx, nil
}

// eachBytes calls fn with each length-delimited field of the message b, and skips the
// others.
func eachBytes(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// ServerReflectionInfo implements ServerReflectionServer: one answer per request, as
// grpc-go's does. A file is sent with its imports, each file once per stream.
func (s *server) ServerReflectionInfo(stream rpb.ServerReflection_ServerReflectionInfoServer) error {
	sent := map[string]bool{}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &rpb.ServerReflectionResponse{ValidHost: req.GetHost(), OriginalRequest: req}
		switch r := req.GetMessageRequest().(type) {
		case *rpb.ServerReflectionRequest_ListServices:
			resp.MessageResponse = &rpb.ServerReflectionResponse_ListServicesResponse{ListServicesResponse: s.list()}
		case *rpb.ServerReflectionRequest_FileByFilename:
			s.files(resp, r.FileByFilename, sent)
		case *rpb.ServerReflectionRequest_FileContainingSymbol:
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r.FileContainingSymbol))
			if err != nil {
				setError(resp, codes.NotFound, "symbol %q: %v", r.FileContainingSymbol, err)
				break
			}
			s.files(resp, d.ParentFile().Path(), sent)
		case *rpb.ServerReflectionRequest_FileContainingExtension:
			e := r.FileContainingExtension
			xt, err := protoregistry.GlobalTypes.FindExtensionByNumber(protoreflect.FullName(e.GetContainingType()), protoreflect.FieldNumber(e.GetExtensionNumber()))
			if err != nil {
				setError(resp, codes.NotFound, "extension %d of %q: %v", e.GetExtensionNumber(), e.GetContainingType(), err)
				break
			}
			s.files(resp, xt.TypeDescriptor().ParentFile().Path(), sent)
		case *rpb.ServerReflectionRequest_AllExtensionNumbersOfType:
			name := protoreflect.FullName(r.AllExtensionNumbersOfType)
			if _, err := protoregistry.GlobalTypes.FindMessageByName(name); err != nil {
				setError(resp, codes.NotFound, "type %q: %v", name, err)
				break
			}
			out := &rpb.ExtensionNumberResponse{BaseTypeName: string(name)}
			protoregistry.GlobalTypes.RangeExtensionsByMessage(name, func(xt protoreflect.ExtensionType) bool {
				out.ExtensionNumber = append(out.ExtensionNumber, int32(xt.TypeDescriptor().Number()))
				return true
			})
			sort.Slice(out.ExtensionNumber, func(i, j int) bool { return out.ExtensionNumber[i] < out.ExtensionNumber[j] })
			resp.MessageResponse = &rpb.ServerReflectionResponse_AllExtensionNumbersResponse{AllExtensionNumbersResponse: out}
		default:
			return status.Errorf(codes.InvalidArgument, "reflection: unknown request %T", r)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *server) list() *rpb.ListServiceResponse {
	var names []string
	for name := range s.srv.GetServiceInfo() {
		names = append(names, name)
	}
	sort.Strings(names)
	out := &rpb.ListServiceResponse{}
	for _, n := range names {
		out.Service = append(out.Service, &rpb.ServiceResponse{Name: n})
	}
	return out
}

func setError(resp *rpb.ServerReflectionResponse, code codes.Code, format string, a ...any) {
	resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &rpb.ErrorResponse{
		ErrorCode: int32(code), ErrorMessage: fmt.Sprintf(format, a...)}}
}

// files answers with path and those of its imports not yet sent on this stream.
func (s *server) files(resp *rpb.ServerReflectionResponse, path string, sent map[string]bool) {
	idx, err := s.load()
	if err != nil {
		setError(resp, codes.Internal, "%v", err)
		return
	}
	if _, ok := idx.files[path]; !ok {
		setError(resp, codes.NotFound, "file %q: not among this server's descriptors", path)
		return
	}
	var out [][]byte
	var walk func(string)
	walk = func(p string) {
		b, ok := idx.files[p]
		if !ok || sent[p] {
			return
		}
		sent[p] = true
		out = append(out, b)
		for _, d := range idx.deps[p] {
			walk(d)
		}
	}
	walk(path)
	resp.MessageResponse = &rpb.ServerReflectionResponse_FileDescriptorResponse{FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: out}}
}
