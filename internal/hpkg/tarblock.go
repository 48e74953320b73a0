package hpkg

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// blockSize is the tar block: headers are one block, bodies are padded to whole blocks.
const blockSize = 512

// MaxEntrySize is the largest entry a package holds: the ustar size field's 11 octal
// digits.
const MaxEntrySize = 1<<33 - 1

// Offsets of the ustar header fields a package uses.
const (
	offName     = 0
	offMode     = 100
	offUID      = 108
	offGID      = 116
	offSize     = 124
	offMtime    = 136
	offChksum   = 148
	offType     = 156
	offMagic    = 257
	offVersion  = 263
	offDevmajor = 329
	offDevminor = 337
	offPrefix   = 345
)

// header returns the one canonical ustar header of an entry: the name (split into
// prefix and name when longer than 100 bytes), mode 0644 for files and 0755 for
// directories, uid, gid and mtime 0, empty owner names, type '0' or '5'. Every header of
// a package is exactly this, so a verifier compares whole blocks.
func header(path string, typ EntryType, size int64) ([]byte, error) {
	name := path
	mode, flag := "0000644", byte('0')
	if typ == TypeDir {
		name += "/"
		mode, flag = "0000755", '5'
		size = 0
	}
	if size < 0 || size > MaxEntrySize {
		return nil, fmt.Errorf("%s: size %d is over the format's %d bytes", path, size, int64(MaxEntrySize))
	}
	prefix, base, ok := splitName(name)
	if !ok {
		return nil, fmt.Errorf("%s: path too long for a package (at most 100 bytes after a split at a '/' within the first 155)", path)
	}
	b := make([]byte, blockSize)
	copy(b[offName:], base)
	copy(b[offMode:], mode+"\x00")
	copy(b[offUID:], "0000000\x00")
	copy(b[offGID:], "0000000\x00")
	copy(b[offSize:], fmt.Sprintf("%011o\x00", size))
	copy(b[offMtime:], "00000000000\x00")
	b[offType] = flag
	copy(b[offMagic:], "ustar\x00")
	copy(b[offVersion:], "00")
	copy(b[offDevmajor:], "0000000\x00")
	copy(b[offDevminor:], "0000000\x00")
	copy(b[offPrefix:], prefix)
	copy(b[offChksum:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[offChksum:], fmt.Sprintf("%06o\x00 ", sum))
	return b, nil
}

// splitName splits a name for ustar: whole when it fits the 100-byte name field,
// otherwise at the leftmost '/' that leaves at most 100 bytes after it and at most 155
// before it.
func splitName(name string) (prefix, base string, ok bool) {
	if len(name) <= 100 {
		return "", name, true
	}
	for i := 0; i < len(name) && i <= 155; i++ {
		if name[i] == '/' && len(name)-i-1 <= 100 && i+1 < len(name) {
			return name[:i], name[i+1:], true
		}
	}
	return "", "", false
}

// headerName reads the entry name of a header block (for messages only: headers are
// compared whole).
func headerName(b []byte) string {
	name := cstring(b[offName : offName+100])
	if p := cstring(b[offPrefix : offPrefix+155]); p != "" {
		name = p + "/" + name
	}
	return strings.TrimSuffix(name, "/")
}

// headerSize reads the size field of a header block.
func headerSize(b []byte) (int64, bool) {
	s := strings.TrimRight(cstring(b[offSize:offSize+12]), " ")
	n, err := strconv.ParseInt(s, 8, 64)
	return n, err == nil && n >= 0
}

// headerKind names the type of a header block for messages.
func headerKind(b []byte) string {
	switch b[offType] {
	case '0', 0:
		return "regular file"
	case '1':
		return "hard link"
	case '2':
		return "symbolic link"
	case '3':
		return "character device"
	case '4':
		return "block device"
	case '5':
		return "directory"
	case '6':
		return "FIFO"
	case 'x', 'g':
		return "PAX extended header"
	case 'L', 'K':
		return "GNU long name"
	}
	return fmt.Sprintf("entry of type %q", b[offType])
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// padding is how many zero bytes follow a body of size n.
func padding(n int64) int64 {
	return (blockSize - n%blockSize) % blockSize
}
