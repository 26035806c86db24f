// Package riverkvx is KVX, the harness's reference control plane, written on
// a real third-party Postgres queue, River (github.com/riverqueue/river with
// its pgx v5 driver), the way River's documentation suggests: a change's job
// is inserted with Client.InsertTx in the request's own transaction, a worker
// completes its job with river.JobCompleteTx in the transaction that records
// the change's effects, an intransient error cancels the job
// (river.JobCancel), an operator's resume retries cancelled jobs
// (Client.JobRetryTx), and Inspect lists the jobs with Client.JobListTx. No
// SQL of its own touches River's tables, and nothing rescues a stuck job but
// River's own JobRescuer.
//
// It is the template for a team on a third-party queue: scenarios.Verify
// runs on it unchanged (gate_test.go), with the liveness bounds it declares
// (System.Liveness), which follow from how River claims a job: a committed
// row in state running, not a lock held by a session. Such a claim outlives
// the worker that made it; only River's rescuer frees it, after
// Config.RescueStuckJobsAfter, on its own schedule (every 30 s, which
// river.Config does not expose). Tuning says what this system runs with and
// why; README.md what the gate found with River's defaults.
//
// The domain — request validation, the instances table, idempotency keys,
// billable events, the provider clients — is package kvx's, so that what
// differs from the reference is the queue alone.
//
// Files:
//   - system.go: System, Options, Tuning, the promises it declares;
//   - serve.go: Migrate, Serve (InsertTx in the request's transaction),
//     Inspect (JobListTx), resume (JobRetryTx);
//   - worker.go: Work (one River client per worker) and the job workers;
//   - mutants.go: River-specific seeded bugs, each caught by the gate.
package riverkvx
