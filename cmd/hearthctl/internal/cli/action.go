package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"hearth.dev/internal/manifest"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// actionTimeout bounds action run when --timeout is not given: an action may take up to
// its manifest's timeout (10 minutes by default), and a stopped package is started and
// stopped around it.
const actionTimeout = 15 * time.Minute

func actionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "action",
		Short: "List and run a package's actions (reset a password, run a check...)",
		Long: `A package's actions are commands its manifest offers to run on demand, such as resetting
an admin password. Each takes typed input fields and returns a message and values.`,
	}
	ls := &cobra.Command{
		Use:   "ls PKG",
		Short: "List a package's actions, their input fields and whether each can run now",
		Long: `List a package's actions: the id to give action run, when it is offered (while the package
runs, while it is stopped, or any time), whether it can run now (and why not), and its
input fields, written NAME:TYPE, with * for a required field, the bounds in brackets
(an integer's value, a string's length), an enum's values, and =DEFAULT.`,
		Example: `  hearthctl action ls hello-pg
  hearthctl -o json action ls hello-pg`,
		Args: cobra.ExactArgs(1),
		RunE: call(g, "containerd-lite", containerv1.NewPackageServiceClient, func(ctx context.Context, cl containerv1.PackageServiceClient, args []string) error {
			resp, err := cl.ListActions(ctx, &containerv1.ListActionsRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			if len(resp.GetActions()) == 0 {
				_, err := fmt.Fprintf(g.stdout, "%s has no actions\n", args[0])
				return err
			}
			var rows [][]string
			for _, a := range resp.GetActions() {
				avail := "yes"
				if !a.GetAvailable() {
					avail = "no: " + a.GetReason()
				}
				rows = append(rows, []string{a.GetId(), a.GetName(), a.GetWhen(), avail, inputSummary(a.GetInput())})
			}
			return g.table([]string{"ID", "NAME", "WHEN", "AVAILABLE", "INPUT"}, rows)
		}),
	}
	var pairs []string
	var file string
	run := &cobra.Command{
		Use:   "run PKG ID [--input KEY=VALUE]... [--input-file FILE.json]",
		Short: "Run one of a package's actions and show what it returns",
		Long: `Run one of a package's actions with its input, and print its message and values.

Input: give each field as --input KEY=VALUE (repeat it for more fields), or all of them
as one JSON object in a file with --input-file FILE.json ('-' reads standard input);
--input pairs given with a file override its fields. A value is read as its field's
type says (see action ls):
  integer   decimal digits: --input length=24
  boolean   true or false (yes/no, 1/0, on/off): --input notify=false
  string, enum, secret
            the text after the first '=', as it is: --input 'note=a b=c'
Fields left out take their defaults. A required secret left out is asked for on the
terminal, without echo; prefer that (or --input-file) to a secret on the command line,
which other users of this machine can see while it runs.

The host checks the input against the action's fields before anything runs: an unknown
field, a missing required one, a wrong type, a value out of bounds, not matching its
pattern or not among an enum's values is refused with a message naming the field.

Values marked secret (a generated password, say) are shown this once: copy them now.`,
		Example: `  hearthctl action run hello-pg reset-password --input length=24
  hearthctl action run hello-pg check-data
  echo '{"length": 32}' | hearthctl action run hello-pg reset-password --input-file -`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flag("timeout"); f != nil && !f.Changed {
				g.timeout = actionTimeout
			}
			return call(g, "containerd-lite", containerv1.NewPackageServiceClient, func(ctx context.Context, cl containerv1.PackageServiceClient, args []string) error {
				return g.runAction(ctx, cl, args[0], args[1], pairs, file)
			})(cmd, args)
		},
	}
	run.Flags().StringArrayVar(&pairs, "input", nil, "an input field, KEY=VALUE (repeat for more)")
	run.Flags().StringVar(&file, "input-file", "", "the input as one JSON object in a file ('-' for standard input)")
	cmd.AddCommand(ls, run)
	return cmd
}

