package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	"github.com/workproof/workproof/sim/check"
)

// Exit codes.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUsage   = 2 // also: infrastructure error, unknown verdict
	// exitDiverged: a replay with -expect showed no such violation.
	exitDiverged = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "soak":
		return withSignals(func(ctx context.Context) int { return soakCmd(ctx, rest, stdout, stderr) }, stderr)
	case "gate":
		return withSignals(func(ctx context.Context) int { return gateCmd(ctx, rest, stdout, stderr) }, stderr)
	case "replay":
		return withSignals(func(ctx context.Context) int { return replayCmd(ctx, rest, stdout, stderr) }, stderr)
	case "bench":
		return withSignals(func(ctx context.Context) int { return benchCmd(ctx, rest, stdout, stderr) }, stderr)
	case "merge":
		return mergeCmd(context.Background(), rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitValid
	default:
		fmt.Fprintf(stderr, "simrun: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `simrun runs workproof: a system built on the work-table pattern, against real
Postgres, toxiproxy links and fake providers, checked against its invariants
(no orphans, no double billing, no races, no lost work, convergence).

Usage:
  simrun soak [flags]   traffic and faults for a while, with quiescent checkpoints
  simrun gate [flags]   the CI gate: every scenario family; exit by verdict
  simrun replay [flags] one example again: a named scenario, a seed, a saved program
  simrun bench [flags]  the seeded-bug catalogue: time to detect, counterexample length
  simrun merge DIR...   merge the reports of a sharded gate's jobs (gate -shard i/n)
  simrun help           this text

Run "simrun <command> -h" for a command's flags.

Exit codes: 0 every invariant held; 1 an invariant was violated (the
counterexample is in the report); 2 usage or infrastructure error (bad flags,
no Postgres) or an unknown verdict (interrupted before the final check);
3 (replay -expect) the expected violation did not reproduce.
`)
}

// withSignals runs f with a context cancelled by SIGINT or SIGTERM. After
// the first signal the default behaviour is restored, so a second Ctrl-C
// kills the process at once (pgenv's cluster then dies with it, by
// Pdeathsig, and its directory is swept on the next start).
func withSignals(f func(context.Context) int, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			stop()
			fmt.Fprintln(stderr, "\nsimrun: interrupted: stopping cleanly and writing the report (Ctrl-C again to quit at once)")
		case <-done:
		}
	}()
	return f(ctx)
}

// system is a system under test the flags can name.
type system struct {
	name   string
	doc    string
	breaks check.Invariant // for a mutant: the invariant it breaks
	new    func() contract.System
}

func systems() []system {
	out := []system{{
		name: "kvx",
		doc:  "the reference control plane (correct)",
		new:  func() contract.System { return kvx.New(kvx.Options{}) },
	}}
	for _, m := range mutants.All() {
		out = append(out, system{name: m.Name, doc: "mutant, breaks " + string(m.Breaks) + ": " + firstSentence(m.Doc), breaks: m.Breaks, new: m.New})
	}
	return out
}

func systemNamed(name string) (system, error) {
	var names []string
	for _, s := range systems() {
		if s.name == name {
			return s, nil
		}
		names = append(names, s.name)
	}
	return system{}, fmt.Errorf("unknown -system %q (want one of %s)", name, strings.Join(names, ", "))
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// usageError is a bad flag value: reported with the command's usage hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// parse parses a command's flags; it returns the exit code to end with
// when the command must not go on (-h, a bad flag, extra arguments). Help
// goes to stdout; a bad flag gets the flag package's one-line error and a
// hint on stderr, not the whole help.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	full := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = full
	hint := func() {
		fmt.Fprintf(fs.Output(), "Run \"simrun %s -h\" for help.\n", fs.Name())
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		stderr := fs.Output()
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return exitValid, false
	case err != nil:
		hint()
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "simrun %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		hint()
		return exitUsage, false
	}
	return 0, true
}

// wrap formats text as lines of at most width columns, each after indent
// (the first line's indent is the caller's).
func wrap(text string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if col+1+len([]rune(word)) > width {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				col = indent
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len([]rune(word))
	}
	return b.String()
}
