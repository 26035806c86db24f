package simrun

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
)

func (c *cli) benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		f         runFlags
		list      string
		runs      int
		replays   int
		shrinkFor time.Duration
	)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(c, fs, strings.Join(scenarios.Families(), ","))
	fs.StringVar(&list, "systems", "mutants", `comma-separated systems to measure, "mutants" for every seeded bug, or "all" (the correct systems too)`)
	fs.IntVar(&runs, "runs", 3, "runs per system, with root seeds -seed, -seed+1, …")
	fs.DurationVar(&shrinkFor, "shrink", 30*time.Second, "bound of each counterexample's shrinking")
	fs.IntVar(&replays, "replays", 0, "replay each explore failure this many times (one attempt each) and report the share that reproduced its violation")
	fs.StringVar(&f.out, "out", "out", outFlagDoc)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: simrun bench [flags]

Measures the seeded-bug catalogue the way a CI gate meets it: for each
system, -runs gates (every family, at once, default budget), and for each
the family and invariant that caught it, the time to detect (from the
start of the gate to the first violation) and the shrunk counterexample's
length. With -replays, each failure the explore family found is replayed
(one attempt each) and the share that reproduced is reported. Harness CPU
(this process: the harness, the workers and the fakes, not Postgres; user +
system) is reported beside wall time.
Prints a Markdown table of medians.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit codes: 0 every seeded bug caught in every run and every correct system measured valid; 1 otherwise; 2 usage or infrastructure error.\n")
	}
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if runs < 1 || replays < 0 {
		fmt.Fprintln(stderr, "simrun bench: -runs must be positive and -replays not negative")
		return exitUsage
	}
	var names []string
	for _, s := range c.systems {
		if list == "all" || (list == "mutants" && s.Breaks != "") {
			names = append(names, s.Name)
		}
	}
	if list != "all" && list != "mutants" {
		names = strings.Split(list, ",")
	}
	// Every name and flag checked before the first gate, not after three.
	for i, name := range names {
		names[i] = strings.TrimSpace(name)
		if _, err := c.systemNamed(names[i]); err != nil {
			fmt.Fprintf(stderr, "simrun bench: -systems: %v\n", err)
			return exitUsage
		}
	}
	if _, err := f.options(fs, stderr); err != nil {
		fmt.Fprintf(stderr, "simrun bench: %v\n", err)
		return exitUsage
	}
	dir, err := runDir(f.out, "bench", list)
	if err != nil {
		fmt.Fprintf(stderr, "simrun bench: %v\n", err)
		return exitUsage
	}
	srv, err := startPostgres(ctx, f.dsn, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simrun bench: no Postgres: %v\n", err)
		reports.DiscardRunDir(dir)
		return exitUsage
	}
	defer srv.Close()
	rep := benchReport(list, f.seed, runs, time.Now())

	type row struct {
		name, by    string
		breaks, inv check.Invariant
		caught      int
		detect      []time.Duration
		length      []int
		replayed    int // replays run
		reproduced  int // of which reproduced on their one attempt
		wall, cpu   time.Duration
	}
	var rows []row
	ok := true
	for _, name := range names {
		f.system = name
		sys, _ := c.systemNamed(f.system) // checked above
		breaks := check.Invariant("(none)")
		if sys.Breaks != "" {
			breaks = sys.Breaks
		}
		r := row{name: f.system, breaks: breaks}
		brow := reports.BenchRow{System: f.system, Breaks: sys.Breaks}
		for k := 0; k < runs; k++ {
			opts, err := f.options(fs, stderr)
			if err != nil {
				fmt.Fprintf(stderr, "simrun bench: %v\n", err)
				return exitUsage
			}
			opts.Server, opts.Seed, opts.Budget.ShrinkTime = srv, f.seed+uint64(k), shrinkFor
			cpu0, wall0 := cpuTime(), time.Now()
			res, err := scenarios.Run(ctx, opts)
			if err != nil {
				fmt.Fprintf(stderr, "simrun bench: %s: %v\n", f.system, err)
				return exitUsage
			}
			r.cpu += cpuTime() - cpu0
			r.wall += time.Since(wall0)
			for _, fr := range res.Families {
				if fr.Failure == nil || fr.Failure.Experiment == nil {
					continue
				}
				for range replays {
					ex, err := scenarios.RunExperiment(ctx, opts, *fr.Failure.Experiment)
					if err != nil {
						fmt.Fprintf(stderr, "simrun bench: %s: replay %s: %v\n", f.system, fr.Failure.Name, err)
						return exitUsage
					}
					r.replayed++
					if check.HasInvariant(ex.Result.Violations, fr.Failure.Violations[0].Invariant) {
						r.reproduced++
					}
				}
			}
			brow.Runs = append(brow.Runs, benchRun(res, opts, dir))
			// The families run at once from the gate's start: the first
			// violation is the failure found soonest.
			var first *scenarios.FamilyResult
			for i, fr := range res.Families {
				if fr.Failure != nil && (first == nil || fr.Failure.Detect < first.Failure.Detect) {
					first = &res.Families[i]
				}
			}
			if fr := first; fr != nil {
				r.caught++
				r.detect = append(r.detect, fr.Failure.Detect)
				by := fr.Family
				if fr.Failure.Program != nil {
					r.length = append(r.length, len(fr.Failure.Program.Actions))
				} else {
					by += "/" + fr.Failure.Name
				}
				r.by, r.inv = by, fr.Failure.Violations[0].Invariant
				if check.HasInvariant(fr.Failure.Violations, breaks) {
					r.inv = breaks // the one it is meant to break, when present
				}
			}
			fmt.Fprintf(stderr, "bench: %s seed %d: %s in %v\n", f.system, opts.Seed, res.Verdict, res.Duration.Round(time.Second))
			if (sys.Breaks == "") != (res.Verdict != check.Invalid) {
				ok = false
			}
		}
		rows = append(rows, r)
		rep.Bench = append(rep.Bench, finishRow(brow, r.by, r.inv, r.detect, r.length))
	}
	fmt.Fprintf(stdout, "| system | breaks | caught | first caught by | violation found | median time to detect | median counterexample (actions) | replays reproduced | wall | harness CPU |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var replayed, reproduced int
	for _, r := range rows {
		det, length := "–", "–"
		if len(r.detect) > 0 {
			det = median(r.detect).Round(100 * time.Millisecond).String()
		}
		if len(r.length) > 0 {
			length = fmt.Sprint(medianInt(r.length))
		} else if len(r.detect) > 0 {
			length = "named scenario"
			if strings.HasPrefix(r.by, scenarios.FamilyExplore+"/") {
				length = "one experiment"
			}
		}
		rate := "–"
		if r.replayed > 0 {
			rate = fmt.Sprintf("%d/%d", r.reproduced, r.replayed)
			replayed += r.replayed
			reproduced += r.reproduced
		}
		fmt.Fprintf(stdout, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %v | %v (%.0f%% of a core) |\n", r.name, r.breaks, r.caught, runs,
			strings.ReplaceAll(or(r.by, "–"), "|", `\|`), or(string(r.inv), "–"), det, length, rate, r.wall.Round(time.Second), r.cpu.Round(time.Second), 100*r.cpu.Seconds()/max(r.wall.Seconds(), 1e-9))
	}
	if replayed > 0 {
		fmt.Fprintf(stdout, "\nexplore failures replayed: %d of %d reproduced on their first attempt (%.1f%%)\n", reproduced, replayed, 100*float64(reproduced)/float64(replayed))
	}
	rep.Verdict = check.Valid
	if !ok {
		rep.Verdict = check.Invalid
	}
	rep.Elapsed = reports.Duration(time.Since(rep.Started))
	if _, err := writeReport(dir, &rep, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "simrun bench: writing the report: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "report: %s (and report.html, junit.xml)\n", filepath.Join(dir, reports.MarkdownFile))
	if !ok {
		return exitInvalid
	}
	return exitValid
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// cpuTime is the CPU time (user and system) this process used so far: the
// harness, the workers and the fakes, not Postgres (a live cluster's CPU
// is not the process's until it exits).
func cpuTime() time.Duration {
	var self syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano())
}
