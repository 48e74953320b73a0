package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth.dev/internal/errdefs"
)

// Image is a stored image: one unpacked root file system per digest.
type Image struct {
	// Digest is the image's config digest ("sha256:..."), the same whatever format it came in.
	Digest    string      `json:"digest"`
	Size      int64       `json:"size"`
	CreatedAt time.Time   `json:"created_at"`
	Config    ImageConfig `json:"config"`
	// Layers are the diff ids of the layers it was unpacked from.
	Layers []string `json:"layers"`
}

// ImageConfig is what the image says about running it.
type ImageConfig struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	User         string            `json:"user,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// PutImage stores an image record, and points name (if not empty) at it, in one transaction.
func (s *Store) PutImage(img Image, name string) error {
	data, err := json.Marshal(img)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(imagesBucket).Put([]byte(img.Digest), data); err != nil {
			return err
		}
		if name != "" {
			return tx.Bucket(namesBucket).Put([]byte(name), []byte(img.Digest))
		}
		return nil
	})
}

// GetImage returns the image with the digest, or an error wrapping errdefs.ErrNotFound.
func (s *Store) GetImage(digest string) (img Image, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(imagesBucket).Get([]byte(digest))
		if v == nil {
			return fmt.Errorf("image %s: %w", digest, errdefs.ErrNotFound)
		}
		return json.Unmarshal(v, &img)
	})
	return img, err
}

// ListImages returns every image record.
func (s *Store) ListImages() ([]Image, error) {
	var out []Image
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(imagesBucket).ForEach(func(k, v []byte) error {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("image record %q: %w", k, err)
			}
			out = append(out, img)
			return nil
		})
	})
	return out, err
}

// Names returns every image name and the digest it points at.
func (s *Store) Names() (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(namesBucket).ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	return out, err
}

// NamesOf returns the names pointing at digest, sorted.
func (s *Store) NamesOf(digest string) ([]string, error) {
	all, err := s.Names()
	if err != nil {
		return nil, err
	}
	var out []string
	for n, d := range all {
		if d == digest {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// SetName points name at digest, which must exist.
func (s *Store) SetName(name, digest string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(imagesBucket).Get([]byte(digest)) == nil {
			return fmt.Errorf("image %s: %w", digest, errdefs.ErrNotFound)
		}
		return tx.Bucket(namesBucket).Put([]byte(name), []byte(digest))
	})
}

// DeleteName removes a name.
func (s *Store) DeleteName(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(namesBucket).Delete([]byte(name)) })
}

// DeleteImage removes an image record and every name pointing at it.
func (s *Store) DeleteImage(digest string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		names := tx.Bucket(namesBucket)
		var drop [][]byte
		if err := names.ForEach(func(k, v []byte) error {
			if string(v) == digest {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range drop {
			if err := names.Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket(imagesBucket).Delete([]byte(digest))
	})
}

// ContainersUsing returns the names of the containers whose image map holds digest.
func (s *Store) ContainersUsing(digest string) ([]string, error) {
	recs, err := s.ListContainers()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range recs {
		for _, d := range c.Images {
			if d == digest {
				out = append(out, c.Name)
				break
			}
		}
	}
	return out, nil
}
