// Package mutants holds deliberately broken variants of kvx: each one is
// kvx with exactly one part replaced (a step, the key derivation, the way a
// change is accepted, or a runner option) so that it breaks one invariant
// the harness must catch. A harness that passes a mutant is itself broken.
//
// All lists them. Each entry names the invariant it breaks (the Inv…
// constants) and, in Doc, the fault that exposes it.
package mutants
