// Package scenarios is what a team runs against its worker code: named
// regression scenarios (data: a short script aimed at one failure mode) and
// the property-based state machine, each ending in convergence and the
// invariant checks of package sim/check.
//
// Named scenarios live in named.go (the first regressions) and
// named_bugs.go (one aimed at each bug class of package kvx/mutants); a
// scenario may record a violation it observes itself while it runs, such
// as a liveness bound missed during a fault (sim.Env.Violate).
package scenarios