// runAction builds the input from the file and the pairs (typed by the action's
// fields), runs the action and prints its result.
func (g *globals) runAction(ctx context.Context, cl containerv1.PackageServiceClient, pkg, id string, pairs []string, file string) error {
	list, err := cl.ListActions(ctx, &containerv1.ListActionsRequest{Id: pkg})
	if err != nil {
		return err
	}
	var action *hostv1.ActionInfo
	var ids []string
	for _, a := range list.GetActions() {
		ids = append(ids, a.GetId())
		if a.GetId() == id {
			action = a
		}
	}
	if action == nil {
		// The host says which actions there are (NotFound), before anything runs.
		_, err := cl.RunAction(ctx, &containerv1.RunActionRequest{Id: pkg, Action: id, InputJson: "{}"})
		if err == nil {
			err = fmt.Errorf("%s has no action %q (its actions: %s), yet it ran", pkg, id, strings.Join(ids, ", "))
		}
		return err
	}
	fields := map[string]manifest.Field{}
	for _, f := range action.GetInput() {
		fields[f.GetName()] = manifest.Field{Type: f.GetType(), Min: f.Min, Max: f.Max, Pattern: f.GetPattern(), Values: f.GetValues()}
	}
	input := map[string]any{}
	if file != "" {
		var data []byte
		if file == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, manifest.MaxInputBytes+1))
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return fmt.Errorf("--input-file: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&input); err != nil {
			return fmt.Errorf("--input-file %s: give one JSON object, such as {\"length\": 24}: %w", file, err)
		}
		if input == nil {
			input = map[string]any{}
		}
	}
	given, err := manifest.ParseInputPairs(fields, pairs)
	if err != nil {
		return fmt.Errorf("%w (the fields: hearthctl action ls %s)", err, pkg)
	}
	maps.Copy(input, given)
	if err := g.askSecrets(action, input, file == "-"); err != nil {
		return err
	}
	data, err := json.Marshal(input)
	if err != nil {
		return err
	}
	resp, err := cl.RunAction(ctx, &containerv1.RunActionRequest{Id: pkg, Action: id, InputJson: string(data)})
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(resp)
	}
	if resp.GetMessage() != "" {
		fmt.Fprintln(g.stdout, resp.GetMessage())
	}
	var kv []string
	secrets := false
	for _, v := range resp.GetValues() {
		name := v.GetName()
		if v.GetSecret() {
			name += " (secret, shown once)"
			secrets = true
		}
		kv = append(kv, name, v.GetValue())
	}
	if err := g.fields(kv...); err != nil {
		return err
	}
	if secrets {
		fmt.Fprintln(g.stderr, "hearthctl: the values marked secret are not kept anywhere: copy them now")
	}
	return nil
}

// askSecrets asks on the terminal for the required secrets the input lacks.
func (g *globals) askSecrets(a *hostv1.ActionInfo, input map[string]any, stdinUsed bool) error {
	for _, f := range a.GetInput() {
		if _, ok := input[f.GetName()]; ok || !f.GetRequired() || f.GetType() != manifest.TypeSecret {
			continue
		}
		if stdinUsed || !term.IsTerminal(int(os.Stdin.Fd())) {
			continue // the host names what is missing
		}
		fmt.Fprintf(g.stderr, "%s (%s): ", f.GetName(), orDash(f.GetDescription()))
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return err
		}
		input[f.GetName()] = string(b)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "secret"
	}
	return s
}

// inputSummary writes an action's fields in one line: NAME:TYPE, * when required, the
// bounds, an enum's values, =DEFAULT.
func inputSummary(fields []*hostv1.ActionField) string {
	if len(fields) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		s := f.GetName()
		if f.GetRequired() {
			s += "*"
		}
		s += ":" + f.GetType()
		if f.Min != nil || f.Max != nil {
			lo, hi := "", ""
			if f.Min != nil {
				lo = fmt.Sprint(f.GetMin())
			}
			if f.Max != nil {
				hi = fmt.Sprint(f.GetMax())
			}
			s += "[" + lo + ".." + hi + "]"
		}
		if len(f.GetValues()) > 0 {
			s += "(" + strings.Join(f.GetValues(), "|") + ")"
		}
		if f.GetDefaultJson() != "" {
			s += "=" + f.GetDefaultJson()
		}
		parts = append(parts, s)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
