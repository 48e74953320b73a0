// Command hearth-effect calls one of the host's effects from a package's script, through
// guestd's JSON-RPC socket ($HEARTH_EFFECTS_SOCKET, else /media/hearth/rpc/effects.sock).
// It is in every subcontainer at /usr/local/bin/hearth-effect.
//
//	hearth-effect METHOD [PARAMS]
//
// PARAMS is a JSON object ('{"name":"x"}'); "-" reads it from standard input; none sends
// none. The result is printed as one line of JSON. On an error it prints the message
// and, on a second line, the error's data (such as {"param":"port","problem":"..."} or
// {"kind":"not_found"}) to standard error, and exits with 1; a usage error exits with 2.
// docs/effects.md lists the effects.
//
// It is static and links neither gRPC nor protobuf (about 2.7 MB, stripped).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"hearth.dev/internal/jsonrpc"
	"hearth.dev/services/guestd/internal/effectsock"
)

const defaultSocket = effectsock.Path

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hearth-effect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := defaultSocket
	if s := os.Getenv("HEARTH_EFFECTS_SOCKET"); s != "" {
		socket = s
	}
	fs.StringVar(&socket, "socket", socket, "guestd's effects socket")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: wait as long as the effect takes)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: hearth-effect [flags] METHOD [PARAMS | -]\n\n"+
			"Calls one of the host's effects (see docs/effects.md) and prints its result as JSON.\n"+
			"PARAMS is a JSON object, such as '{\"name\":\"x\"}'; - reads it from standard input.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	method := fs.Arg(0)
	var params json.RawMessage
	if fs.NArg() == 2 {
		text := []byte(fs.Arg(1))
		if fs.Arg(1) == "-" {
			var err error
			if text, err = io.ReadAll(io.LimitReader(stdin, jsonrpc.MaxLineBytes+1)); err != nil {
				fmt.Fprintf(stderr, "hearth-effect: read the params from standard input: %v\n", err)
				return 2
			}
		}
		if !json.Valid(text) {
			var v any
			err := json.Unmarshal(text, &v)
			fmt.Fprintf(stderr, "hearth-effect: the params are not JSON (%v): give an object, such as '{\"name\":\"x\"}'\n", err)
			return 2
		}
		params = text
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var p any
	if params != nil {
		p = params
	}
	c, err := jsonrpc.Dial(ctx, socket)
	if err != nil {
		fmt.Fprintf(stderr, "hearth-effect: connect to guestd's effects socket: %v (is this inside a Hearth container? set HEARTH_EFFECTS_SOCKET or -socket)\n", err)
		return 1
	}
	defer c.Close()
	res, err := c.CallRaw(ctx, method, p)
	if err != nil {
		var e *jsonrpc.Error
		if errors.As(err, &e) {
			fmt.Fprintf(stderr, "hearth-effect: %s: %s (code %d)\n", method, e.Message, e.Code)
			if len(e.Data) > 0 {
				fmt.Fprintf(stderr, "%s\n", e.Data)
			}
		} else {
			fmt.Fprintf(stderr, "hearth-effect: %v\n", err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", res)
	return 0
}
