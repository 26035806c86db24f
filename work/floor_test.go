package work_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workproof/workproof/work"
)

// frozen is a clock that never moves, so that only the count of claims
// decides when a worker claims from the head of the queue.
type frozen struct{}

func (frozen) Now() time.Time { return time.Unix(1e9, 0) }

// claimTracer records the claims, in order: "head" or "floor", and "+" if
// it claimed an item.
type claimTracer struct {
	mu     sync.Mutex
	claims []string
}

func (c *claimTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	from := map[string]string{work.ClaimSkipLockedSQL: "head", work.ClaimFloorSQL: "floor"}[d.SQL]
	if from == "" || d.Err != nil {
		return
	}
	if d.CommandTag.RowsAffected() == 1 {
		from += "+"
	}
	c.mu.Lock()
	c.claims = append(c.claims, from)
	c.mu.Unlock()
}

func (c *claimTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *claimTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// A Tracer must trace queries too; claims are never single queries.
func (c *claimTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (c *claimTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestClaimFloorStillClaimsOlderItems: an item due before a worker's floor
// (here a follow-up enqueued to run an hour ago) waits while later items are
// claimable (it is not claimed next: the floor is in use) and is claimed by
// the first claim from the head, at most work.FloorEvery claims later; with
// nothing later left, a claim from the floor that finds nothing is followed
// at once by one from the head.
func TestClaimFloorStillClaimsOlderItems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later int // items claimable from the floor on when the old one comes in
		// The old item's place among the claims after the one whose item
		// enqueued it (1: the next claim).
		wantMin, wantMax int
	}{
		{"behind later items", 3 * work.FloorEvery, 2, work.FloorEvery + 1},
		{"alone", 1, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &claimTracer{}
			pool := tracedPool(t, newDB(t).DSN(), 3, tr)

			var order []string // one worker: one item at a time
			var enqueued atomic.Bool
			h := map[string]work.Handler{
				"n": func(_ context.Context, tx *work.Tx, _ work.Item) error {
					order = append(order, "n")
					if enqueued.CompareAndSwap(false, true) {
						return tx.EnqueueAtCommit(work.Job{Kind: "old", RunAfter: time.Now().Add(-time.Hour)})
					}
					return nil
				},
				"old": func(context.Context, *work.Tx, work.Item) error {
					order = append(order, "old")
					return nil
				},
			}
			jobs := make([]work.Job, tc.later+1)
			for i := range jobs {
				jobs[i] = work.Job{Kind: "n"}
			}
			enqueue(t, pool, jobs...)
			rec := &seqRecorder{}
			opts := fastOpts(h, rec, t, "runner")
			opts.Clock = frozen{}
			stop := start(t, pool, opts)
			waitFor(t, "every item done", func() bool { return rec.done() == len(jobs)+1 })
			stop()

			if at := slices.Index(order, "old"); at < tc.wantMin || at > tc.wantMax {
				t.Errorf("the old item was claimed %d claims after the one that enqueued it; want %d to %d (%v)", at, tc.wantMin, tc.wantMax, order)
			}
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if !slices.Contains(tr.claims, "floor+") {
				t.Errorf("claims %v: none from a floor", tr.claims)
			}
			for i, c := range tr.claims[:len(tr.claims)-1] {
				if c == "floor" && tr.claims[i+1] != "head+" && tr.claims[i+1] != "head" {
					t.Errorf("claims %v: claim %d found nothing from the floor, and the next was not from the head", tr.claims, i)
				}
			}
		})
	}
}

