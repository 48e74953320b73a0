// Command hearthctl drives Hearth from the user's shell.
package main

import (
	"os"

	"hearth.dev/cmd/hearthctl/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
