// Package fileset makes the file descriptor set reflectsvc serves: the files of the
// services named and all their imports, serialized deterministically. It links protodesc:
// use it at build time (a generator, a test), not in the process that serves.
package fileset

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Of returns the serialized FileDescriptorSet of the files that define services (full
// names, registered in the process's registry) and every file they import, sorted by path.
func Of(services ...string) ([]byte, error) {
	files := map[string]protoreflect.FileDescriptor{}
	var add func(protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if _, ok := files[fd.Path()]; ok {
			return
		}
		files[fd.Path()] = fd
		imps := fd.Imports()
		for i := 0; i < imps.Len(); i++ {
			add(imps.Get(i).FileDescriptor)
		}
	}
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		if _, ok := d.(protoreflect.ServiceDescriptor); !ok {
			return nil, fmt.Errorf("%s is not a service", name)
		}
		add(d.ParentFile())
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	set := &descriptorpb.FileDescriptorSet{}
	for _, p := range paths {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(files[p]))
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(set)
}
