// Package procmaps parses the header lines of /proc/PID/maps and /proc/PID/smaps: one
// line per mapping, "START-END PERMS OFFSET DEV INODE [PATH]". It allocates nothing: the
// processes that read their own maps (exetrim, pagemerge) do it when idle.
package procmaps

import "bytes"

// Header is one mapping's header line.
type Header struct {
	Start, End uintptr
	Perms      [4]byte // "rwxp": each letter or '-'; p private, s shared
	Offset     uint64  // the offset in the file mapped at Start
	// Path is "" for an anonymous mapping, "[heap]", "[stack]"... for the kernel's; it
	// points into the line parsed.
	Path []byte
}

// Private reports whether the mapping is private (copy-on-write).
func (h Header) Private() bool { return h.Perms[3] == 'p' }

// Writable reports whether the mapping is writable.
func (h Header) Writable() bool { return h.Perms[1] == 'w' }

// Executable reports whether the mapping is executable (code).
func (h Header) Executable() bool { return h.Perms[2] == 'x' }

// Kernels reports whether the mapping is one the kernel names ([stack], [vdso]...),
// but the heap.
func (h Header) Kernels() bool {
	return len(h.Path) > 0 && h.Path[0] == '[' && !bytes.Equal(h.Path, []byte("[heap]"))
}

// Parse parses line as a mapping's header; false for any other line (an smaps field, a
// malformed line).
func Parse(line []byte) (Header, bool) {
	rng, rest, _ := bytes.Cut(line, []byte(" "))
	lo, hi, ok := bytes.Cut(rng, []byte("-"))
	start, ok1 := hex(lo)
	end, ok2 := hex(hi)
	if !ok || !ok1 || !ok2 || end <= start {
		return Header{}, false
	}
	perms, rest, _ := bytes.Cut(rest, []byte(" "))
	if len(perms) != 4 {
		return Header{}, false
	}
	h := Header{Start: start, End: end}
	copy(h.Perms[:], perms)
	for i := range 3 { // offset, device, inode
		var f []byte
		f, rest, _ = bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
		if len(f) == 0 {
			return Header{}, false
		}
		if i == 0 {
			off, ok := hex(f)
			if !ok {
				return Header{}, false
			}
			h.Offset = uint64(off)
		}
	}
	h.Path = bytes.TrimSpace(rest)
	if len(h.Path) == 0 {
		h.Path = nil
	}
	return h, true
}

// hex parses a hexadecimal address.
func hex(b []byte) (uintptr, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uintptr
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
