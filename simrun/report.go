package simrun

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/check"
)

// This file turns what package scenarios returns into package reports'
// model (reports cannot import scenarios: scenarios/soak imports reports),
// and holds the report-directory steps every command shares: create it
// before the work (so a bad -out fails at once), write it after, append
// the summary to a GitHub job summary.

// stepSummaryEnv names the file GitHub Actions reads a step's Markdown
// job summary from.
const stepSummaryEnv = "GITHUB_STEP_SUMMARY"

// outFlagDoc is the help text of every command's -out.
const outFlagDoc = "parent directory of the report: each run writes a new directory <command>-<system>-<UTC time> in it (never overwriting another) and points <out>/latest at it"

// runDir creates the run's report directory under out before the run
// starts; its error names -out.
func runDir(out, kind, system string) (string, error) {
	dir, err := reports.NewRunDir(out, kind, system, time.Now())
	if err != nil {
		return "", fmt.Errorf("-out %s: cannot write the report there: %w", out, err)
	}
	return dir, nil
}

// writeReport writes rep into dir, appends its summary to the GitHub job
// summary when there is one, and prints where the report is.
func writeReport(dir string, rep *reports.Report, stdout, stderr io.Writer) (reports.Files, error) {
	files, err := reports.WriteDir(dir, rep)
	if err != nil {
		return files, err
	}
	if err := reports.AppendStepSummary(os.Getenv(stepSummaryEnv), rep, dir); err != nil {
		fmt.Fprintf(stderr, "simrun %s: %v\n", rep.Kind, err)
	}
	return files, nil
}

// exampleOf converts one example as the runner reported it.
func exampleOf(ex scenarios.Example) reports.Example {
	out := reports.NewExample(ex.Result)
	out.Family, out.Name, out.Seed, out.Duration = ex.Family, ex.Name, ex.Seed, reports.Duration(ex.Duration)
	out.Verdict, out.Settled = ex.Verdict, ex.Settled
	if ex.Program != nil {
		out.ProgramText, out.Actions = ex.Program.String(), len(ex.Program.Actions)
		if b, err := json.Marshal(ex.Program); err == nil {
			out.Program = b
		}
	}
	return out
}

// summaryOf is an example without its evidence: a named scenario's row.
func summaryOf(ex scenarios.Example) reports.Example {
	out := exampleOf(ex)
	out.Evidence, out.Series, out.Program, out.ProgramText = nil, nil, nil, ""
	for i := range out.Violations {
		out.Violations[i].BlastRadius = nil
	}
	return out
}

// programPath is where the report directory keeps a drawn failure's
// program, which `simrun replay -program` reads.
func programPath(dir string, ex reports.Example) string {
	return filepath.Join(dir, ex.DirName(), reports.ProgramFile)
}

// failureOf converts a family's failure, with the command that replays it:
// a named scenario's own, or for a drawn program the saved program's.
func failureOf(f *scenarios.Failure, dir, system, command string) *reports.Example {
	ex := exampleOf(f.Example)
	ex.Detect = reports.Duration(f.Detect)
	ex.Replay = f.Replay
	if f.Original != nil {
		ex.Drawn = len(f.Original.Actions)
	}
	if f.Program != nil && len(f.Violations) > 0 {
		ex.Replay = fmt.Sprintf("%s replay -system %s -program %s -expect %s", command, system, programPath(dir, ex), f.Violations[0].Invariant)
	}
	return &ex
}

// budgetOf is the budget a gate or bench ran with.
func budgetOf(opts scenarios.Options, f *runFlags) reports.Budget {
	return reports.Budget{Families: opts.Families, Only: f.only, Workers: f.workers, Checks: f.checks, Steps: f.steps, Instances: f.instances, Settle: reports.Duration(opts.Settle())}
}

// gateReport is a gate's report: every family, every named scenario, each
// failure with its evidence.
func gateReport(res scenarios.Result, seen []scenarios.Example, times exampleTimes, opts scenarios.Options, f *runFlags, started time.Time, dir string) reports.Report {
	rep := reports.Report{
		Schema: reports.Schema, Kind: reports.KindGate, System: res.System, Seed: res.Seed, Started: started,
		Elapsed: reports.Duration(res.Duration), Ended: reports.EndCompleted, Verdict: res.Verdict, Budget: budgetOf(opts, f),
	}
	for _, fr := range res.Families {
		fam := reports.Family{Name: fr.Family, Verdict: fr.Verdict, Examples: fr.Examples, Duration: reports.Duration(fr.Duration),
			Reached: fr.Reached, Unknown: fr.Unknown, Coverage: coverageOf(fr.Coverage, opts.Shard)}
		fam.ExampleMedian, fam.ExampleMax, fam.CheckMedian = times.of(fr.Family)
		if fr.Family == scenarios.FamilyNamed {
			for _, ex := range seen {
				if ex.Family == scenarios.FamilyNamed {
					fam.Scenarios = append(fam.Scenarios, summaryOf(ex))
				}
			}
		}
		if fr.Failure != nil {
			fam.Failure = failureOf(fr.Failure, dir, res.System, opts.Command)
			if rep.Replay == "" {
				rep.Replay = fam.Failure.Replay
			}
		}
		rep.Families = append(rep.Families, fam)
	}
	return rep
}

// exampleTimes is each family's example durations and check times, as a
// gate's examples come in (every example, where the report keeps only the
// named ones and the failures).
type exampleTimes map[string]*familyTimes

