package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth.dev/internal/errdefs"
)

// Package is an installed package.
type Package struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	// Container runs it (named as the package).
	Container string `json:"container"`
	Manifest  []byte `json:"manifest"`
	// Images maps the manifest's image names to the digests the package brought; each is
	// stored under the name <id>/<image>:<version>, and goes with that name.
	Images map[string]string `json:"images"`
	// Signer is the key id that signed the file; Trusted whether the host trusted it.
	Signer      string    `json:"signer,omitempty"`
	Trusted     bool      `json:"trusted"`
	InstalledAt time.Time `json:"installed_at"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
	// DataVersion is the version of the data in its volumes, as the package set it
	// (data_version.set), such as after a migration; kept across updates and backed up.
	DataVersion string `json:"data_version,omitempty"`
}

// Journal is a package operation under way: what it did so far, so that the next start
// can finish it or undo it.
type Journal struct {
	// Op is install, update, uninstall or restore; Step the last step done.
	Op      string    `json:"op"`
	ID      string    `json:"id"`
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	// Staging holds the verified package file's contents.
	Staging string `json:"staging,omitempty"`
	// From is the package as it was (update, uninstall, restore); To as it will be.
	From *Package `json:"from,omitempty"`
	To   *Package `json:"to,omitempty"`
	// Previous is the container's record before an update replaced it.
	Previous *Container `json:"previous,omitempty"`
	// KeptVolumes says the container took volumes a former install left.
	KeptVolumes bool `json:"kept_volumes,omitempty"`
	// Snapshot is where an update copied the volumes.
	Snapshot string `json:"snapshot,omitempty"`
	// Failure is why the operation is being undone; empty while it goes forward.
	Failure string `json:"failure,omitempty"`
}

func put(b []byte, key string, v any) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return tx.Bucket(b).Put([]byte(key), data)
	}
}

// PutPackage stores an installed package.
func (s *Store) PutPackage(p Package) error { return s.db.Update(put(packagesBucket, p.ID, p)) }

// PutJournal records an operation's progress; it is synced to disk before it returns.
func (s *Store) PutJournal(j Journal) error { return s.db.Update(put(journalBucket, j.ID, j)) }

// CommitPackage stores the package and ends its journal in one transaction, with the
// data version the package set during the operation, if it did.
func (s *Store) CommitPackage(p Package) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := takePending(tx, p.ID, &p); err != nil {
			return err
		}
		if err := put(packagesBucket, p.ID, p)(tx); err != nil {
			return err
		}
		return tx.Bucket(journalBucket).Delete([]byte(p.ID))
	})
}

// RemovePackage forgets a package and ends its journal in one transaction.
func (s *Store) RemovePackage(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := takePending(tx, id, nil); err != nil {
			return err
		}
		if err := tx.Bucket(packagesBucket).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(journalBucket).Delete([]byte(id))
	})
}

// DeleteJournal ends an operation's journal.
func (s *Store) DeleteJournal(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := takePending(tx, id, nil); err != nil {
			return err
		}
		return tx.Bucket(journalBucket).Delete([]byte(id))
	})
}

func get[T any](s *Store, b []byte, key, what string) (T, error) {
	var v T
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(b).Get([]byte(key))
		if data == nil {
			return fmt.Errorf("%s %q: %w", what, key, errdefs.ErrNotFound)
		}
		return json.Unmarshal(data, &v)
	})
	return v, err
}

func list[T any](s *Store, b []byte, what string) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(b).ForEach(func(k, data []byte) error {
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("%s %q: %w", what, k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// GetPackage returns an installed package, or an error wrapping errdefs.ErrNotFound.
func (s *Store) GetPackage(id string) (Package, error) {
	return get[Package](s, packagesBucket, id, "package")
}

// ListPackages returns the installed packages, ordered by id.
func (s *Store) ListPackages() ([]Package, error) { return list[Package](s, packagesBucket, "package") }

// GetJournal returns the operation under way on a package, or ErrNotFound.
func (s *Store) GetJournal(id string) (Journal, error) {
	return get[Journal](s, journalBucket, id, "operation on")
}

// ListJournal returns every operation under way.
func (s *Store) ListJournal() ([]Journal, error) {
	return list[Journal](s, journalBucket, "operation on")
}

// PackagesUsing lists the packages whose images include digest.
func (s *Store) PackagesUsing(digest string) ([]string, error) {
	ps, err := s.ListPackages()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		for _, d := range p.Images {
			if d == digest {
				out = append(out, p.ID)
				break
			}
		}
	}
	return out, nil
}