// TestClaimFloorSkipsClaimedEntries: from a floor, a claim reads a few
// blocks however many items were claimed before it (their index entries
// stay until VACUUM); from the head it reads past all of them.
func TestClaimFloorSkipsClaimedEntries(t *testing.T) {
	const claimed, left = 20000, 10
	pool := newPool(t, newDB(t).DSN(), 2)
	ctx := context.Background()
	for _, s := range []struct {
		sql  string
		args []any
	}{
		{`ALTER TABLE work SET (autovacuum_enabled = off)`, nil},
		// One item a second apart: the floor's slack covers one item.
		{`INSERT INTO work (kind, run_after) SELECT 'n', now() - g * interval '1 second' FROM generate_series(1, $1) g`, []any{claimed + left}},
		{`DELETE FROM work WHERE id IN (SELECT id FROM work ORDER BY run_after LIMIT $1)`, []any{claimed}},
	} {
		if _, err := pool.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
	var floor time.Time
	if err := pool.QueryRow(ctx, `SELECT min(run_after) FROM work`).Scan(&floor); err != nil {
		t.Fatal(err)
	}
	// The claim as the runner runs it, a prepared statement, on a generic
	// plan (what Postgres keeps using after five executions, see
	// TestClaimsKeepTheirGenericPlans) and on a custom one (the first five).
	blocks := func(floor *time.Time, mode string) int {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		q, args := work.ClaimSkipLockedSQL, `'30000', '10000'`
		if floor != nil {
			q, args = work.ClaimFloorSQL, args+`, '`+floor.Format(time.RFC3339Nano)+`'`
		}
		for _, s := range []string{`SET LOCAL plan_cache_mode = ` + mode, `PREPARE claim AS ` + q} {
			if _, err := tx.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		// PREPARE is not undone by a rollback.
		defer func() { _, _ = tx.Exec(ctx, `DEALLOCATE claim`) }()
		return explain(t, tx, `EXECUTE claim(`+args+`)`).Hit
	}
	blocks(nil, "auto") // marks the claimed entries dead, as the scans of a running queue do
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		head, fromFloor := blocks(nil, mode), blocks(&floor, mode)
		t.Logf("%s: blocks a claim read after %d claimed items: %d from the head, %d from the floor", mode, claimed, head, fromFloor)
		if fromFloor*5 > head {
			t.Errorf("%s: a claim from the floor read %d blocks, from the head %d; want at most a fifth", mode, fromFloor, head)
		}
	}
}

// TestClaimsKeepTheirGenericPlans: every statement a worker prepares runs on
// a generic plan after its first five executions, as a statement whose plan
// does not depend on its parameters does. The floor claim compared the floor
// ($3) with run_after, so Postgres estimated that bound anew for each value
// and planned claims afresh (in a benchmark 755 of 1,253 on one connection,
// here every one): planning that DELETE cost more than running it. The
// floor now reaches the claim through a subquery, which Postgres does not
// estimate in either kind of plan.
func TestClaimsKeepTheirGenericPlans(t *testing.T) {
	const items = 200
	pool := newPool(t, newDB(t).DSN(), 3)
	type prepared struct {
		sql             string
		generic, custom int64
	}
	var (
		seen    []prepared
		listErr error
		n       atomic.Int64
		listed  = make(chan struct{})
	)
	h := map[string]work.Handler{
		"a": func(_ context.Context, tx *work.Tx, _ work.Item) error {
			return tx.EnqueueAtCommit(work.Job{Kind: "b"})
		},
		"b": func(ctx context.Context, tx *work.Tx, _ work.Item) error {
			if n.Add(1) != items {
				return nil
			}
			// The handler's transaction is on its worker's connection, whose
			// prepared statements this lists.
			rows, err := tx.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE NOT from_sql`)
			if err == nil {
				seen, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (p prepared, err error) {
					return p, r.Scan(&p.sql, &p.generic, &p.custom)
				})
			}
			listErr = err
			close(listed)
			return nil
		},
	}
	// A queue with statistics, as a queue in use has.
	for _, s := range []string{`INSERT INTO work (kind) SELECT 'a' FROM generate_series(1, 1000)`, `ANALYZE work`} {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	rec := &seqRecorder{}
	opts := fastOpts(h, rec, t, "runner")
	opts.Clock = frozen{} // claims from the floor but for every work.FloorEvery-th
	stop := start(t, pool, opts)
	select {
	case <-listed:
	case <-time.After(time.Minute):
		t.Fatal("the worker's prepared statements were not listed within a minute")
	}
	stop()
	if listErr != nil {
		t.Fatal(listErr)
	}

	floor := false
	for _, p := range seen {
		floor = floor || p.sql == work.ClaimFloorSQL
		if p.custom > 5 {
			t.Errorf("%d custom plans and %d generic ones of %s", p.custom, p.generic, p.sql)
		}
	}
	if !floor {
		t.Errorf("no claim from the floor among the worker's prepared statements %v", seen)
	}
}
