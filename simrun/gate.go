package simrun

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/pgenv"
)

// runFlags are the flags gate and bench share.
type runFlags struct {
	c                                       *cli
	system, dsn, only, families, out, shard string
	seed                                    uint64
	workers, checks, steps, parallel        int
	instances                               int
	settle, takeover, exploreTime           time.Duration
	exploreAll, verbose                     bool
}

func (f *runFlags) register(c *cli, fs *flag.FlagSet, defaultFamilies string) {
	f.c = c
	fs.StringVar(&f.system, "system", c.systems[0].Name, "system under test (see below)")
	fs.Uint64Var(&f.seed, "seed", 1, "root seed: program k of a family is drawn from a seed derived from it")
	fs.StringVar(&f.families, "families", defaultFamilies, "comma-separated scenario families: "+strings.Join(scenarios.Families(), ","))
	fs.StringVar(&f.only, "run", "", "run only the named scenarios whose name matches this regular expression (and, unless -families is given, only the named family)")
	fs.IntVar(&f.workers, "workers", 2, "worker slots per run")
	fs.IntVar(&f.checks, "checks", 8, "programs drawn per property family")
	fs.IntVar(&f.steps, "steps", 20, "most actions per drawn program")
	fs.IntVar(&f.instances, "instances", scenarios.DefaultInstances, "instance ids a drawn program uses (i1 to iN); a seed draws the same program only with the same count")
	fs.DurationVar(&f.settle, "settle", 0, "bound of each run's liveness phase (heal, then wait for the system to settle), overriding the system's promise (contract.Liveness.Settle; default: the promise)")
	fs.DurationVar(&f.takeover, "takeover", 0, "bound of a takeover from a silent worker, overriding the system's promise (contract.Liveness.Takeover; default: the promise)")
	fs.IntVar(&f.parallel, "parallel", 0, "examples and experiments run at once, over every family (default: as many as the cores keep up with, 2 to 16 per CPU)")
	fs.StringVar(&f.shard, "shard", "", "explore: run only shard i/n of the experiments (1 ≤ i ≤ n), split by experiment id so every job of a CI matrix agrees; merge the reports with simrun merge")
	fs.DurationVar(&f.exploreTime, "explore-time", 10*time.Minute, "explore: no experiment starts after this long")
	fs.BoolVar(&f.exploreAll, "explore-all", false, "explore: run every experiment even after one failed (full coverage, every failing experiment listed)")
	fs.StringVar(&f.dsn, "dsn", "", "Postgres server to use (default: $WORKPROOF_DATABASE_URL or the PG* variables, else a private ephemeral cluster started and removed by simrun)")
	fs.BoolVar(&f.verbose, "v", false, "log the harness, the workers and the fakes to stderr (debug level)")
}

// checkInstances bounds -instances.
func (f *runFlags) checkInstances() error {
	if f.instances < 1 || f.instances > scenarios.MaxInstances {
		return usagef("-instances %d outside [1, %d]", f.instances, scenarios.MaxInstances)
	}
	return nil
}

