module hearth.dev/integration

go 1.26

replace (
	hearth.dev/examples => ../examples
	hearth.dev/internal => ../internal
	hearth.dev/proto => ../proto
	hearth.dev/services/containerd-lite => ../services/containerd-lite
)

require (
	github.com/google/go-containerregistry v0.20.6
	github.com/miekg/dns v1.1.73
	golang.org/x/sys v0.47.0
	google.golang.org/grpc v1.77.0
	google.golang.org/protobuf v1.36.12
	hearth.dev/examples v0.0.0
	hearth.dev/internal v0.0.0
	hearth.dev/proto v0.0.0
	hearth.dev/services/containerd-lite v0.0.0
)

require (
	github.com/containerd/stargz-snapshotter/estargz v0.16.3 // indirect
	github.com/docker/cli v28.2.2+incompatible // indirect
	github.com/docker/distribution v2.8.3+incompatible // indirect
	github.com/docker/docker-credential-helpers v0.9.3 // indirect
	github.com/klauspost/compress v1.18.2 // indirect
	github.com/mitchellh/go-homedir v1.1.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	github.com/vbatts/tar-split v0.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.4 // indirect
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/text v0.40.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20251103181224-f26f9409b101 // indirect
)
