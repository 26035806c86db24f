package reports

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
)

// This file holds the parts of the model that the gate, replay, bench and
// Verify fill. Package reports cannot import package scenarios (scenarios
// imports reports), so these are plain copies of what scenarios.Result
// holds: the caller (cmd/simrun, Verify) converts, and this package needs
// nothing but sim's own result types.

// Budget is what a gate, a bench or Verify ran with, after defaults.
type Budget struct {
	Families []string `json:"families"` // in the order they ran
	Only     string   `json:"only"`     // the -run expression; empty: every named scenario
	Workers  int      `json:"workers"`  // worker slots per run
	Checks   int      `json:"checks"`   // programs drawn per property family
	Steps    int      `json:"steps"`    // most actions per drawn program
	// Instances is how many instance ids a drawn program uses; zero: not
	// recorded (a report from before it was).
	Instances int      `json:"instances,omitempty"`
	Settle    Duration `json:"settle_ms"` // bound of each run's liveness phase
	Runs      int      `json:"runs"`      // bench: gates per system; zero otherwise
}

// Outcomes of a replay asked to reproduce a violation (Report.Outcome).
const (
	OutcomeReproduced = "reproduced"
	OutcomeDiverged   = "diverged"
)

// Family is one scenario family's outcome in a gate or Verify.
type Family struct {
	Name     string        `json:"name"`
	Verdict  check.Verdict `json:"verdict"`
	Examples int           `json:"examples"` // examples run
	Duration Duration      `json:"duration_ms"`
	// ExampleMedian and ExampleMax are its examples' own durations, and
	// CheckMedian the median time their checks took (reading the history,
	// ledgers and state, and every checker): what a CI budget grows with.
	// Zero: not recorded.
	ExampleMedian Duration `json:"example_median_ms,omitempty"`
	ExampleMax    Duration `json:"example_max_ms,omitempty"`
	CheckMedian   Duration `json:"check_median_ms,omitempty"`
	Reached       []string `json:"reached"`           // fault paths some example exercised
	Unknown       []string `json:"unknown,omitempty"` // examples that could not be decided, and why
	// Scenarios is one entry per named scenario run (the named family only),
	// in order, without evidence: JUnit gives each its own testcase.
	Scenarios []Example `json:"scenarios,omitempty"`
	// Failure is the family's first invalid example (for a drawn program,
	// shrunk), with its evidence; nil when none failed.
	Failure *Example `json:"failure,omitempty"`
	// Coverage is what the explore family explored; nil for the others.
	Coverage *Coverage `json:"coverage,omitempty"`
}

// Coverage is how much a systematic exploration explored, so that one
// which explored little is visible as such.
type Coverage struct {
	Workloads    int            `json:"workloads"`
	Spots        int            `json:"spots"`       // points the workloads' fault-free traces reached
	Experiments  int            `json:"experiments"` // experiments run, pairs included
	Pairs        int            `json:"pairs"`
	Pruned       map[string]int `json:"pruned,omitempty"` // experiments not run, by reason
	Unreached    []string       `json:"unreached,omitempty"`
	NeverFaulted []string       `json:"never_faulted,omitempty"`
	Failed       []string       `json:"failed,omitempty"` // every invalid experiment
	Shard        string         `json:"shard,omitempty"`  // "i/n" when one shard of a matrix ran
}

// Example is one run of a system on a fresh database: a named scenario or
// a drawn program. NewExample fills it from a sim.Result; the caller adds
// what only it knows (family, name, seed, replay command, program).
type Example struct {
	Family   string        `json:"family"`
	Name     string        `json:"name"`           // the scenario's name, or "seed N"
	Seed     uint64        `json:"seed,omitempty"` // the drawn program's own seed
	Verdict  check.Verdict `json:"verdict"`
	Settled  bool          `json:"settled"`
	Duration Duration      `json:"duration_ms"`
	// Detect is how long the family ran until this example failed.
	Detect Duration `json:"detect_ms,omitempty"`
	// Reason explains an unknown verdict.
	Reason     string      `json:"reason,omitempty"`
	Reached    []string    `json:"reached,omitempty"`
	Violations []Violation `json:"violations,omitempty"`
	// Replay is the paste-ready command that runs this example again.
	Replay string `json:"replay,omitempty"`
	// Program is a drawn program as `simrun replay -program` reads it
	// (scenarios.Program's JSON); WriteDir saves it as ProgramFile.
	Program json.RawMessage `json:"program,omitempty"`
	// ProgramText is the program as the gate prints it (one action a line).
	ProgramText string `json:"program_text,omitempty"`
	// Actions and Drawn are the program's length after and before shrinking.
	Actions int `json:"actions,omitempty"`
	Drawn   int `json:"drawn,omitempty"`
	// Dir is the example's directory, relative to the report directory
	// (ExampleDir): its evidence.json, program.json and one slice per
	// violation. Set by WriteDir when the example has evidence.
	Dir string `json:"dir,omitempty"`
	// Series is derived from the evidence (see DeriveSeries).
	Series *Series `json:"series,omitempty"`

	// Evidence is the input of the example's check: history, ledgers and
	// state. WriteDir writes it to Dir; nil: none kept.
	Evidence *check.Input `json:"-"`
}

