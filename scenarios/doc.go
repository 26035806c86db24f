// Package scenarios is what a team runs against its worker code: named
// regression scenarios (data: a short script aimed at one failure mode) and
// the property-based state machine, each ending in convergence and the
// invariant checks of package sim/check.
package scenarios
