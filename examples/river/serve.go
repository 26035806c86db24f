package riverkvx

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
)

func migrate(ctx context.Context, db *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(db), nil)
	if err != nil {
		return fmt.Errorf("riverkvx: migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("riverkvx: migrate river: %w", err)
	}
	return kvx.MigrateInstances(ctx, db)
}

// dbTimeout bounds each Serve and Inspect.
const dbTimeout = 3 * time.Second

// Serve handles one request: get reads, resume retries parked jobs, and a
// create, resize or delete records the change and inserts its job in one
// transaction (InsertTx): the job exists if and only if the change does.
func (s *System) Serve(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	if err := kvx.Validate(req); err != nil {
		return contract.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	switch req.Op {
	case contract.OpGet:
		return kvx.Get(ctx, db, req.Instance)
	case contract.OpResume:
		n, err := s.resume(ctx, db)
		if err != nil {
			return contract.Response{}, fmt.Errorf("riverkvx: resume: %w", err)
		}
		return contract.Response{Resumed: n}, nil
	}
	return s.accept(ctx, db, req)
}

// accept is kvx.Accept with River's InsertTx in place of kvx's work table:
// one statement checks and sets (kvx.RecordChange), the job goes in with
// it, and a refusal made stale by a completion in between is tried again.
func (s *System) accept(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	return kvx.AcceptWith(ctx, db, req, kvx.AcceptSteps{Record: s.v.record, Enqueue: func(ctx context.Context, tx pgx.Tx, c kvx.Change) error {
		if _, err := s.inserts.InsertTx(ctx, tx, changeArgs(c), s.insertOpts()); err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		return nil
	}})
}

func (s *System) insertOpts() *river.InsertOpts {
	if s.v.unique == nil {
		return nil
	}
	return &river.InsertOpts{UniqueOpts: *s.v.unique}
}

// parkedStates are the job states this system shows as parked work: a
// cancelled job (an intransient error, River's JobCancel) and a discarded
// one (attempts spent) both wait for an operator, visibly, until resumed.
var parkedStates = []rivertype.JobState{rivertype.JobStateCancelled, rivertype.JobStateDiscarded}

// pendingStates are the states of work not done and not parked.
var pendingStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// maxListed bounds one JobListTx: far above what a run holds at once.
const maxListed = 10000

// resume is the operator's "a fix was deployed": every parked job is
// retried (River's JobRetryTx makes it available again), in one
// transaction.
func (s *System) resume(ctx context.Context, db *pgxpool.Pool) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		res, err := s.inserts.JobListTx(ctx, tx, river.NewJobListParams().States(parkedStates...).First(maxListed))
		if err != nil {
			return fmt.Errorf("list parked jobs: %w", err)
		}
		for _, j := range res.Jobs {
			if _, err := s.inserts.JobRetryTx(ctx, tx, j.ID); err != nil {
				return fmt.Errorf("retry job %d: %w", j.ID, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// Inspect reports every instance row and every job not completed, read in
// one snapshot (a REPEATABLE READ, read-only transaction), so that
// has_active_work and the job that will clear it are seen together.
func (s *System) Inspect(ctx context.Context, db *pgxpool.Pool) (contract.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var snap contract.Snapshot
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, customer, generation, coalesce(desired_size, ''), deleting, state,
			has_active_work, vm_id, observed_size, observed_gen FROM instances ORDER BY id`)
		if err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		snap.Instances, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (contract.Instance, error) {
			var in contract.Instance
			err := r.Scan(&in.ID, &in.Customer, &in.Generation, &in.DesiredSize, &in.Deleting, &in.State,
				&in.HasActiveWork, &in.VMID, &in.ObservedSize, &in.ObservedGen)
			return in, err
		})
		if err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		res, err := s.inserts.JobListTx(ctx, tx, river.NewJobListParams().
			States(append(pendingStates, parkedStates...)...).First(maxListed))
		if err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
		for _, j := range res.Jobs {
			snap.Work = append(snap.Work, workItem(j))
		}
		return nil
	})
	if err != nil {
		return contract.Snapshot{}, fmt.Errorf("riverkvx: inspect: %w", err)
	}
	return snap, nil
}

// workItem is a job as the harness sees work: parked when cancelled or
// discarded, with the last attempt's error as its reason.
func workItem(j *rivertype.JobRow) contract.WorkItem {
	w := contract.WorkItem{ID: strconv.FormatInt(j.ID, 10), Kind: j.Kind, Attempts: j.Attempt}
	if c, err := decodeChange(j.EncodedArgs); err == nil {
		w.Key = c.ID
	}
	if len(j.Errors) > 0 {
		w.Reason = j.Errors[len(j.Errors)-1].Error
	}
	switch j.State {
	case rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
		w.Parked = true
		if w.Reason == "" {
			w.Reason = string(j.State)
		}
	}
	return w
}
