// Package store keeps containerd-lite's records in bbolt, with a schema version and
// migrations run at open.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth.dev/internal/errdefs"
)

// SchemaVersion is the version this code writes.
const SchemaVersion = 4

var (
	metaBucket       = []byte("meta")
	schemaKey        = []byte("schema")
	containersBucket = []byte("containers")
	imagesBucket     = []byte("images")
	namesBucket      = []byte("image-names")
	keptBucket       = []byte("kept")
	packagesBucket   = []byte("packages")
	journalBucket    = []byte("journal")
)

// migrations[i] moves a database from version i to i+1.
var migrations = []func(tx *bolt.Tx) error{
	// 0 → 1: the containers bucket.
	func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(containersBucket)
		return err
	},
	// 1 → 2: images by digest, and names pointing at digests. Containers gain an
	// image map, which old records read as empty.
	func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(imagesBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(namesBucket)
		return err
	},
	// 2 → 3: each container has its own id range and its data on its own disk; volumes
	// kept after a delete keep their range. Containers of version 2 all share one range,
	// with their layers and volumes elsewhere: they are not moved automatically.
	func(tx *bolt.Tx) error {
		if n := tx.Bucket(containersBucket).Stats().KeyN; n > 0 {
			return fmt.Errorf("%d containers were made by an earlier containerd-lite whose containers share one id range; "+
				"they cannot be moved to ranges of their own automatically: delete them with that version (hearthctl container rm --purge-volumes), "+
				"or start with an empty --state-dir: %w", n, errdefs.ErrFailedPrecondition)
		}
		_, err := tx.CreateBucketIfNotExists(keptBucket)
		return err
	},
	// 3 → 4: installed packages, and the journal of package operations under way.
	func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(packagesBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(journalBucket)
		return err
	},
}

// Container is what containerd-lite remembers of a container.
type Container struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// BaseRootfs is the host path of the base the container's overlay sits on.
	BaseRootfs string `json:"base_rootfs"`
	// Images maps the container's names for images to their digests.
	Images map[string]string `json:"images,omitempty"`
	// Volumes are the container's volume names.
	Volumes []string `json:"volumes,omitempty"`
	// Limits are the cgroup limits after the host policy.
	Limits Limits `json:"limits"`
	// Overlays are the subcontainer roots, by name.
	Overlays map[string]Overlay `json:"overlays,omitempty"`
	// Manifest is the package manifest (YAML) whose daemons guestd runs, if any.
	Manifest []byte `json:"manifest,omitempty"`
	// Address is the container's address on netd's bridge while it runs.
	Address string `json:"address,omitempty"`
	// Assets is a host directory bound read-only at /media/hearth/assets, if any.
	Assets string `json:"assets,omitempty"`
	// IDBase is the host id of the container's root: its ids are IDBase..IDBase+65535,
	// shared with no other container.
	IDBase uint32 `json:"id_base"`
}

// Kept is what stays of a deleted container whose volumes were kept: its disk and the id
// range that owns the files on it, reserved until a container of the same name takes
// them again or they are purged.
type Kept struct {
	Name      string    `json:"name"`
	IDBase    uint32    `json:"id_base"`
	Volumes   []string  `json:"volumes"`
	DiskBytes int64     `json:"disk_bytes"`
	DeletedAt time.Time `json:"deleted_at"`
}

// Limits of a container's cgroup.
type Limits struct {
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
	// DiskBytes is the size of the package's disk: its layers, volumes and logs.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

// Overlay is a subcontainer root: an image below, an ephemeral upper layer above.
type Overlay struct {
	Image string `json:"image"`
	Binds []Bind `json:"binds,omitempty"`
}

// Bind is a volume bound into an overlay.
type Bind struct {
	Volume   string `json:"volume"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Store is the database.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: another containerd-lite holds it (use another --state-dir): %w", path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Version returns the schema version stored in tx.
func version(tx *bolt.Tx) uint64 {
	b := tx.Bucket(metaBucket)
	if b == nil {
		return 0
	}
	v := b.Get(schemaKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func migrate(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		v := version(tx)
		if v > SchemaVersion {
			return fmt.Errorf("database schema %d is newer than this containerd-lite understands (%d): run a newer containerd-lite", v, SchemaVersion)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return meta.Put(schemaKey, binary.BigEndian.AppendUint64(nil, SchemaVersion))
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// SchemaVersion reports the stored schema version.
func (s *Store) SchemaVersion() (v uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { v = version(tx); return nil })
	return v, err
}

// PutContainer stores c, replacing a record of the same name.
func (s *Store) PutContainer(c Container) error { return s.db.Update(put(containersBucket, c.Name, c)) }

// GetContainer returns the record of name, or an error wrapping errdefs.ErrNotFound.
func (s *Store) GetContainer(name string) (Container, error) {
	return get[Container](s, containersBucket, name, "container")
}

// DeleteContainer removes the record of name; removing a missing record is not an error.
func (s *Store) DeleteContainer(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(containersBucket).Delete([]byte(name))
	})
}

// ListContainers returns every record, ordered by name.
func (s *Store) ListContainers() ([]Container, error) {
	return list[Container](s, containersBucket, "record")
}

// PutKept records kept volumes.
func (s *Store) PutKept(k Kept) error { return s.db.Update(put(keptBucket, k.Name, k)) }

// GetKept returns the kept volumes of name, or an error wrapping errdefs.ErrNotFound.
func (s *Store) GetKept(name string) (Kept, error) {
	return get[Kept](s, keptBucket, name, "kept volumes of")
}

// DeleteKept forgets kept volumes; a missing record is not an error.
func (s *Store) DeleteKept(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(keptBucket).Delete([]byte(name)) })
}

// ListKept returns every kept record, ordered by name.
func (s *Store) ListKept() ([]Kept, error) { return list[Kept](s, keptBucket, "kept record") }
