package simrun

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
	"github.com/workproof/workproof/scenarios"
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

// System is a system under test that -system can name.
type System struct {
	Name string // as -system names it; required, unique
	// Doc says in one line what it is ("the reference control plane
	// (correct)"); -h lists it. Zero: nothing is said.
	Doc string
	// Breaks is, for a seeded bug, the invariant it breaks: bench reports
	// whether the gate caught that very one. Zero: a system meant correct.
	Breaks check.Invariant
	// New returns a fresh instance; required.
	New func() contract.System
	// Scenarios are the system's own named scenarios, run in the gate's
	// named family after workproof's and replayable by name; zero: none.
	Scenarios []scenarios.Named
}

// Options configures Main.
type Options struct {
	// Systems are what -system and -systems can name; required. The first
	// is the default -system; -systems "mutants" is every one with Breaks
	// set, "all" every one.
	Systems []System
	// Command is how a user runs this binary, the start of every replay
	// command the reports print; zero: "go run ./cmd/simrun".
	Command string
}

// Main runs the simrun command line (args without the program name) and
// returns its exit code: a team builds its own simrun binary, with its own
// systems, as a main package that calls it.
func Main(args []string, stdout, stderr io.Writer, opts Options) int {
	c, err := newCLI(opts)
	if err != nil {
		fmt.Fprintf(stderr, "simrun: %v\n", err)
		return exitUsage
	}
	return c.run(args, stdout, stderr)
}

// cli is one Main: the systems it can name and how it is run.
type cli struct {
	systems []System
	command string
}

func newCLI(opts Options) (*cli, error) {
	if len(opts.Systems) == 0 {
		return nil, errors.New("Options.Systems is empty: the binary names no system to run")
	}
	seen := map[string]bool{}
	for _, s := range opts.Systems {
		if s.Name == "" || s.New == nil {
			return nil, fmt.Errorf("Options.Systems: a system needs a Name and New (got %q)", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("Options.Systems: %q twice", s.Name)
		}
		seen[s.Name] = true
	}
	c := &cli{systems: opts.Systems, command: opts.Command}
	if c.command == "" {
		c.command = "go run ./cmd/simrun"
	}
	return c, nil
}

func (c *cli) run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		c.usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "soak":
		return withSignals(func(ctx context.Context) int { return c.soakCmd(ctx, rest, stdout, stderr) }, stderr)
	case "gate":
		return withSignals(func(ctx context.Context) int { return c.gateCmd(ctx, rest, stdout, stderr) }, stderr)
	case "replay":
		return withSignals(func(ctx context.Context) int { return c.replayCmd(ctx, rest, stdout, stderr) }, stderr)
	case "bench":
		return withSignals(func(ctx context.Context) int { return c.benchCmd(ctx, rest, stdout, stderr) }, stderr)
	case "merge":
		return c.mergeCmd(context.Background(), rest, stdout, stderr)
	case "worker":
		return c.workerCmd(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		c.usage(stdout)
		return exitValid
	default:
		fmt.Fprintf(stderr, "simrun: unknown command %q\n\n", cmd)
		c.usage(stderr)
		return exitUsage
	}
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `simrun runs workproof: a system built on the work-table pattern, against real
Postgres, toxiproxy links and fake providers, checked against its invariants
(no orphans, no double billing, no races, no lost work, convergence).

Usage:
  simrun soak [flags]   traffic and faults for a while, with quiescent checkpoints
  simrun gate [flags]   the CI gate: every scenario family; exit by verdict
  simrun replay [flags] one example again: a named scenario, a seed, a saved program
  simrun bench [flags]  the seeded-bug catalogue: time to detect, counterexample length
  simrun merge DIR...   merge the reports of a sharded gate's jobs (gate -shard i/n)
  simrun worker [flags] one worker process of soak -process-workers (not run by hand)
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
			// f returned first (done is closed before the deferred stop
			// cancels ctx): no signal came, and stderr is the caller's again.
			select {
			case <-done:
				return
			default:
			}
			stop()
			fmt.Fprintln(stderr, "\nsimrun: interrupted: stopping cleanly and writing the report (Ctrl-C again to quit at once)")
		case <-done:
		}
	}()
	return f(ctx)
}

func (c *cli) systemNamed(name string) (System, error) {
	var names []string
	for _, s := range c.systems {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return System{}, fmt.Errorf("unknown -system %q (want one of %s)", name, strings.Join(names, ", "))
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
