package budget

import (
	"encoding/binary"
	"fmt"

	"hearth.dev/internal/errdefs"
)

// guard follows the HTTP/2 frames a client sends and stops a connection whose DATA would
// make the server hold far more than the request it stands for. gRPC keeps each received
// DATA frame in a buffer of its own until the call reads it: a request sent one byte a
// frame pins ~50 bytes of heap per byte (measured), and a padded frame keeps its padding. Calls on a budgeted socket send
// one request message, so each stream may carry at most one message's bytes
// (MaxRecvMsgSize plus its 5-byte prefix) and at most MaxSmallFrames small or padded
// frames before it ends.
//
// It reads frame headers only; the payloads and HPACK are gRPC's to decode.
type guard struct {
	maxBytes uint32
	maxSmall int
	maxOpen  int

	preface int     // bytes of the client preface still to pass
	hdr     [9]byte // the frame header being read
	nhdr    int
	skip    uint32 // payload bytes of the current frame still to pass

	// open holds the streams that sent DATA and have not ended.
	open map[uint32]streamUse
}

type streamUse struct {
	bytes uint32
	small int
}

// The client preface: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
const prefaceLen = 24

// Frame types and flags (RFC 9113, section 6).
const (
	frameData      = 0x0
	frameHeaders   = 0x1
	frameRSTStream = 0x3

	flagEndStream = 0x1
	flagPadded    = 0x8
)

func (g *guard) init(l Limits) {
	g.maxBytes = uint32(l.MaxRecvMsgSize) + 5
	g.maxSmall = l.MaxSmallFrames
	// A well-behaved client ends what it sends on a stream in the frame that carries it,
	// or soon after; only streams left open count.
	g.maxOpen = 4*int(l.StreamsPerConn) + 16
	g.preface = prefaceLen
}

// scan follows p, the next bytes from the client.
func (g *guard) scan(p []byte) error {
	for len(p) > 0 {
		switch {
		case g.preface > 0:
			n := min(g.preface, len(p))
			g.preface -= n
			p = p[n:]
		case g.skip > 0:
			n := min(int(g.skip), len(p))
			g.skip -= uint32(n)
			p = p[n:]
		default:
			n := copy(g.hdr[g.nhdr:], p)
			g.nhdr += n
			p = p[n:]
			if g.nhdr < len(g.hdr) {
				return nil
			}
			g.nhdr = 0
			length := uint32(g.hdr[0])<<16 | uint32(g.hdr[1])<<8 | uint32(g.hdr[2])
			id := binary.BigEndian.Uint32(g.hdr[5:]) & 0x7fffffff
			g.skip = length
			if err := g.frame(g.hdr[3], g.hdr[4], id, length); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *guard) frame(typ, flags byte, id, length uint32) error {
	ends := flags&flagEndStream != 0
	switch typ {
	case frameData:
		u, tracked := g.open[id]
		u.bytes += length
		if length > 0 && !ends && (length <= SmallFrameSize || flags&flagPadded != 0) {
			u.small++
		}
		switch {
		case u.bytes > g.maxBytes:
			return fmt.Errorf("%w: stream %d sent %d bytes, more than one request (%d bytes): calls on this socket send one request message",
				errdefs.ErrResourceExhausted, id, u.bytes, g.maxBytes)
		case u.small > g.maxSmall:
			return fmt.Errorf("%w: stream %d sent more than %d DATA frames under %d bytes or padded: send a request in one frame",
				errdefs.ErrResourceExhausted, id, g.maxSmall, SmallFrameSize)
		case ends:
			delete(g.open, id)
		case !tracked && len(g.open) >= g.maxOpen:
			return fmt.Errorf("%w: more than %d streams sent DATA without ending", errdefs.ErrResourceExhausted, g.maxOpen)
		default:
			if g.open == nil {
				g.open = make(map[uint32]streamUse)
			}
			g.open[id] = u
		}
	case frameHeaders:
		if ends {
			delete(g.open, id)
		}
	case frameRSTStream:
		delete(g.open, id)
	}
	return nil
}
