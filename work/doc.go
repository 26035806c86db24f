// Package work is the work-table pattern as a small library: a Postgres table
// of work items, written in the same transaction as the request that causes
// them, and claimed by workers inside a transaction that is held while the
// item is handled, so that the handler's writes, its follow-up work and the
// removal of the item commit atomically — or not at all.
//
// A map of the package:
//
//   - schema.go: the work table (every column documented), [Migrate], and the
//     operator calls [List] and [Release].
//   - enqueue.go: [Enqueue] inside the caller's transaction, with a
//     pg_notify that Postgres delivers on commit only (a handler's
//     follow-ups: one per RunnerOptions.NotifyEvery).
//   - claim.go: one claim — DELETE … WHERE id = (SELECT … FOR UPDATE SKIP
//     LOCKED LIMIT 1) RETURNING … in a transaction, looking from the worker's
//     claim floor first (the due time of its last item, so that a claim does
//     not walk the index entries of the items claimed before it, which stay
//     until VACUUM), the [Tx] a [Handler] gets,
//     the savepoint that lets a failed attempt be recorded atomically with
//     the claim, and [Tx.AfterCommit].
//   - fence.go: [Tx.Fence], which keeps a key's next items waiting until
//     the effects of a claim that was lost can no longer land.
//   - runner.go: the [Runner]: N workers, LISTEN/NOTIFY wake-up on a dedicated
//     connection with a polling fallback, graceful shutdown, the [Observer].
//   - errors.go: [Transient] / [Intransient] markers, classification of
//     Postgres and network errors, [IsTransient] / [IsIntransient].
//   - backoff.go: min(MaxBackoff, MinBackoff·2^attempts) with seeded jitter.
//
// # Lifecycle of an item
//
// Enqueue inserts a row. A worker claims it by deleting it in a transaction
// (the row lock keeps every other worker off it), sets a savepoint, and runs
// the handler. Then exactly one of:
//
//   - the handler returns nil: COMMIT. The row is gone, the handler's writes
//     and follow-ups are visible, [Tx.AfterCommit] hooks run. OutcomeDone.
//     Without a hook the COMMIT goes out in one round trip with the
//     worker's next claim (COMMIT AND CHAIN, claim, savepoint in one batch),
//     and the Observer is told once its outcome is read, before the next
//     item begins: an item costs one round trip fewer. Follow-ups of
//     [Tx.EnqueueAtCommit] go in the same batch, before the COMMIT. A
//     statement of the batch that fails stops it there, and nothing is
//     claimed.
//   - the handler returns a transient error: ROLLBACK TO SAVEPOINT discards
//     the handler's writes, the row is re-inserted with the same id,
//     attempts+1 and run_after = now + backoff, and that COMMITs. The row is
//     never visible unclaimed in between. OutcomeRetry.
//   - the handler returns an intransient error (or panics, or its kind has no
//     handler): the same, but the row is re-inserted parked, with the reason
//     in last_error. No worker touches it until [Release]. OutcomeParked.
//   - the connection is lost, a database call times out or COMMIT goes
//     unanswered: Postgres rolls the transaction back and the row reappears
//     unchanged. That is a crash, not an attempt: attempts is not
//     incremented. OutcomeError, because the client cannot know whether a
//     COMMIT it sent took effect.
//   - Run's ctx ends and the handler gives up: the transaction is rolled back
//     and the row reappears unchanged. OutcomeAbandoned.
//
// Handlers must therefore be idempotent towards the outside world (use
// idempotency keys derived from the item), because an item may be handled
// again after a crash, a lost connection or an unknown COMMIT outcome. What
// the library guarantees is that an item is committed as done at most once
// and is never lost.
//
// # Why a savepoint
//
// A failed attempt must be recorded (attempts+1, a backoff, or parked) without
// keeping what the handler wrote, and without ever letting the row be seen
// unclaimed in between. Rolling back the claiming transaction and recording
// in a second one fails both ways: between the two, any worker can claim the
// row again at once, skipping the backoff; and a crash between them records
// nothing, so an item that always fails (or crashes its worker) is retried
// forever, immediately, with attempts stuck at 0 — a retry storm. Rolling
// back to a savepoint taken just after the claiming DELETE keeps the DELETE
// and its row lock, drops everything else, and lets the re-INSERT commit
// atomically with the claim. The SAVEPOINT is pipelined with the claim (no
// extra round trip), and a subtransaction exists only if the handler writes.
//
// # Fences
//
// A claim ends when its session does, but a call the handler had in flight
// to an external system does not: it may still take effect, after another
// worker took the item over and — worse — after the key's next item (a
// newer change of the same instance) was handled, which the late effect then
// undoes. [Tx.Fence], called before the first external call, commits a
// fence on the item's key that outlives the claim: until it ends, no other
// item with that key is claimed (the item itself is, since a takeover repeats
// the same change). A claim that commits removes its fence with it, or, when
// a call went unanswered ([Tx.Unsettled]), keeps it only as long as that
// call may still land; so on the happy path a fence costs one statement and
// delays nothing.
//
// # Timeouts
//
// Every database call carries an application deadline (RunnerOptions
// DBTimeout; for a handler's own statements StatementTimeout + DBTimeout),
// because a blackholed connection never errors by itself. Each claiming
// transaction also sets statement_timeout and
// idle_in_transaction_session_timeout for itself (in the claim), so that Postgres itself
// ends the session of a worker that went silent and frees its row. A handler
// that spends longer than IdleInTxTimeout between two statements (a slow call
// to an external system) loses its claim the same way: size IdleInTxTimeout
// above the slowest external call a handler makes.
//
// # Wake-up
//
// A Runner LISTENs on a dedicated connection (taken from the pool and
// hijacked; its application_name gets the suffix ListenerApplicationName) and
// a notification wakes one idle worker; a worker that claims something wakes
// another, so a burst enqueued in one transaction (one notification) fans out.
// A worker that commits claims again at once, so a handler's follow-up needs
// no wake-up of its own: follow-ups notify at most once per NotifyEvery,
// which keeps other runners' idle workers coming while NOTIFY, which
// serialises every notifying commit of the cluster on one lock, stays off
// the hot path. Workers also poll every PollInterval, or sooner when the
// next item is due sooner, so a dead listener, a spaced-out or a lost
// notification costs latency, never work. A listener that errors, or that stays silent and then fails a ping,
// is reconnected with backoff.
//
// # Shutdown
//
// When Run's ctx ends, workers stop claiming. A handler in progress keeps its
// ctx for ShutdownGrace: if it returns nil the item commits; if it returns an
// error after its ctx ended, the transaction is rolled back whole and the
// item reappears unchanged (OutcomeAbandoned). The finishing database calls
// (COMMIT, ROLLBACK) do not depend on Run's ctx, only on DBTimeout, so an
// item is never left half-finished: each transaction commits or not as a
// whole.
//
// The exported API is a contract other packages (kvx, sim) build against:
// extend it, do not change signatures.
package work
