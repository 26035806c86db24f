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
	if j.Kind == "" {
		return 0, fmt.Errorf("%w: empty Kind", ErrInvalidJob)
	}
	spec := []byte("{}")
	if j.Spec != nil {
		b, err := json.Marshal(j.Spec)
		if err != nil {
			return 0, fmt.Errorf("%w: spec of kind %q: %w", ErrInvalidJob, j.Kind, err)
		}
		if string(b) != "null" {
			spec = b
		}
	}
	var runAfter *time.Time
	if !j.RunAfter.IsZero() {
		runAfter = &j.RunAfter
	}
	q := enqueueSQL
	if t, ok := tx.(*Tx); ok && !t.notify.due() {
		q = enqueueQuietSQL
	}
	var id int64
	if err := tx.QueryRow(ctx, q, j.Kind, j.Key, string(spec), runAfter).Scan(&id); err != nil {
		return 0, fmt.Errorf("work: enqueue %q: %w", j.Kind, err)
	}
	return id, nil
}
