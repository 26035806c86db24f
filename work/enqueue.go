package work

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Job is work to enqueue.
type Job struct {
	Kind string // required: selects the handler
	Key  string // what the work is about (an instance id); used for observation, not locking
	Spec any    // marshalled to the jsonb spec column; zero: {}
	// RunAfter delays the first attempt; zero: now (the database's clock).
	RunAfter time.Time
}

// ErrInvalidJob is returned by Enqueue for a job it cannot store.
var ErrInvalidJob = errors.New("work: invalid job")

// enqueueSQL inserts and notifies in one statement (one round trip).
// Postgres delivers the notification only if the transaction commits, and
// folds identical notifications of one transaction into one, so a
// transaction that enqueues many items of one kind wakes one worker; a worker
// that claims something wakes the next (see Runner).
const enqueueSQL = enqueueQuietSQL + `, LATERAL pg_notify('` + Channel + `', ins.kind)`

// enqueueQuietSQL is enqueueSQL without the notification, for a follow-up
// that RunnerOptions.NotifyEvery lets go unannounced. (The same shape, so
// that a statement tracer names both the same: "sql:insert work".)
const enqueueQuietSQL = `
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ($1, $2, $3, coalesce($4::timestamptz, now()))
	RETURNING id, kind
)
SELECT ins.id FROM ins`

// Enqueue inserts a job inside the caller's transaction and notifies
// listeners on commit. It returns the new item's id.
//
// tx may be the *Tx a handler got: a follow-up enqueued there commits
// atomically with the item that caused it, and vanishes with the handler's
// other writes if the handler fails. A follow-up notifies at most once per
// RunnerOptions.NotifyEvery of its runner: the worker that commits it claims
// again at once, so it needs no wake-up of its own.
func Enqueue(ctx context.Context, tx pgx.Tx, j Job) (int64, error) {
	args, err := j.args()
	if err != nil {
		return 0, err
	}
	q := enqueueSQL
	if t, ok := tx.(*Tx); ok && !t.notify.due() {
		q = enqueueQuietSQL
	}
	var id int64
	if err := tx.QueryRow(ctx, q, args...).Scan(&id); err != nil {
		return 0, fmt.Errorf("work: enqueue %q: %w", j.Kind, err)
	}
	return id, nil
}

// EnqueueAtCommit is Enqueue for a follow-up whose id the handler does not
// need: the insert goes out with the claiming transaction's COMMIT, in the
// same round trip, instead of a round trip of its own. It checks the job at
// once (ErrInvalidJob). The job is dropped if the handler returns an error;
// if its insert fails at commit, nothing of the attempt commits and the
// attempt fails as if the handler had returned that error (IsIntransient
// decides whether it is retried or parked).
// Notifications are spaced as Enqueue's on a handler's Tx.
func (tx *Tx) EnqueueAtCommit(j Job) error {
	args, err := j.args()
	if err != nil {
		return err
	}
	q := enqueueSQL
	if !tx.notify.due() {
		q = enqueueQuietSQL
	}
	tx.mu.Lock()
	tx.atCommit = append(tx.atCommit, queued{sql: q, args: args})
	tx.mu.Unlock()
	return nil
}

// queued is an insert of EnqueueAtCommit.
type queued struct {
	sql  string
	args []any
}

// queueAtCommit adds the EnqueueAtCommit inserts to b, which ends with the
// COMMIT.
func (tx *Tx) queueAtCommit(b *pgx.Batch) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	for _, q := range tx.atCommit {
		b.Queue(q.sql, q.args...)
	}
}

// args are enqueueSQL's arguments for j.
func (j Job) args() ([]any, error) {
	if j.Kind == "" {
		return nil, fmt.Errorf("%w: empty Kind", ErrInvalidJob)
	}
	spec := "{}"
	if j.Spec != nil {
		b, err := json.Marshal(j.Spec)
		if err != nil {
			return nil, fmt.Errorf("%w: spec of kind %q: %w", ErrInvalidJob, j.Kind, err)
		}
		if string(b) != "null" {
			spec = string(b)
		}
	}
	var runAfter *time.Time
	if !j.RunAfter.IsZero() {
		runAfter = &j.RunAfter
	}
	return []any{j.Kind, j.Key, spec, runAfter}, nil
}
