// Package sim is the harness engine: it runs a system under test (a
// contract.System) against a real Postgres database and the four fake
// providers, with every worker reaching each of them through its own
// breakable network link, and records what happened so the invariants can be
// checked from ground truth.
//
// The phases live in their own packages, in the spirit of etcd's robustness
// tests, and Env wires them together:
//
//	sim/pgenv     Postgres: found (a DSN) or started (a private cluster); a fresh database per run
//	sim/netfault  toxiproxy in-process: one link per worker incarnation per upstream
//	sim/crash     crash points on every statement and provider call; the step scheduler
//	sim/history   the record: user requests, worker intervals, harness events
//	sim/check     the validate phase: pure invariant checkers with a tri-state verdict
//
// A run: New (database cloned from the system's migrated template, fakes,
// network, N workers started), then any mix of Serve, Crash / Kill / Restart,
// LinkFault, ProviderFault, DeployBug / DeployFix, TerminateBackends, Step
// (scheduled mode); then Converge (heal everything, deploy fixes, restart
// crashed workers, wait for the queue to drain, bounded) and Check; Close.
package sim
