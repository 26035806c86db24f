// Package reports is the result model of a workproof run and its renderings.
//
// Every run — a soak, a gate, a replay, a bench, or Verify — fills one
// Report: plain data with stable snake_case JSON names (durations are
// numbers of milliseconds in fields named …_ms), so that tools outside Go
// can read it, and every rendering (Markdown, JUnit XML, HTML with plots)
// needs nothing the model does not hold. The package judges nothing: the
// verdict and the violations come from package sim/check; this package
// carries them, measures what each one cost (BlastOf), cuts the evidence
// each one names (SliceOf) and derives the control loop's view of the run
// (DeriveSeries).
//
// Package scenarios imports this one (scenarios/soak builds a Report), so
// this one cannot import scenarios: the gate's results reach it as data —
// Family, Example and BenchRow are plain copies that cmd/simrun (and
// Verify) fill from scenarios.Result, with NewExample turning a sim.Result
// into an Example.
//
// One run, one directory: NewRunDir makes <out>/<kind>-<system>-<UTC time>
// (never reusing one) before the run starts, so a bad -out fails at once;
// WriteDir fills it at the end:
//
//	summary.md    the human summary (also appended to $GITHUB_STEP_SUMMARY)
//	report.json   the model
//	report.html   one self-contained page: timeline, error signal, throughput, latency
//	junit.xml     gate, bench, Verify: one testcase per family and named scenario
//	evidence.json a soak's deciding check: history, ledgers, state
//	<example>/    per failing example: evidence.json, program.json (a drawn
//	              program, for replay -program), violation-<n>-<invariant>.json
//	              (the evidence slice, blast radius and replay command)
//
// Map of the package:
//
//	report.go         the model: Report and its soak parts (Settings, Postgres, Requests,
//	                  Work, Throughput, Count, Checkpoint, Violation, Sample, Event), Duration
//	runs.go           the gate, replay, bench and Verify parts: Budget, Family, Example,
//	                  BenchRow, BenchRun; NewExample, Violations, Report.Attempt
//	build.go          helpers that fill the soak model from what a run recorded
//	evidence.go       Evidence (snake_case copies of history, ledgers, state), EvidenceOf,
//	                  SliceOf (what one violation names, nothing else), Slice
//	blast.go          Blast and BlastOf: a violation's cost in the user's terms
//	series.go         Series, DeriveSeries, Report.Derive: the control error signal, work
//	                  queued/parked/in flight, throughput, latency, fault windows
//	markdown.go       WriteMarkdown: the soak's summary
//	markdown_runs.go  the gate's, replay's and bench's summaries
//	junit.go          WriteJUnit
//	html.go           WriteHTML: the page
//	plots.go          the plots, drawn with gonum.org/v1/plot as inline SVG; the timeline
//	write.go          NewRunDir, WriteDir, WriteExample (for Verify), AppendStepSummary,
//	                  WriteJSON / ReadJSON
//
// Imports point one way: reports reads sim, sim/check, sim/crash,
// sim/history, fakes and contract; the runners (package scenarios,
// cmd/simrun) import reports.
package reports
