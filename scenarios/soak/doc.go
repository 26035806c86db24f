// Package soak runs a system under test for minutes or hours: steady user
// traffic, a named fault profile switching whole faults on and off, and
// quiescent checkpoints that heal everything, wait for the system to settle
// and prove every invariant on the whole history so far. It is what
// `simrun soak` runs; the result is a reports.Report.
//
// Map of the package:
//
//	soak.go    Options, Run: the segments of traffic, the checkpoints, sampling,
//	           the traffic generator (clients at a rate on a bounded id set)
//	faults.go  Profile, Profiles: the named fault mixes ("none", "mild",
//	           "chaos") and the nemesis that draws and applies them
//
// Imports point one way: cmd/simrun → scenarios/soak → reports → sim.
// The result model lives in package reports, not here, so that every
// kind of run (soak, gate, replay) fills the same model and the
// renderers never depend on the runners.
package soak
