// Package check is the validate phase of a workproof run: pure functions
// from what was recorded to the invariant violations it shows.
//
// Map of the package:
//
//   - Input: the three sources of truth — the request history and worker
//     intervals (package sim/history), the fakes' ledger (fakes.Snapshot:
//     the outside world) and the system's own state (contract.Snapshot) —
//     and whether the run was healed (its liveness phase ran).
//   - Violation: one line per problem (invariant, instance, idempotency
//     keys, history op indexes, message); Rule names the exact check.
//   - Invariant, and one checker per invariant in one registry (checkers,
//     in check.go; Invariants lists them with what each proves): each a
//     pure function of Input returning violations in a deterministic order:
//     Orphans ("orphan"), DoubleBilling ("double-billing"), Races ("race"),
//     LostWork ("lost-work"), Convergence ("convergence") and AtMostOnce
//     ("at-most-once"). All runs them all and sorts by registry order. A
//     new invariant is one file with its checker and one registry entry.
//   - Check: All plus a tri-state Verdict (Valid / Invalid / Unknown, as in
//     porcupine and Maelstrom) and Reached, the interesting paths the input
//     shows were exercised (Antithesis "sometimes"), so that a green run
//     that never met a fault is visible. Paths lists every path name.
//
// Ground rules shared by the checkers:
//
//   - Ambiguity is settled from ground truth, never guessed: an Info
//     (unknown) or pending request counts as "may have happened"; whether it
//     did is read from the system's state and the ledger.
//   - State checks (orphans, lost work, convergence, "charged but no VM
//     ever existed" and "took effect but never charged") only run when
//     Input.Healed: before quiescence they would flag work in flight. Safety
//     checks (double charges, races, at-most-once) run always, and so do two
//     rules that need no quiescence: "work-dropped" (active work with no
//     work item) and "hot-retry" (a retry storm against a deployed bug).
//   - Input.Observed carries violations the scenario saw itself while it
//     ran (a liveness bound missed during a fault); All reports them with
//     the checkers' own.
//   - A race is only reported when the recorded times prove two workers
//     were inside at once; see Races for the evidence rules. Times from the
//     history and the ledger are compared directly, so the harness must give
//     the recorder and the fakes one clock.
//   - Services without idempotency (fakes.Spec.AtMostOnce, listed in
//     Ledger.AtMostOnce: the email service) are called after commit,
//     outside the claim, so their requests are never evidence of a worker
//     being inside an item, and AtMostOnce counts their effects per event.
package check
