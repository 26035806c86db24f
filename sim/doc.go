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
//	sim/nemesis   the one fault catalogue: every fault kind, its seeded draw, inject and heal
//
// A run: New (database cloned from the system's migrated template — on a
// server of its own with Options.PrivateServer —, the fakes of
// fakes.Specs, the network, N workers started), then any mix of Serve and
// the fault mechanisms (Crash / Kill / Restart, LinkFault, ProviderFault,
// DeployBug / DeployFix, TerminateBackends, RestartPostgres,
// InjectSQLError, Step in scheduled mode), which package sim/nemesis
// drives; then Finish, the one way a run ends: heal everything, deploy
// fixes, restart crashed workers, wait (bounded by Options.Settle) for the
// system to settle and for provider calls in flight to land, then check
// every invariant. CheckSafety checks a run cut short. Close.
//
// Files: env.go (Env, New, workers and their links, Finish), faults.go (the
// link, crash, provider and bug mechanisms; the liveness phase),
// postgres.go (a private server, Postgres restarts, injected SQL errors).
package sim
