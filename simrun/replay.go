package simrun

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
)

func (c *cli) replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		f                   runFlags
		scenario, program   string
		experiment          string
		family, expect      string
		familyGiven, seeded bool
		attempts            int
	)
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.system, "system", c.systems[0].Name, "system under test (see simrun gate -h)")
	fs.Uint64Var(&f.seed, "seed", 1, "with -family: the program's own seed (as printed by gate); with -scenario: the run's root seed")
	fs.StringVar(&family, "family", "", "regenerate the program of this property family drawn from -seed")
	fs.IntVar(&f.workers, "workers", 2, "with -family: worker slots the program was drawn for")
	fs.IntVar(&f.steps, "steps", 20, "with -family: most actions the program was drawn with")
	fs.IntVar(&f.instances, "instances", scenarios.DefaultInstances, "with -family: instance ids the program was drawn with")
	fs.StringVar(&scenario, "scenario", "", "replay this named scenario")
	fs.StringVar(&experiment, "experiment", "", "replay this explore experiment, by the id gate prints ('workload|spot|fault'); -seed is the gate's root seed")
	fs.StringVar(&program, "program", "", "replay the program saved in this JSON file (a gate's report keeps each drawn failure's as <family>-seed_<N>/program.json)")
	fs.StringVar(&expect, "expect", "", "the invariant the original run violated: the replay then says whether it reproduced or diverged")
	fs.IntVar(&attempts, "attempts", 5, "with -expect: run up to this many times until the violation reproduces")
	fs.DurationVar(&f.settle, "settle", 0, "bound of the liveness phase (default: the system's promise, contract.Liveness.Settle)")
	fs.DurationVar(&f.takeover, "takeover", 0, "bound of a takeover from a silent worker (default: the system's promise, contract.Liveness.Takeover)")
	fs.StringVar(&f.dsn, "dsn", "", "Postgres server (default: $WORKPROOF_DATABASE_URL or the PG* variables, else a private ephemeral cluster)")
	fs.StringVar(&f.out, "out", "out", outFlagDoc)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: simrun replay [flags] (-scenario NAME | -family F -seed N | -program FILE | -experiment ID)

