// Package history is the record phase of a workproof run: a concurrency-safe
// Recorder that the harness feeds while a scenario runs, and the plain-data
// Snapshot the checkers in package sim/check read afterwards.
//
// Map of the package:
//
//   - Recorder (New, Options): the only mutable thing. Safe for concurrent use;
//     every entry is stamped with the injected clock under one mutex, so the
//     order of Seq/Index fields is the order of the timestamps.
//   - User requests: Invoke / Complete (or Do, which wraps both) record an Op
//     with Jepsen's three outcomes: OK (it happened), Fail (it definitely did
//     not: busy, invalid, not found, exists) and Info (unknown: a timeout or
//     a lost connection; it may or may not have happened). Classify maps a
//     Serve error to an outcome.
//   - Worker item intervals: Observer(worker) is the contract.Observer handed
//     to one worker incarnation; each Begin/end pair becomes an Interval.
//   - Harness events: Crash, LeaseLost, FaultOn/FaultOff, DeployBug/DeployFix
//     and Note. Crash and LeaseLost end the worker's open intervals at that
//     moment (outcome "crashed" / "lease-lost"): a frozen worker never calls
//     its end func, and a worker whose database session was cut no longer
//     holds its claim, so whatever it does afterwards is not "inside" the
//     item. A late end call is kept in Interval.Reported but does not move End.
//   - Snapshot: a deep copy of everything as JSON-serialisable plain data.
//
// The recorder judges nothing; deciding what the history means is the job of
// package sim/check.
package history
