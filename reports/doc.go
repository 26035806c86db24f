// Package reports is the result model of a workproof run and its renderings.
//
// A run (today a soak; later a gate, a replay or a benchmark) fills one
// Report: plain data with stable JSON field names, so that tools outside Go
// can read it and later renderers (an HTML page with plots, JUnit XML) need
// nothing the model does not already hold. The package judges nothing: the
// verdict and the violations come from package sim/check; this package only
// carries and renders them.
//
// Map of the package:
//
//	report.go    the model: Report and its parts (Settings, Postgres, Requests, Work,
//	             Throughput, Count, Checkpoint, Violation, Sample, Event), Duration
//	build.go     helpers that fill the model from what a run recorded (a history
//	             snapshot, crash hits, check results)
//	markdown.go  WriteMarkdown: the human summary (verdict, seed, replay command,
//	             settings, counts, faults, crash points, paths, every violation line)
//	write.go     WriteJSON / ReadJSON, and WriteDir: report.json, summary.md and
//	             evidence.json in one directory
//
// Imports point one way: reports reads sim, sim/check, sim/crash and
// sim/history; the runners (package scenarios, cmd/simrun) import reports.
package reports
