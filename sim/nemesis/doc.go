// Package nemesis is workproof's one fault catalogue: every kind of fault a
// run can inject, listed once, in the shape of etcd's robustness failpoints
// (one small type per kind, one list).
//
// The named regression scenarios, the property programs drawn by rapid, the
// soak's nemesis and the systematic explorer all take their faults from
// here, so the gate and the soak test the same places, and a new fault kind
// is one type plus one entry in Catalogue.
//
// A map of the package:
//
//   - nemesis.go: Fault (one fault as plain data, what a program saves and
//     replays), Kind (name, class, description, seeded draw of parameters,
//     availability, inject, heal), Class, Drawer, Space, Catalogue, Inject,
//     Heal.
//   - points.go: crash rules, named once from the fakes' endpoints (before a
//     call, after its answer, after it and before the next statement or
//     the commit) and from what a statement does (a commit, a write).
//   - crash.go: a crash at a point, a kill now.
//   - network.go: link faults (latency, blackhole, reset, cut, partition)
//     on one worker's link to one upstream or on every worker's at once,
//     and terminated Postgres sessions.
//   - provider.go: provider faults — transient (before any effect),
//     ambiguous (after the effect), slow, a long outage, latency at the
//     system's own timeout — and a deployed intransient bug.
//   - postgres.go: a Postgres restart and SQL errors raised in a worker's
//     session.
//   - aim.go: Menu, the faults that fit right before one point of a trace
//     (a crash; at a provider call its transient, ambiguous, timed-out, down
//     and buggy answers; at a statement a lost answer, a reset, a killed
//     session, a restart, a server-raised error), which the explorer of
//     package scenarios runs one experiment each.
//
// Mechanisms live in package sim (Env.Crash, Env.LinkFault, …); a Kind
// says what to inject, with which parameters, and whether it can run on an
// environment. Every draw goes through a Drawer (rapid's, or a seeded
// math/rand stream) and picks from sorted lists, so one seed draws one
// fault.
package nemesis
