package riverkvx

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim/check"
)

// Mutant is a bug a team on River writes easily: each is this system with
// one part done the way River's API allows and the harness forbids. Every
// mutant keeps the reference's promise (System.Liveness), so one that
// recovers slower is held to it.
type Mutant struct {
	Name   string          // stable: reports and test names use it
	Breaks check.Invariant // the invariant it breaks
	Doc    string          // the bug, and what exposes it
	// CaughtBy names the named scenario of package scenarios that catches
	// it; the explore family catches each too.
	CaughtBy string
	New      func() contract.System
}

// Mutants returns the River-specific mutants, in a stable order.
func Mutants() []Mutant {
	return []Mutant{
		{
			Name:   "CompleteOutsideTx",
			Breaks: check.InvLostWork,
			Doc: "The job is completed with river.JobCompleteTx in a transaction of its own, committed before the " +
				"transaction that records the change's effects (has_active_work cleared, observed state). A crash " +
				"between the two commits leaves the job completed and the change never recorded: the instance keeps " +
				"has_active_work with no job to clear it, and every later change is refused as busy.",
			CaughtBy: "crash-after-vm-before-commit",
			New:      func() contract.System { return New(Options{variant: variant{completeFirst: true}}) },
		},
		{
			Name:   "EmailBeforeComplete",
			Breaks: check.InvAtMostOnce,
			Doc: "The welcome email is sent inside the job's transaction, before JobCompleteTx and the commit. The " +
				"email service has no idempotency key: a crash or a lost commit after the send makes River retry " +
				"the job, which sends it again.",
			CaughtBy: "crash-after-email-before-commit",
			New:      func() contract.System { return New(Options{variant: variant{emailInTx: true}}) },
		},
		{
			Name:   "UniqueKeyPerChange",
			Breaks: check.InvRace,
			Doc: "has_active_work is dropped in favour of River's unique jobs (UniqueOpts{ByArgs: true}) to keep two " +
				"changes of one instance from running at once; but the args are the whole change, generation " +
				"included, so every change has a key of its own: two concurrent resizes are both accepted and both " +
				"jobs run at once.",
			CaughtBy: "concurrent-resizes",
			New: func() contract.System {
				return New(Options{variant: variant{record: recordWithoutLockout, unique: &river.UniqueOpts{ByArgs: true}}})
			},
		},
		{
			Name:   "RiverDefaults",
			Breaks: check.InvConvergence,
			Doc: "River with its defaults (RescueStuckJobsAfter 1 h, JobTimeout 1 min, attempt⁴-second backoff, 25 " +
				"attempts) under this system's promise: a crashed worker's job stays running for an hour, since only " +
				"the rescuer frees a committed claim, and the gate's liveness phase finds it still running long after " +
				"the promised settle bound.",
			CaughtBy: "crash-after-vm-before-commit",
			New:      func() contract.System { return New(Options{Tuning: Tuning{RiverDefaults: true}}) },
		},
	}
}

// completeAlone is mutant CompleteOutsideTx's completion: JobCompleteTx in
// a transaction of its own, committed at once.
func completeAlone[T args](ctx context.Context, db *pgxpool.Pool, job *river.Job[T]) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}

// recordWithoutLockout is kvx.RecordChange without the has_active_work
// check for a resize or delete (mutant UniqueKeyPerChange): the unique job
// is meant to do that.
func recordWithoutLockout(ctx context.Context, tx pgx.Tx, req contract.Request) (kvx.Change, bool, error) {
	if req.Op == contract.OpCreate {
		return kvx.RecordChange(ctx, tx, req)
	}
	size, state := &req.Size, kvx.StateResizing
	if req.Op == contract.OpDelete {
		size, state = nil, kvx.StateDeleting
	}
	c := kvx.Change{Op: req.Op, ID: req.Instance}
	err := tx.QueryRow(ctx, `
		UPDATE instances
		SET desired_size = $2, deleting = $2::text IS NULL, generation = nextval('kvx_generation'), has_active_work = true, state = $3
		WHERE id = $1 AND NOT deleting
		RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
		req.Instance, size, state).Scan(&c.UID, &c.Generation, &c.Customer, &c.Size)
	if errors.Is(err, pgx.ErrNoRows) {
		return kvx.Change{}, false, nil
	}
	if err != nil {
		return kvx.Change{}, false, fmt.Errorf("record change: %w", err)
	}
	return c, true, nil
}
