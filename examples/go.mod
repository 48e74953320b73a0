module hearth.dev/examples

go 1.26

require (
	github.com/google/go-containerregistry v0.20.6
	github.com/jackc/pgx/v5 v5.7.6
	hearth.dev/services/containerd-lite v0.0.0
)

require (
	github.com/containerd/stargz-snapshotter/estargz v0.16.3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/klauspost/compress v1.18.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/stretchr/testify v1.10.0 // indirect
	github.com/vbatts/tar-split v0.12.1 // indirect
	golang.org/x/crypto v0.43.0 // indirect
	golang.org/x/sync v0.18.0 // indirect
	golang.org/x/text v0.30.0 // indirect
)

replace (
	hearth.dev/internal => ../internal
	hearth.dev/proto => ../proto
	hearth.dev/services/containerd-lite => ../services/containerd-lite
)