// NewExample fills an Example from what a run returned: verdict, settling,
// reason, paths reached, every violation with its blast radius, the
// derived series and the evidence.
func NewExample(res sim.Result) Example {
	ex := Example{
		Verdict: res.Verdict,
		Settled: res.Settled,
		Reason:  res.Reason,
		Reached: slices.Clone(res.Reached),
	}
	if res.Input.History.Taken.IsZero() && len(res.Input.History.Ops) == 0 {
		// No run happened (a scenario that was not reached): no evidence.
		ex.Violations = Violations(res.Violations, nil)
		return ex
	}
	in := res.Input
	ex.Evidence = &in
	ex.Violations = Violations(res.Violations, &in)
	ex.Series = DeriveSeries(in)
	return ex
}

// Violations turns checker violations into the model's, with each one's
// line and, when the evidence is given, its blast radius.
func Violations(vs []check.Violation, in *check.Input) []Violation {
	if len(vs) == 0 {
		return nil
	}
	out := make([]Violation, 0, len(vs))
	for _, v := range vs {
		rv := Violation{Violation: v, Line: v.String()}
		if in != nil {
			b := BlastOf(*in, v)
			rv.BlastRadius = &b
		}
		out = append(out, rv)
	}
	return out
}

// BenchRow is one system measured by a bench.
type BenchRow struct {
	System string `json:"system"`
	// Breaks is the invariant a mutant is meant to break; empty for the
	// reference.
	Breaks check.Invariant `json:"breaks,omitempty"`
	Caught int             `json:"caught"` // runs that found a violation
	// By is the family (and named scenario) that first caught it, and
	// Invariant the violation found (Breaks when it was among them).
	By        string          `json:"by,omitempty"`
	Invariant check.Invariant `json:"invariant,omitempty"`
	// MedianDetect is the median time from the start of a gate to its
	// first violation; MedianActions the median shrunk counterexample
	// length (zero: caught by a named scenario, or not caught).
	MedianDetect  Duration `json:"median_detect_ms,omitempty"`
	MedianActions int      `json:"median_actions,omitempty"`
	// Pass says the row is as it should be: a mutant caught in every run,
	// the reference never invalid.
	Pass bool       `json:"pass"`
	Runs []BenchRun `json:"runs"`
}

// BenchRun is one gate of a bench.
type BenchRun struct {
	Seed     uint64        `json:"seed"`
	Verdict  check.Verdict `json:"verdict"`
	Duration Duration      `json:"duration_ms"`
	// Failure is the run's first failing example, with its evidence (an
	// invalid verdict is never kept without it); nil when none failed.
	Failure *Example `json:"failure,omitempty"`
}

// Attempt records attempt k (from 1) of a replay: the attempt becomes the
// last of r.Examples, and the report's verdict and length are its. Only
// the last attempt keeps its evidence: the earlier ones did not decide.
func (r *Report) Attempt(ex Example, k int) {
	for i := range r.Examples {
		r.Examples[i].Evidence, r.Examples[i].Series, r.Examples[i].Program = nil, nil, nil
	}
	if ex.Name == "" {
		ex.Name = fmt.Sprintf("attempt %d", k)
	}
	ex.Dir = slug(fmt.Sprintf("attempt-%d", k))
	r.Examples = append(r.Examples, ex)
	r.Verdict = ex.Verdict
	r.Reason = ex.Reason
	r.Elapsed += ex.Duration
}
