package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// bodyMode is how a message's body is delimited (RFC 9112 6.3).
type bodyMode uint8

const (
	bodyNone    bodyMode = iota
	bodyLength           // Content-Length
	bodyChunked          // Transfer-Encoding: chunked
	bodyClose            // until the connection closes (responses only)
)

// maxChunkLine caps a chunk's size line (with its extensions).
const maxChunkLine = 4096

// bodyReader reads a body off a bufio.Reader, handing out the bytes in the reader's
// own buffer (next, then consume): no copy on the way through. A chunked body's
// trailer fields are kept once it has ended.
type bodyReader struct {
	br     *bufio.Reader
	mode   bodyMode
	remain int64 // bodyLength: bytes left; bodyChunked: left in the current chunk
	// chunked state
	crlf       bool // the current chunk's data has been read: CRLF next
	trailerMax int  // cap on the trailer section
	trailerBuf []byte
	trailers   []field
	err        error
}

// reset starts a body of the given mode; length is the bodyLength's.
func (b *bodyReader) reset(br *bufio.Reader, mode bodyMode, length int64, trailerMax int) {
	b.br, b.mode, b.remain, b.crlf, b.err = br, mode, length, false, nil
	b.trailers = b.trailers[:0]
	b.trailerMax = trailerMax
	if mode == bodyChunked {
		b.remain = 0
	}
}

// done reports whether the body has been read to its end.
func (b *bodyReader) done() bool { return b.err == io.EOF }

// next returns the body's next bytes, in the reader's buffer (valid until the next
// call on b or its reader), or io.EOF at its end. It reads only when the buffer has
// none of the body.
func (b *bodyReader) next() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	switch b.mode {
	case bodyNone:
		b.err = io.EOF
		return nil, io.EOF
	case bodyLength:
		if b.remain == 0 {
			b.err = io.EOF
			return nil, io.EOF
		}
	case bodyChunked:
		if b.remain == 0 {
			if err := b.nextChunk(); err != nil {
				b.err = err
				return nil, err
			}
		}
	}
	n := b.br.Buffered()
	if n == 0 {
		if _, err := b.br.Peek(1); err != nil {
			if err == io.EOF && b.mode != bodyClose {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return nil, err
		}
		n = b.br.Buffered()
	}
	if b.mode != bodyClose && int64(n) > b.remain {
		n = int(b.remain)
	}
	p, _ := b.br.Peek(n)
	return p, nil
}

// consume takes n bytes of what next returned.
func (b *bodyReader) consume(n int) {
	_, _ = b.br.Discard(n)
	if b.mode != bodyClose {
		b.remain -= int64(n)
		if b.mode == bodyChunked && b.remain == 0 {
			b.crlf = true
		}
	}
}

// nextChunk reads up to the next chunk's data: the previous chunk's CRLF and the size
// line; after the last chunk, the trailer section, and then it returns io.EOF.
func (b *bodyReader) nextChunk() error {
	if b.crlf {
		var crlf [2]byte
		if _, err := io.ReadFull(b.br, crlf[:]); err != nil {
			return eofUnexpected(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
		}
		b.crlf = false
	}
	line, err := b.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return fmt.Errorf("%w: chunk size line too long", errMalformed)
	}
	if err != nil {
		return eofUnexpected(err)
	}
	// RFC 9112 7.1: the size line ends with CRLF. A bare LF is refused, as other
	// readers of chunked bodies refuse it, so that none can be told a body ends
	// elsewhere than where we think it does.
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return fmt.Errorf("%w: chunk size line ends with a bare LF", errMalformed)
	}
	line = line[:len(line)-2]
	// A bare CR or another control character inside the line (in an extension, too)
	// is refused: readers that end the line at a lone CR would see another body.
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: control character %#x in a chunk size line", errMalformed, c)
		}
	}
	// Whitespace may end the line, and nowhere else around the size: RFC 9112 allows
	// it before a ";" (BWS), but other readers (Go's among them) refuse that, and a
	// proxy must not pass on what the server behind it would read otherwise.
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // chunk extensions: ignored
	}
	if len(line) == 0 || len(line) > 15 {
		return fmt.Errorf("%w: chunk size %q", errMalformed, clip(line))
	}
	var size int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return fmt.Errorf("%w: chunk size %q", errMalformed, clip(line))
		}
		size = size<<4 | int64(c)
	}
	if size > 0 {
		b.remain = size
		return nil
	}
	// The last chunk: trailer fields up to an empty line.
	head, err := readHead(b.br, b.trailerBuf, b.trailerMax)
	b.trailerBuf = head[:0]
	if err != nil {
		return eofUnexpected(err)
	}
	if b.trailers, err = parseFields(head, b.trailers); err != nil {
		return err
	}
	return io.EOF
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