type familyTimes struct{ took, checked []time.Duration }

func (t exampleTimes) add(ex scenarios.Example) {
	ft := t[ex.Family]
	if ft == nil {
		ft = &familyTimes{}
		t[ex.Family] = ft
	}
	ft.took, ft.checked = append(ft.took, ex.Duration), append(ft.checked, ex.Result.Checked)
}

// of is the median and longest duration of family's examples, and the
// median time their checks took; zeros when none ran.
func (t exampleTimes) of(family string) (median, longest, check reports.Duration) {
	ft := t[family]
	if ft == nil || len(ft.took) == 0 {
		return 0, 0, 0
	}
	took, checked := slices.Sorted(slices.Values(ft.took)), slices.Sorted(slices.Values(ft.checked))
	return reports.Duration(took[len(took)/2]), reports.Duration(took[len(took)-1]), reports.Duration(checked[len(checked)/2])
}

// coverageOf converts the explore family's coverage.
func coverageOf(c *scenarios.Coverage, sh scenarios.Shard) *reports.Coverage {
	if c == nil {
		return nil
	}
	out := &reports.Coverage{Workloads: c.Workloads, Spots: c.Spots, Experiments: c.Experiments, Pairs: c.Pairs,
		Pruned: c.Pruned, Unreached: c.Unreached, NeverFaulted: c.NeverFaulted, Failed: c.Failed}
	if sh.Count > 1 {
		out.Shard = sh.String()
	}
	return out
}

// failedGate is the report of a gate the harness could not finish: what
// ran, and the error.
func failedGate(sys string, seed uint64, seen []scenarios.Example, opts scenarios.Options, f *runFlags, started time.Time, err error) reports.Report {
	rep := reports.Report{Schema: reports.Schema, Kind: reports.KindGate, System: sys, Seed: seed, Started: started,
		Elapsed: reports.Duration(time.Since(started)), Ended: reports.EndError, Verdict: check.Unknown, Error: err.Error(), Budget: budgetOf(opts, f)}
	fams := map[string]int{}
	for _, ex := range seen {
		i, ok := fams[ex.Family]
		if !ok {
			i = len(rep.Families)
			fams[ex.Family] = i
			rep.Families = append(rep.Families, reports.Family{Name: ex.Family, Verdict: check.Valid})
		}
		fam := &rep.Families[i]
		fam.Examples++
		fam.Duration += reports.Duration(ex.Duration)
		if ex.Family == scenarios.FamilyNamed {
			fam.Scenarios = append(fam.Scenarios, summaryOf(ex))
		}
		if ex.Verdict == check.Invalid && fam.Failure == nil {
			e := exampleOf(ex)
			fam.Failure, fam.Verdict, rep.Verdict = &e, check.Invalid, check.Invalid
		}
	}
	return rep
}

// replayReport is a replay's report before its attempts: the command that
// ran it (so it is its own replay) and what it was asked to reproduce.
func replayReport(command, system string, seed uint64, expect check.Invariant, args []string) reports.Report {
	return reports.Report{Schema: reports.Schema, Kind: reports.KindReplay, System: system, Seed: seed, Started: time.Now(),
		Ended: reports.EndCompleted, Verdict: check.Unknown, Expect: expect, Replay: command + " replay " + shellJoin(args)}
}

// shellJoin quotes each argument that a shell would split or expand.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// benchReport is a bench's report before its rows.
func benchReport(systems string, seed uint64, runs int, started time.Time) reports.Report {
	return reports.Report{Schema: reports.Schema, Kind: reports.KindBench, System: systems, Seed: seed, Started: started,
		Ended: reports.EndCompleted, Budget: reports.Budget{Runs: runs}}
}

// benchRun is one gate of a bench, with its first failure's evidence in a
// directory of its own (<system>-seed<N>-<family>-<name>).
func benchRun(res scenarios.Result, opts scenarios.Options, dir string) reports.BenchRun {
	run := reports.BenchRun{Seed: opts.Seed, Verdict: res.Verdict, Duration: reports.Duration(res.Duration)}
	for _, fr := range res.Families {
		if fr.Failure == nil {
			continue
		}
		ex := exampleOf(fr.Failure.Example)
		ex.Dir = fmt.Sprintf("%s-seed%d-%s", res.System, opts.Seed, ex.DirName())
		full := failureOf(fr.Failure, dir, res.System, opts.Command)
		ex.Replay, ex.Detect, ex.Drawn = full.Replay, full.Detect, full.Drawn
		if fr.Failure.Program != nil && len(fr.Failure.Violations) > 0 {
			ex.Replay = fmt.Sprintf("%s replay -system %s -program %s -expect %s", opts.Command, res.System, programPath(dir, ex), fr.Failure.Violations[0].Invariant)
		}
		run.Failure = &ex
		break
	}
	return run
}

// finishRow fills a bench row's medians and verdict from what bench measured.
func finishRow(row reports.BenchRow, by string, inv check.Invariant, detect []time.Duration, length []int) reports.BenchRow {
	row.By, row.Invariant, row.Caught = by, inv, len(detect)
	if len(detect) > 0 {
		row.MedianDetect = reports.Duration(median(detect))
	}
	if len(length) > 0 {
		row.MedianActions = medianInt(length)
	}
	if row.Breaks == "" {
		row.Pass = row.Caught == 0
	} else {
		row.Pass = row.Caught == len(row.Runs)
	}
	return row
}
