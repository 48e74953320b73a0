package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"hearth.dev/internal/errdefs"
)

// The notifications bucket holds one bucket per package, its notifications keyed by a
// sequence number shared by all packages (big-endian, so oldest first). It is made on
// the first notification: a database without it has none, so it needs no schema change.
var notificationsBucket = []byte("notifications")

// Notification is one message a package left for the user.
type Notification struct {
	// ID is the sequence number, in decimal.
	ID        string    `json:"id"`
	Package   string    `json:"package"`
	Level     string    `json:"level"`
	Title     string    `json:"title"`
	Message   string    `json:"message,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Dismissed bool      `json:"dismissed,omitempty"`
}

// AddNotification keeps n, giving it the next id, and drops the package's oldest
// notifications beyond keep (dismissed or not).
func (s *Store) AddNotification(n Notification, keep int) (Notification, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(notificationsBucket)
		if err != nil {
			return err
		}
		b, err := top.CreateBucketIfNotExists([]byte(n.Package))
		if err != nil {
			return err
		}
		seq, err := top.NextSequence()
		if err != nil {
			return err
		}
		n.ID = strconv.FormatUint(seq, 10)
		data, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), data); err != nil {
			return err
		}
		// Oldest first: delete from the front until keep are left.
		c := b.Cursor()
		extra := -keep
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			extra++
		}
		for k, _ := c.First(); k != nil && extra > 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			extra--
		}
		return nil
	})
	return n, err
}

// ListNotifications returns the notifications of pkg (every package's when empty),
// newest first; dismissed ones only when all.
func (s *Store) ListNotifications(pkg string, all bool) ([]Notification, error) {
	var out []Notification
	err := s.db.View(func(tx *bolt.Tx) error {
		return eachNotification(tx, pkg, func(_ *bolt.Bucket, _ []byte, n Notification) error {
			if all || !n.Dismissed {
				out = append(out, n)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Notification) int { return cmpID(b.ID, a.ID) })
	return out, err
}

// cmpID orders ids by their number.
func cmpID(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// eachNotification calls fn with each notification of pkg (of every package when empty)
// and the bucket and key that hold it.
func eachNotification(tx *bolt.Tx, pkg string, fn func(b *bolt.Bucket, k []byte, n Notification) error) error {
	top := tx.Bucket(notificationsBucket)
	if top == nil {
		return nil
	}
	visit := func(name []byte) error {
		b := top.Bucket(name)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var n Notification
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("notification %d of %s: %w", binary.BigEndian.Uint64(k), name, err)
			}
			return fn(b, k, n)
		})
	}
	if pkg != "" {
		return visit([]byte(pkg))
	}
	return top.ForEach(func(name, v []byte) error {
		if v != nil {
			return nil // not a bucket
		}
		return visit(name)
	})
}

// DismissNotifications marks notifications dismissed: those of ids, and every one of
// pkg when pkg is given. An id that names no notification (of pkg, when both are given)
// fails the whole call with ErrNotFound naming it, and nothing changes. It returns how
// many were dismissed now (not those dismissed before).
func (s *Store) DismissNotifications(ids []string, pkg string) (int, error) {
	count := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		found := map[string]bool{}
		type hit struct {
			b *bolt.Bucket
			k []byte
			n Notification
		}
		var hits []hit
		err := eachNotification(tx, "", func(b *bolt.Bucket, k []byte, n Notification) error {
			byID := want[n.ID] && (pkg == "" || n.Package == pkg)
			if byID {
				found[n.ID] = true
			}
			if byID || (pkg != "" && len(ids) == 0 && n.Package == pkg) {
				hits = append(hits, hit{b, slices.Clone(k), n})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			if !found[id] {
				if pkg != "" {
					return fmt.Errorf("notification %q of %s: %w (hearthctl notifications ls --all lists them)", id, pkg, errdefs.ErrNotFound)
				}
				return fmt.Errorf("notification %q: %w (hearthctl notifications ls --all lists them)", id, errdefs.ErrNotFound)
			}
		}
		for _, h := range hits {
			if h.n.Dismissed {
				continue
			}
			h.n.Dismissed = true
			data, err := json.Marshal(h.n)
			if err != nil {
				return err
			}
			if err := h.b.Put(h.k, data); err != nil {
				return err
			}
			count++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// DeleteNotifications forgets every notification of pkg.
func (s *Store) DeleteNotifications(pkg string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket(notificationsBucket)
		if top == nil || top.Bucket([]byte(pkg)) == nil {
			return nil
		}
		return top.DeleteBucket([]byte(pkg))
	})
}

// pendingBucket holds data versions set while an operation (install, update, restore)
// is under way, by package id: its commit (CommitPackage) takes them into the record, and
// its end without a commit (a rollback: DeleteJournal, RemovePackage) forgets them, with
// the data they described. Made on first use, like the notifications'.
var pendingBucket = []byte("data-versions-pending")

// DataVersion returns the version of the data in a package's volumes, as the package
// last set it: during an operation, what it set since the operation began, if anything.
func (s *Store) DataVersion(id string) (string, error) {
	var v string
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(pendingBucket); b != nil && tx.Bucket(journalBucket).Get([]byte(id)) != nil {
			if pv := b.Get([]byte(id)); pv != nil {
				v = string(pv)
				return nil
			}
		}
		p, err := operand(tx, id)
		v = p.DataVersion
		return err
	})
	return v, err
}

// SetDataVersion records the version of the data in a package's volumes. While an
// install, update or restore is under way, it waits for that operation's commit (so a
// rollback forgets it with the data it described); otherwise it is set on the installed
// record.
func (s *Store) SetDataVersion(id, version string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		p, err := operand(tx, id)
		if err != nil {
			return err
		}
		if data := tx.Bucket(journalBucket).Get([]byte(id)); data != nil {
			var j Journal
			if err := json.Unmarshal(data, &j); err != nil {
				return fmt.Errorf("operation on %q: %w", id, err)
			}
			if j.To != nil {
				b, err := tx.CreateBucketIfNotExists(pendingBucket)
				if err != nil {
					return err
				}
				return b.Put([]byte(id), []byte(version))
			}
		}
		p.DataVersion = version
		return put(packagesBucket, id, p)(tx)
	})
}

// operand is the package an effect acts on: the installed record, or the one an
// operation under way will commit (an install's).
func operand(tx *bolt.Tx, id string) (Package, error) {
	var p Package
	data := tx.Bucket(packagesBucket).Get([]byte(id))
	if data == nil {
		var j Journal
		if jd := tx.Bucket(journalBucket).Get([]byte(id)); jd != nil && json.Unmarshal(jd, &j) == nil && j.To != nil {
			return *j.To, nil
		}
		return p, fmt.Errorf("package %q: %w", id, errdefs.ErrNotFound)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("package %q: %w", id, err)
	}
	return p, nil
}

// takePending ends an operation's pending data version: into p when committing (p not
// nil), forgotten otherwise.
func takePending(tx *bolt.Tx, id string, p *Package) error {
	b := tx.Bucket(pendingBucket)
	if b == nil {
		return nil
	}
	if v := b.Get([]byte(id)); v != nil && p != nil {
		p.DataVersion = string(v)
	}
	return b.Delete([]byte(id))
}
