package launch

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"hearth.dev/internal/errdefs"
)

// Identity is who a daemon runs as.
type Identity struct {
	UID, GID uint32
	Groups   []uint32
	Home     string
}

// ResolveUser turns "name", "uid", "name:group" or "uid:gid" into ids, with the image's
// /etc/passwd and /etc/group (either may be nil: then only numbers work). "" is root.
func ResolveUser(spec string, passwd, group io.Reader) (Identity, error) {
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	users := parseDB(passwd)
	groups := parseDB(group)
	id := Identity{Home: "/"}
	found := false
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		id.UID, id.GID = uint32(n), uint32(n)
		for _, u := range users {
			if len(u) >= 6 && u[2] == userPart {
				userPart, found = u[0], true
				id.GID = atou(u[3], id.GID)
				id.Home = u[5]
				break
			}
		}
		if !found && !hasGroup {
			// A uid alone with no passwd entry: its group is the same number.
			id.GID = uint32(n)
		}
	} else {
		for _, u := range users {
			if len(u) >= 6 && u[0] == userPart {
				id.UID, id.GID, id.Home, found = atou(u[2], 0), atou(u[3], 0), u[5], true
				break
			}
		}
		if !found {
			return id, fmt.Errorf("user %q is not in the image's /etc/passwd: give a numeric uid or a user the image has: %w", userPart, errdefs.ErrInvalidArgument)
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			id.GID = uint32(n)
		} else {
			ok := false
			for _, g := range groups {
				if len(g) >= 3 && g[0] == groupPart {
					id.GID, ok = atou(g[2], 0), true
					break
				}
			}
			if !ok {
				return id, fmt.Errorf("group %q is not in the image's /etc/group: give a numeric gid or a group the image has: %w", groupPart, errdefs.ErrInvalidArgument)
			}
		}
	}
	id.Groups = []uint32{id.GID}
	if found {
		for _, g := range groups {
			if len(g) < 4 {
				continue
			}
			for _, member := range strings.Split(g[3], ",") {
				if member == userPart {
					if gid := atou(g[2], id.GID); gid != id.GID {
						id.Groups = append(id.Groups, gid)
					}
				}
			}
		}
	}
	return id, nil
}

func atou(s string, def uint32) uint32 {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return def
	}
	return uint32(n)
}

func parseDB(r io.Reader) [][]string {
	if r == nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(r, 4<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