Runs one example again on a fresh database and reports its verdict and
violation lines. With -expect it also says whether the replay reproduced the
original violation or diverged: Postgres and the workers run concurrently for
real, so a replay narrows but does not remove timing differences (an explore
experiment names the very point its fault hits, whichever worker reaches it,
and reproduces on its first attempt almost always).

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), `
Exit codes: 0 valid (or, with -expect, reproduced... see below), 1 a violation,
2 usage or infrastructure error or unknown, 3 diverged: -expect was given and
no attempt showed that violation.

With -expect: 1 when the violation reproduced (the run is invalid, as the
original was), 3 when it diverged.

Examples:
  simrun replay -system FreshTokenPerAttempt -family crash -seed 123 -expect orphan
  simrun replay -system FreshTokenPerAttempt -scenario crash-after-vm-before-commit -expect orphan
  simrun replay -program out/latest/crash-seed_123/program.json -system FreshTokenPerAttempt
  simrun replay -scenario concurrent-resizes -system CheckThenAct
  simrun replay -system FreshTokenPerAttempt -experiment 'create|item=1.1@cloud:CreateVM:done#1|crash' -expect orphan
`)
	}
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	want, ok := check.ParseInvariant(expect)
	if expect != "" && !ok {
		var names []string
		for _, i := range check.Invariants() {
			names = append(names, string(i.Invariant))
		}
		fmt.Fprintf(stderr, "simrun replay: unknown -expect %q (want one of %s)\n", expect, strings.Join(names, ", "))
		return exitUsage
	}
	fs.Visit(func(fl *flag.Flag) {
		familyGiven = familyGiven || fl.Name == "family"
		seeded = seeded || fl.Name == "seed"
	})
	modes := 0
	for _, set := range []bool{scenario != "", program != "", familyGiven, experiment != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		fmt.Fprintln(stderr, "simrun replay: give exactly one of -scenario, -family (with -seed), -program or -experiment\nRun \"simrun replay -h\" for help.")
		return exitUsage
	}
	if familyGiven && !seeded {
		fmt.Fprintln(stderr, "simrun replay: -family needs the program's -seed (gate prints it)")
		return exitUsage
	}
	sys, err := c.systemNamed(f.system)
	if err != nil {
		fmt.Fprintf(stderr, "simrun replay: %v\n", err)
		return exitUsage
	}
	opts := scenarios.Options{System: sys.New(), Name: sys.Name, Scenarios: sys.Scenarios, Command: c.command, Seed: f.seed, Workers: f.workers,
		Budget: scenarios.Budget{Settle: f.settle}, Liveness: contract.Liveness{Takeover: f.takeover}}
	var (
		prog *scenarios.Program
		sc   *scenarios.Named
		exp  *scenarios.Experiment
	)
	switch {
	case experiment != "":
		x, err := scenarios.ParseExperiment(experiment)
		if err != nil {
			fmt.Fprintf(stderr, "simrun replay: -experiment: %v\n", err)
			return exitUsage
		}
		exp = &x
	case program != "":
		b, err := os.ReadFile(program)
		if err != nil {
			fmt.Fprintf(stderr, "simrun replay: %v\n", err)
			return exitUsage
		}
		var p scenarios.Program
		if err := json.Unmarshal(b, &p); err != nil {
			fmt.Fprintf(stderr, "simrun replay: -program %s is not a saved program: %v\n", program, err)
			return exitUsage
		}
		if err := p.Check(); err != nil {
			fmt.Fprintf(stderr, "simrun replay: -program %s: %v\n", program, err)
			return exitUsage
		}
		prog = &p
	case familyGiven:
		if family == scenarios.FamilyNamed || !slices.Contains(scenarios.Families(), family) {
			fmt.Fprintf(stderr, "simrun replay: -family %q is not a property family (want one of %s)\n", family, strings.Join(scenarios.Families()[1:], ", "))
			return exitUsage
		}
		if f.workers < 1 || f.workers > scenarios.MaxWorkers || f.steps < 1 || f.steps > scenarios.MaxActions {
			fmt.Fprintf(stderr, "simrun replay: -workers %d or -steps %d outside [1, %d] and [1, %d]\n", f.workers, f.steps, scenarios.MaxWorkers, scenarios.MaxActions)
			return exitUsage
		}
		if err := f.checkInstances(); err != nil {
			fmt.Fprintf(stderr, "simrun replay: %v\n", err)
			return exitUsage
		}
		p := scenarios.ProgramGen(family, f.workers, f.steps, f.instances).Example(int(f.seed))
		prog = &p
	default:
		for _, n := range append(scenarios.NamedScenarios(), sys.Scenarios...) {
			if n.Name == scenario {
				sc = &n
			}
		}
		if sc == nil {
			fmt.Fprintf(stderr, "simrun replay: no named scenario %q\n", scenario)
			return exitUsage
		}
	}
	dir, err := runDir(f.out, "replay", f.system)
	if err != nil {
		fmt.Fprintf(stderr, "simrun replay: %v\n", err)
		return exitUsage
	}
	rep := replayReport(c.command, sys.Name, f.seed, want, args)
	defer func() {
		if _, err := writeReport(dir, &rep, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "simrun replay: writing the report: %v\n", err)
		} else {
			fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dir, reports.MarkdownFile))
		}
	}()
	srv, err := startPostgres(ctx, f.dsn, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simrun replay: no Postgres: %v\n", err)
		rep.Ended, rep.Error = reports.EndError, "no Postgres: "+err.Error()
		return exitUsage
	}
	defer srv.Close()
	opts.Server = srv

	if prog != nil {
		fmt.Fprint(stdout, prog)
		opts.Workers = prog.Workers
	}
	if expect == "" || attempts < 1 {
		attempts = 1
	}
	var ex scenarios.Example
	for k := 1; k <= attempts; k++ {
		switch {
		case prog != nil:
			ex, err = scenarios.RunProgram(ctx, opts, *prog)
		case exp != nil:
			ex, err = scenarios.RunExperiment(ctx, opts, *exp)
		default:
			ex, err = scenarios.RunScenario(ctx, opts, *sc)
		}
		if err != nil {
			fmt.Fprintf(stderr, "simrun replay: %v\n", err)
			rep.Ended, rep.Error = reports.EndError, err.Error()
			return exitUsage
		}
		rep.Attempt(exampleOf(ex), k)
		fmt.Fprintf(stdout, "attempt %d: %s (settled: %v, %v)\n", k, ex.Verdict, ex.Settled, ex.Duration.Round(10*time.Millisecond))
		for _, v := range ex.Result.Violations {
			fmt.Fprintf(stdout, "  %s\n", v)
		}
		if expect == "" {
			break
		}
		if ex.Verdict == check.Invalid && check.HasInvariant(ex.Result.Violations, want) {
			fmt.Fprintf(stdout, "reproduced: %s on attempt %d of %d\n", expect, k, attempts)
			rep.Outcome = reports.OutcomeReproduced
			return ex.Verdict.ExitCode()
		}
	}
	if expect != "" {
		// Real concurrency: which worker claims an item is a race the
		// program does not fix, so a replay can take another path.
		fmt.Fprintf(stdout, "diverged: no %s violation in %d attempts (last: %s)\n", expect, attempts, ex.Verdict)
		rep.Outcome = reports.OutcomeDiverged
		return exitDiverged
	}
	return ex.Verdict.ExitCode()
}
