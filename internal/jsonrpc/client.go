package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Client calls methods on one connection, one call at a time.
type Client struct {
	mu   sync.Mutex
	nc   net.Conn
	br   *bufio.Reader
	next int64
	buf  []byte
}

// Dial connects to a JSON-RPC server on the Unix socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return NewClient(nc), nil
}

// NewClient returns a client on an open connection; Close closes it.
func NewClient(nc net.Conn) *Client {
	return &Client{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Call calls method with params (encoded with encoding/json; nil sends none) and decodes
// the result into result (when not nil). A JSON-RPC error comes back as an *Error, whose
// Unwrap gives its error kind, so errors.Is(err, errkind.NotFound) works. ctx's deadline
// bounds the call; when ctx ends first the connection is closed.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	raw, err := c.CallRaw(ctx, method, params)
	if err != nil || result == nil {
		return err
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("%s: decode the result: %w", method, err)
	}
	return nil
}

// CallRaw is Call returning the result as sent.
func (c *Client) CallRaw(ctx context.Context, method string, params any) (json.RawMessage, error) {
	var p json.RawMessage
	if params != nil {
		var err error
		if p, err = json.Marshal(params); err != nil {
			return nil, fmt.Errorf("%s: encode the params: %w", method, err)
		}
		if len(p) > 0 && p[0] != '{' && p[0] != '[' && !bytes.Equal(p, nullID) {
			return nil, fmt.Errorf("%s: params must encode as an object or an array, not %s", method, JSONType(p))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := strconv.FormatInt(c.next, 10)
	line := append(c.buf[:0], `{"jsonrpc":"2.0","id":`...)
	line = append(line, id...)
	line = append(line, `,"method":`...)
	m, _ := json.Marshal(method)
	line = append(line, m...)
	if len(p) > 0 {
		line = append(line, `,"params":`...)
		line = append(line, p...)
	}
	line = append(line, '}', '\n')
	c.buf = line
	if len(line) > MaxLineBytes+1 {
		return nil, fmt.Errorf("%s: the request is %d bytes, more than a line holds (%d)", method, len(line)-1, MaxLineBytes)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	} else {
		c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(past) })
	defer stop()
	if _, err := c.nc.Write(line); err != nil {
		return nil, c.ioError(ctx, method, err)
	}
	for {
		resp, err := c.readLine()
		if err != nil {
			return nil, c.ioError(ctx, method, err)
		}
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *Error          `json:"error"`
		}
		if err := json.Unmarshal(resp, &r); err != nil {
			return nil, fmt.Errorf("%s: the server's answer is not a response: %w", method, err)
		}
		if string(r.ID) != id && !(r.Error != nil && (r.ID == nil || bytes.Equal(r.ID, nullID))) {
			continue // an answer to an earlier, abandoned call
		}
		if r.Error != nil {
			return nil, r.Error
		}
		if r.Result == nil {
			return nil, fmt.Errorf("%s: the server's answer has neither result nor error", method)
		}
		return r.Result, nil
	}
}

func (c *Client) ioError(ctx context.Context, method string, err error) error {
	c.nc.Close() // a half-written or half-read line leaves the connection unusable
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl.Add(-time.Millisecond)) {
		return fmt.Errorf("%s: %w", method, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", method, err)
}

func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(line)+len(frag) > MaxLineBytes+1 {
			return nil, errors.New("the server's answer is longer than a line may be")
		}
		line = append(line, frag...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// Call dials the socket at path, makes one call, and closes the connection.
func Call(ctx context.Context, path, method string, params, result any) error {
	c, err := Dial(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Call(ctx, method, params, result)
}
