package main

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// set returns the host proto and its imports as a FileDescriptorSet; withComment adds a
// comment to GetIdentity, as buf's source info would.
func set(t *testing.T, withComment bool) []byte {
	var fds descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		if withComment && fd.Path() == hostProto {
			// service 0 (HostService), method 0 (GetIdentity): path 6, 0, 2, 0.
			fdp.SourceCodeInfo = &descriptorpb.SourceCodeInfo{Location: []*descriptorpb.SourceCodeInfo_Location{{
				Path: []int32{6, 0, 2, 0}, Span: []int32{1, 0, 1}, LeadingComments: proto.String(" GetIdentity says <who>.\n More | here.\n"),
			}}}
		}
		fds.File = append(fds.File, fdp)
	}
	add(hostv1.File_hearth_host_v1_host_proto)
	b, err := proto.Marshal(&fds)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerate(t *testing.T) {
	var out bytes.Buffer
	if err := generate(&out, set(t, false)); err == nil || !strings.Contains(err.Error(), "no source info") {
		t.Fatalf("without source info: %v", err)
	}
	out.Reset()
	if err := generate(&out, set(t, true)); err != nil {
		t.Fatal(err)
	}
	doc := out.String()
	for _, want := range []string{
		"| [`identity.get`](#identityget) | `HostService.GetIdentity` | GetIdentity says &lt;who&gt;. |",
		"## identity.get\n\nGetIdentity says &lt;who&gt;. More \\| here.\n",
		"## subcontainer.exec\n",
		"- RPC: `hearth.host.v1.SubcontainerService.Exec`, carried out by guestd itself.",
		"| `timeout_seconds` | integer (32-bit, ≥ 0) |",
		"| `env` | object of string |",
		"| `updated_at` | string (RFC 3339 time) |",
		"| `min` | integer (64-bit: a string in results), optional |",
		"### ActionField\n",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the doc lacks %q", want)
		}
	}
}
