package peercred

import (
	"errors"
	"fmt"
)

// ErrDenied is returned by a Policy that refuses a peer.
var ErrDenied = errors.New("permission denied")

// Policy decides whether a peer may call. It returns nil to allow, or an error wrapping
// ErrDenied that says why not.
type Policy func(Cred) error

// RootOrGroup allows root and members of group gid; a negative gid allows root only.
func RootOrGroup(gid int) Policy {
	return func(c Cred) error {
		if c.UID == 0 || (gid >= 0 && c.InGroup(uint32(gid))) {
			return nil
		}
		if gid < 0 {
			return fmt.Errorf("caller %s is not root: %w", c, ErrDenied)
		}
		return fmt.Errorf("caller %s is neither root nor in group %d: %w", c, gid, ErrDenied)
	}
}

// UIDs allows exactly the given user ids.
func UIDs(uids ...uint32) Policy {
	return func(c Cred) error {
		for _, u := range uids {
			if c.UID == u {
				return nil
			}
		}
		return fmt.Errorf("caller %s may not use this socket (allowed uids %v): %w", c, uids, ErrDenied)
	}
}

// Any allows a peer that one of the policies allows.
func Any(policies ...Policy) Policy {
	return func(c Cred) error {
		var first error
		for _, p := range policies {
			err := p(c)
			if err == nil {
				return nil
			}
			if first == nil {
				first = err
			}
		}
		if first == nil {
			first = fmt.Errorf("caller %s: no policy allows it: %w", c, ErrDenied)
		}
		return first
	}
}

// Or allows a peer that p or q allows.
func (p Policy) Or(q Policy) Policy { return Any(p, q) }
