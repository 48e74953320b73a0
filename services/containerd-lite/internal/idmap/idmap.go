// Package idmap is the user-namespace mapping every Hearth container gets: ids 0..65535
// inside are 100000..165535 on the host.
package idmap

// Mapping shifts container ids to host ids.
type Mapping struct {
	// HostBase is the host id of the container's id 0.
	HostBase uint32
	// Size is how many ids are mapped.
	Size uint32
}

// Default is the mapping of every container: root inside is uid 100000 outside.
var Default = Mapping{HostBase: 100000, Size: 65536}

// ToHost returns the host id for a container id, and whether it is mapped.
func (m Mapping) ToHost(id uint32) (uint32, bool) {
	if id >= m.Size {
		return 0, false
	}
	return m.HostBase + id, true
}

// RootUID is the host uid of the container's root.
func (m Mapping) RootUID() int { return int(m.HostBase) }