func (f *runFlags) options(fs *flag.FlagSet, stderr io.Writer) (scenarios.Options, error) {
	sys, err := f.c.systemNamed(f.system)
	if err != nil {
		return scenarios.Options{}, err
	}
	opts := scenarios.Options{
		System: sys.New(), Name: sys.Name, Scenarios: sys.Scenarios, Command: f.c.command, Seed: f.seed, Workers: f.workers, Parallel: f.parallel,
		Budget: scenarios.Budget{Checks: f.checks, Steps: f.steps, Instances: f.instances, Settle: f.settle, Time: time.Hour,
			ExploreTime: f.exploreTime, ExploreAll: f.exploreAll},
		Liveness: contract.Liveness{Takeover: f.takeover},
	}
	if f.workers < 1 || f.checks < 1 || f.steps < 1 || f.settle < 0 || f.takeover < 0 || f.exploreTime <= 0 || f.parallel < 0 {
		return opts, usagef("-workers, -checks, -steps and -explore-time must be positive, -settle, -takeover and -parallel not negative")
	}
	if f.workers > scenarios.MaxWorkers || f.steps > scenarios.MaxActions || f.parallel > 256 {
		return opts, usagef("-workers %d, -steps %d or -parallel %d too large (at most %d, %d, 256)", f.workers, f.steps, f.parallel, scenarios.MaxWorkers, scenarios.MaxActions)
	}
	if err := f.checkInstances(); err != nil {
		return opts, err
	}
	if f.shard != "" {
		sh, err := scenarios.ParseShard(f.shard)
		if err != nil {
			return opts, usagef("-shard: %v", err)
		}
		opts.Shard = sh
	}
	if f.only != "" {
		re, err := regexp.Compile(f.only)
		if err != nil {
			return opts, usagef("-run: %v", err)
		}
		opts.Only = re
		given := false
		fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "families" })
		if !given {
			f.families = scenarios.FamilyNamed
		}
	}
	known := map[string]bool{}
	for _, fam := range scenarios.Families() {
		known[fam] = true
	}
	for _, fam := range strings.Split(f.families, ",") {
		fam = strings.TrimSpace(fam)
		if !known[fam] {
			return opts, usagef("unknown family %q in -families (want some of %s)", fam, strings.Join(scenarios.Families(), ","))
		}
		opts.Families = append(opts.Families, fam)
	}
	if opts.Only != nil {
		n := 0
		for _, sc := range append(scenarios.NamedScenarios(), opts.Scenarios...) {
			if opts.Only.MatchString(sc.Name) {
				n++
			}
		}
		if n == 0 {
			return opts, usagef("no scenario matches -run %q", f.only)
		}
	}
	if f.verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return opts, nil
}

func startPostgres(ctx context.Context, dsn string, stderr io.Writer) (*pgenv.Server, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := pgenv.Start(ctx, pgenv.Options{DSN: dsn, Logger: log})
	if err != nil && dsn != "" {
		// pgenv names its Go option; the user gave a flag.
		return nil, fmt.Errorf("-dsn: %s", strings.ReplaceAll(err.Error(), "Options.DSN", "-dsn"))
	}
	return srv, err
}

func (c *cli) gateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f runFlags
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(c, fs, strings.Join(scenarios.Families(), ","))
	fs.StringVar(&f.out, "out", "out", outFlagDoc)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, `Usage: simrun gate [flags]

The CI gate for a change to worker code. Runs every scenario family on the
system, each run on a fresh database (run, heal, converge, check every
invariant): the named regression scenarios; then systematic exploration
(explore: five short workloads are traced fault-free, then one experiment
runs per point they reached × fault of the catalogue, and pairs, each a
deterministic run named by an id that replays it); then programs drawn
from the seed for the crash, network, provider and chaos families. A family
stops at its first failure (a drawn program is shrunk to a shorter one that
still fails) and prints the violation lines, the counterexample and a
paste-ready replay command.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(w, "\nSystems (-system):\n")
		for _, s := range c.systems {
			fmt.Fprintf(w, "  %-21s %s\n", s.Name, wrap(s.Doc, 24, 80))
		}
		fmt.Fprint(w, `
Exit codes:
  0  every family valid
  1  some family found a violation
  2  usage or infrastructure error, or a run ended unknown

Examples:
  simrun gate
  simrun gate -system CheckThenAct -run concurrent
  simrun gate -families crash,chaos -checks 50 -seed 7
  simrun gate -families explore -shard 2/4        # one job of a 4-way CI matrix
