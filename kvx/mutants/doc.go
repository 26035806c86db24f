// Package mutants holds deliberately broken variants of kvx: each one is
// kvx with exactly one part replaced (a step, the key derivation, the way a
// change is accepted, or a runner option) so that it breaks one invariant
// the harness must catch. A harness that passes a mutant is itself broken.
//
// All lists them. Each entry names the invariant it breaks (the Inv…
// constants, spelled as package sim/check names its violations) and, in
// Doc, the fault that exposes it. The catalogue covers the bug classes
// users of Postgres work queues actually hit: no idempotency key or a fresh
// one per attempt (cloud and billing), a key reused with other parameters,
// a commit before the provider call it should follow, a provider call after
// the commit it should precede, has_active_work cleared early or checked
// then acted on, work given up after N transient errors, intransient errors
// retried hot, the claim committed before the work, LISTEN without a
// polling fallback, no database deadlines, the instance row deleted before
// its VM, an email sent inside the transaction, and a list trusted right
// after a create.
//
// Each mutant is built by composition (kvx.Options: Steps, Accept, Budget,
// Runner), so kvx itself has no switch that makes it wrong. Package
// scenarios maps every mutant to the named scenario that catches it
// (TestNamedScenariosCatchMutants), and runs the same scenario on the
// reference, which must pass.
package mutants
