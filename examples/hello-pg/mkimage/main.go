// Command mkimage writes hello-pg's app image as an OCI layout: busybox-static, the app
// binary at /app/server, and an "app" user. The demo imports it with hearthctl.
//
//	go run ./examples/hello-pg/mkimage -app BIN -out DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"hearth.dev/examples/hello-pg/appimage"
)

func main() {
	app := flag.String("app", "", "the app binary (static)")
	out := flag.String("out", "", "directory to write the OCI layout to (must not exist)")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox")
	flag.Parse()
	if *app == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*app, *out, *busybox); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(app, out, busybox string) error { return appimage.Write(app, out, busybox) }
