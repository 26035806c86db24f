package reports

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/workproof/workproof/sim/check"
)

// run writes the summary of a gate, a replay, a bench or Verify.
func (m md) run(r *Report) {
	m.p("# workproof %s of %s: %s\n\n", r.Kind, orDash(r.System), verdictWord(r.Verdict))
	m.p("**Verdict: %s** (exit %d)", verdictWord(r.Verdict), r.ExitCode())
	switch {
	case r.Outcome != "":
		m.p(" — %s %s.", r.Outcome, r.Expect)
	case len(r.Families) > 0:
		bad := 0
		for _, f := range r.Families {
			if f.Verdict == check.Invalid {
				bad++
			}
		}
		m.p(" — %d of %s found a violation.", bad, plural(len(r.Families), "family"))
	case r.Reason != "":
		m.p(" — %s", sentence(r.Reason))
	}
	m.p("\n\n")
	if r.Error != "" {
		m.p("**Harness error:** %s\n\n", oneLine(r.Error))
	}
	if r.Replay != "" {
		what := "Replay"
		if r.Kind == KindGate || r.Kind == KindVerify {
			what = "Replay the first failure"
		}
		m.p("%s:\n\n```sh\n%s\n```\n\n", what, r.Replay)
	}
	m.p("| run | |\n|---|---|\n")
	m.p("| system | %s |\n", cell(orDash(r.System)))
	m.p("| seed | %d |\n", r.Seed)
	if !r.Started.IsZero() {
		m.p("| started | %s |\n", r.Started.UTC().Format(time.RFC3339))
	}
	m.p("| ran | %s |\n", dur(r.Elapsed))
	if b := r.Budget; len(b.Families) > 0 || b.Workers > 0 {
		m.p("| families | %s |\n", cell(orDash(strings.Join(b.Families, ", "))))
		if b.Only != "" {
			m.p("| named scenarios matching | `%s` |\n", strings.ReplaceAll(b.Only, "`", "'"))
		}
		on := ""
		if b.Instances > 0 {
			on = fmt.Sprintf(" on %d instance ids", b.Instances)
		}
		m.p("| budget | %d workers, %d programs per family of at most %d actions%s, settle %s |\n", b.Workers, b.Checks, b.Steps, on, dur(b.Settle))
		if b.Runs > 0 {
			m.p("| runs per system | %d |\n", b.Runs)
		}
	}
	m.p("\n")
	if len(r.Families) > 0 {
		m.families(r)
	}
	if len(r.Examples) > 0 {
		m.attempts(r)
	}
	if len(r.Bench) > 0 {
		m.bench(r)
	}
}

func (m md) families(r *Report) {
	m.p("## Families\n\n| family | verdict | examples | time | an example (median, longest) | its check (median) | paths reached |\n|---|---|---:|---|---|---|---|\n")
	for _, f := range r.Families {
		each, check := "—", "—"
		if f.ExampleMax > 0 {
			each, check = dur(f.ExampleMedian)+", "+dur(f.ExampleMax), dur(f.CheckMedian)
		}
		m.p("| %s | %s | %d | %s | %s | %s | %s |\n", f.Name, verdictWord(f.Verdict), f.Examples, dur(f.Duration), each, check, cell(orDash(strings.Join(f.Reached, ", "))))
	}
	m.p("\n")
	for _, f := range r.Families {
		if len(f.Scenarios) == 0 {
			continue
		}
		m.p("## Named scenarios\n\n| scenario | verdict | time | note |\n|---|---|---|---|\n")
		for _, sc := range f.Scenarios {
			note := ""
			switch {
			case len(sc.Violations) > 0:
				note = sc.Violations[0].Line
			case sc.Reason != "":
				note = sc.Reason
			}
			m.p("| %s | %s | %s | %s |\n", sc.Name, verdictWord(sc.Verdict), dur(sc.Duration), cell(note))
		}
		m.p("\n")
	}
	for _, f := range r.Families {
		if c := f.Coverage; c != nil {
			m.p("## Exploration coverage\n\n| workloads | points | experiments | pairs | unreached | points never faulted | failed |\n|---:|---:|---:|---:|---:|---:|---:|\n")
			m.p("| %d | %d | %d | %d | %d | %d | %d |\n\n", c.Workloads, c.Spots, c.Experiments, c.Pairs, len(c.Unreached), len(c.NeverFaulted), len(c.Failed))
			if c.Shard != "" {
				m.p("Shard %s of the experiments.\n\n", c.Shard)
			}
			reasons := make([]string, 0, len(c.Pruned))
			for r := range c.Pruned {
				reasons = append(reasons, r)
			}
			sort.Strings(reasons)
			for _, r := range reasons {
				m.p("- pruned %d: %s\n", c.Pruned[r], r)
			}
			for _, id := range c.Failed {
				m.p("- failed: `%s`\n", id)
			}
			m.p("\n")
		}
	}
	for _, f := range r.Families {
		for _, u := range f.Unknown {
			m.p("- %s: inconclusive: %s\n", f.Name, oneLine(u))
		}
	}
	m.p("## Failures\n\n")
	n := 0
	for _, f := range r.Families {
		if f.Failure == nil || f.Failure.Verdict != check.Invalid {
			continue
		}
		n++
		m.example(f.Failure, fmt.Sprintf("%s: %s", f.Name, f.Failure.Name))
	}
	if n == 0 {
		m.p("None.\n")
	}
}

