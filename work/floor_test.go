package work_test

import (
	"context"
	"encoding/json"
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
	blocks := func(arg any) int {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var raw []byte
		q, args := work.ClaimSkipLockedSQL, []any{"30000", "10000"}
		if arg != nil {
			q, args = work.ClaimFloorSQL, append(args, arg)
		}
		if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+q, args...).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var plan []struct {
			Plan struct {
				Hit int `json:"Shared Hit Blocks"`
			}
		}
		if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
			t.Fatalf("plan %s: %v", raw, err)
		}
		return plan[0].Plan.Hit
	}
	blocks(nil) // marks the claimed entries dead, as the scans of a running queue do
	head, fromFloor := blocks(nil), blocks(floor)
	t.Logf("blocks a claim read after %d claimed items: %d from the head, %d from the floor", claimed, head, fromFloor)
	if fromFloor*5 > head {
		t.Errorf("a claim from the floor read %d blocks, from the head %d; want at most a fifth", fromFloor, head)
	}
}