`)
	}
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	opts, err := f.options(fs, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simrun gate: %v\nRun \"simrun gate -h\" for help.\n", err)
		return exitUsage
	}
	dir, err := runDir(f.out, "gate", f.system)
	if err != nil {
		fmt.Fprintf(stderr, "simrun gate: %v\n", err)
		return exitUsage
	}
	srv, err := startPostgres(ctx, f.dsn, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simrun gate: no Postgres: %v\n", err)
		reports.DiscardRunDir(dir)
		return exitUsage
	}
	defer srv.Close()
	opts.Server = srv
	var seen []scenarios.Example
	times := exampleTimes{}
	started := time.Now()
	explored := 0
	var mu sync.Mutex // families report their examples at once
	opts.Progress = func(ex scenarios.Example) {
		mu.Lock()
		defer mu.Unlock()
		times.add(ex)
		// Kept for the report: the named scenarios' rows, and what failed
		// (an explore family's hundreds of valid experiments are counted).
		if ex.Family == scenarios.FamilyNamed || ex.Verdict == check.Invalid {
			seen = append(seen, ex)
		}
		mark := "ok  "
		switch ex.Verdict {
		case check.Invalid:
			mark = "FAIL"
		case check.Unknown:
			mark = "?   "
		}
		if ex.Family == scenarios.FamilyExplore {
			if explored++; ex.Verdict == check.Valid && !ex.Unreached {
				if explored%100 == 0 {
					fmt.Fprintf(stdout, "ok   explore  %d experiments so far (%v)\n", explored, time.Since(started).Round(time.Second))
				}
				return
			}
			if ex.Unreached {
				mark = "-   "
			}
		}
		fmt.Fprintf(stdout, "%s %-8s %-36s %s (%v)\n", mark, ex.Family, ex.Name, ex.Verdict, ex.Duration.Round(10*time.Millisecond))
	}
	res, err := scenarios.Run(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "interrupted")
		} else {
			fmt.Fprintf(stderr, "simrun gate: %v\n", err)
		}
		rep := failedGate(opts.Name, f.seed, seen, opts, &f, started, err)
		if _, werr := writeReport(dir, &rep, stdout, stderr); werr == nil {
			fmt.Fprintf(stdout, "report (what ran before the error): %s\n", filepath.Join(dir, reports.MarkdownFile))
		}
		return exitUsage
	}
	rep := gateReport(res, seen, times, opts, &f, started, dir)
	printRun(stdout, res, rep)
	if _, err := writeReport(dir, &rep, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "simrun gate: writing the report: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "gate: %s on %s (seed %d, %v); report: %s (and report.html, junit.xml)\n", res.Verdict, res.System, res.Seed, res.Duration.Round(time.Second), filepath.Join(dir, reports.MarkdownFile))
	return res.Verdict.ExitCode()
}

// printRun prints each family's line and every failure in full.
func printRun(w io.Writer, res scenarios.Result, rep reports.Report) {
	for i, fr := range res.Families {
		fmt.Fprintf(w, "family %-8s %-7s %d examples in %v; reached: %s\n", fr.Family, fr.Verdict, fr.Examples, fr.Duration.Round(100*time.Millisecond), strings.Join(fr.Reached, " "))
		if c := fr.Coverage; c != nil {
			fmt.Fprintf(w, "  coverage: %d workloads, %d points, %d experiments (%d pairs), %d unreached, %d points never faulted, %d failed\n",
				c.Workloads, c.Spots, c.Experiments, c.Pairs, len(c.Unreached), len(c.NeverFaulted), len(c.Failed))
			for _, r := range slices.Sorted(maps.Keys(c.Pruned)) {
				fmt.Fprintf(w, "  pruned %d: %s\n", c.Pruned[r], r)
			}
		}
		for _, u := range fr.Unknown {
			fmt.Fprintf(w, "  unknown: %s\n", u)
		}
		if f := fr.Failure; f != nil {
			fmt.Fprintf(w, "  %s failed (%s) after %v:\n", fr.Family, f.Name, f.Detect.Round(100*time.Millisecond))
			for _, v := range f.Violations {
				fmt.Fprintf(w, "    %s\n", v)
			}
			if f.Program != nil {
				fmt.Fprintf(w, "  counterexample (%d actions, shrunk from %d): %s", len(f.Program.Actions), len(f.Original.Actions), f.Program)
				fmt.Fprintf(w, "  replay the counterexample: %s\n", rep.Families[i].Failure.Replay)
			}
			fmt.Fprintf(w, "  replay: %s\n", f.Replay)
		}
	}
}