// example writes one failing example: its violations, their cost, the
// program, the replay command and where the evidence is.
func (m md) example(ex *Example, title string) {
	m.p("### %s\n\n", title)
	if ex.Detect > 0 {
		m.p("Found after %s of the family; this run took %s (settled: %s).\n\n", dur(ex.Detect), dur(ex.Duration), yesNo(ex.Settled))
	} else {
		m.p("This run took %s (settled: %s).\n\n", dur(ex.Duration), yesNo(ex.Settled))
	}
	if len(ex.Violations) > 0 {
		m.p("```\n")
		for _, v := range ex.Violations {
			m.p("%s\n", oneLine(v.Line))
		}
		m.p("```\n\n")
		m.blast(ex.Violations)
	}
	if ex.ProgramText != "" {
		m.p("Counterexample (%s", plural(ex.Actions, "action"))
		if ex.Drawn > ex.Actions {
			m.p(", shrunk from %d", ex.Drawn)
		}
		m.p("):\n\n```\n%s```\n\n", ensureNL(ex.ProgramText))
	}
	if ex.Replay != "" {
		m.p("Replay:\n\n```sh\n%s\n```\n\n", ex.Replay)
	}
	if ex.Dir != "" {
		m.p("Evidence: `%s/` (evidence.json: the run's whole history, ledgers and state", ex.Dir)
		if len(ex.Program) > 0 {
			m.p("; program.json: the program `replay -program` reads")
		}
		m.p(").\n\n")
	}
}

// blast writes each violation's cost and evidence slice.
func (m md) blast(vs []Violation) {
	any := false
	for _, v := range vs {
		any = any || v.BlastRadius != nil || v.Evidence != ""
	}
	if !any {
		return
	}
	m.p("| violation | blast radius | evidence slice |\n|---|---|---|\n")
	for _, v := range vs {
		b := "—"
		if v.BlastRadius != nil {
			b = v.BlastRadius.Summary
		}
		ev := "—"
		if v.Evidence != "" {
			ev = "`" + v.Evidence + "`"
		}
		m.p("| %s: %s %s | %s | %s |\n", v.Invariant, cell(v.Rule), cell(instanceOf(v)), cell(b), ev)
	}
	m.p("\n")
}

func instanceOf(v Violation) string {
	if v.Instance == "" {
		return ""
	}
	return "(instance " + v.Instance + ")"
}

func (m md) attempts(r *Report) {
	m.p("## Attempts\n\n| # | verdict | settled | time | first violation |\n|---:|---|---|---|---|\n")
	for i, ex := range r.Examples {
		first := "—"
		if len(ex.Violations) > 0 {
			first = ex.Violations[0].Line
		}
		m.p("| %d | %s | %s | %s | %s |\n", i+1, verdictWord(ex.Verdict), yesNo(ex.Settled), dur(ex.Duration), cell(first))
	}
	m.p("\n")
	last := &r.Examples[len(r.Examples)-1]
	if last.Verdict == check.Invalid || last.Dir != "" {
		m.example(last, "Last attempt: "+last.Family+" "+last.Name)
	}
}

func (m md) bench(r *Report) {
	m.p("## Seeded bugs\n\n| system | breaks | caught | first caught by | violation found | median time to detect | median counterexample (actions) |\n|---|---|---|---|---|---|---|\n")
	for _, row := range r.Bench {
		det, length := "–", "–"
		if row.Caught > 0 {
			det = dur(Duration(row.MedianDetect.D().Round(100 * time.Millisecond)))
		}
		switch {
		case row.MedianActions > 0:
			length = fmt.Sprint(row.MedianActions)
		case row.Caught > 0:
			length = "named scenario"
		}
		breaks := string(row.Breaks)
		if breaks == "" {
			breaks = "(none)"
		}
		m.p("| %s | %s | %d/%d | %s | %s | %s | %s |\n", row.System, breaks, row.Caught, len(row.Runs), cell(orDash(row.By)), orDash(string(row.Invariant)), det, length)
	}
	m.p("\n")
	for _, row := range r.Bench {
		for _, run := range row.Runs {
			if run.Failure != nil && row.Breaks == "" {
				m.example(run.Failure, fmt.Sprintf("False alarm: %s seed %d, %s %s", row.System, run.Seed, run.Failure.Family, run.Failure.Name))
			}
		}
	}
}

func ensureNL(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
