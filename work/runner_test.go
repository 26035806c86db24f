package work_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workproof/workproof/work"
)

func TestMigrateIdempotent(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 8)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- work.Migrate(context.Background(), pool) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Migrate on a migrated database: %v", err)
		}
	}
}

// TestMigrateUpgradesFenceTable: a work_fence made by an earlier Migrate
// (one row per key) gets one row per key and claim, so that a takeover's
// fence no longer collides with the lost claim's.
func TestMigrateUpgradesFenceTable(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 2)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `DROP TABLE work_fence; CREATE TABLE work_fence (
		key text PRIMARY KEY, item bigint NOT NULL, claim text NOT NULL, until timestamptz NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := work.Migrate(ctx, pool); err != nil {
			t.Fatalf("Migrate over the old fence table: %v", err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO work_fence VALUES ('k', 1, 'a', now()), ('k', 1, 'b', now())`); err != nil {
		t.Errorf("two claims' fences on one key after the upgrade: %v", err)
	}
}

func TestEnqueue(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 4)
	ctx := context.Background()
	later := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	ids := enqueue(t, pool,
		work.Job{Kind: "a", Key: "i-1", Spec: map[string]int{"n": 1}},
		work.Job{Kind: "b", RunAfter: later},
	)
	rows := list(t, pool)
	if len(rows) != 2 || rows[0].ID != ids[0] || rows[1].ID != ids[1] {
		t.Fatalf("rows %+v, want ids %v", rows, ids)
	}
	if rows[0].Kind != "a" || rows[0].Key != "i-1" || string(rows[0].Spec) != `{"n": 1}` || rows[0].Parked || rows[0].Attempts != 0 {
		t.Errorf("row 0 = %+v", rows[0])
	}
	if string(rows[1].Spec) != `{}` || !rows[1].RunAfter.Equal(later) {
		t.Errorf("row 1 = %+v, want spec {} and run_after %v", rows[1], later)
	}

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := work.Enqueue(ctx, tx, work.Job{})
		return err
	})
	if !errors.Is(err, work.ErrInvalidJob) {
		t.Errorf("Enqueue without a kind: %v, want ErrInvalidJob", err)
	}

	// A rolled-back enqueue leaves nothing and notifies nobody.
	_ = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := work.Enqueue(ctx, tx, work.Job{Kind: "c"}); err != nil {
			t.Fatal(err)
		}
		return errors.New("roll back")
	})
	if n := len(list(t, pool)); n != 2 {
		t.Errorf("%d rows after a rolled-back enqueue, want 2", n)
	}
}

// TestDone: a handler's writes, its follow-up and the claim commit together;
// AfterCommit runs after the commit is visible to others.
func TestDone(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (item bigint, what text)`); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var hookSawRow atomic.Int32
	var hooks atomic.Int32
	h := map[string]work.Handler{
		"parent": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			var spec struct{ N int }
			if err := json.Unmarshal(it.Spec, &spec); err != nil {
				return work.Intransient("bad spec", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1, 'parent')`, it.ID); err != nil {
				return err
			}
			if _, err := work.Enqueue(ctx, tx, work.Job{Kind: "child", Key: it.Key, Spec: spec}); err != nil {
				return err
			}
			if err := tx.Commit(ctx); !errors.Is(err, work.ErrNotYours) {
				return work.Intransient("Commit in a handler", err)
			}
			tx.AfterCommit(func(context.Context) {
				hooks.Add(1)
				// Another session sees the commit: the row is gone.
				var n int
				if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM work WHERE id = $1`, it.ID).Scan(&n); err == nil && n == 0 {
					hookSawRow.Add(1)
				}
			})
			return nil
		},
		"child": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			_, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1, 'child:' || $2)`, it.ID, string(it.Spec))
			return err
		},
	}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	ids := enqueue(t, pool, work.Job{Kind: "parent", Key: "i-1", Spec: map[string]int{"N": 7}})
	waitFor(t, "parent and child done", func() bool { return rec.count(work.OutcomeDone) == 2 })
	if got := rec.outcomes(ids[0]); !slices.Equal(got, []work.Outcome{work.OutcomeDone}) {
		t.Errorf("parent outcomes %v", got)
	}
	if hooks.Load() != 1 || hookSawRow.Load() != 1 {
		t.Errorf("AfterCommit ran %d times, saw the commit %d times; want 1, 1", hooks.Load(), hookSawRow.Load())
	}
	var effects []string
	rows, _ := pool.Query(ctx, `SELECT what FROM effects ORDER BY what`)
	effects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(effects, []string{`child:{"N": 7}`, "parent"}) {
		t.Errorf("effects %q", effects)
	}
	if rows := list(t, pool); len(rows) != 0 {
		t.Errorf("work left: %+v", rows)
	}
}

// TestExactlyOnce: many workers, many items, no faults: every item is
// handled exactly once and never by two workers at once.
func TestExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		strategy work.Strategy
		items    int
	}{
		{work.SkipLocked, 10000},
		{work.Seed, 1000},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			items := tc.items
			if testing.Short() {
				items /= 10
			}
			const workers = 8
			pool := newPool(t, newDB(t).DSN(), workers+2)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `INSERT INTO work (kind, key) SELECT 'noop', i::text FROM generate_series(1, $1) i`, items); err != nil {
				t.Fatal(err)
			}
			type interval struct {
				worker     int64
				start, end time.Time
			}
			var mu sync.Mutex
			spans := map[int64][]interval{}
			var done atomic.Int64
			h := map[string]work.Handler{"noop": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				// The worker is told apart by its session's backend pid.
				iv := interval{start: time.Now(), worker: int64(tx.Conn().PgConn().PID())}
				iv.end = time.Now()
				mu.Lock()
				spans[it.ID] = append(spans[it.ID], iv)
				mu.Unlock()
				tx.AfterCommit(func(context.Context) { done.Add(1) })
				return nil
			}}
			opts := fastOpts(h, nil, t, "runner")
			opts.Workers = workers
			opts.Strategy = tc.strategy
			stop := start(t, pool, opts)
			waitFor(t, "all items done", func() bool { return done.Load() == int64(items) })
			stop()

			mu.Lock()
			defer mu.Unlock()
			if len(spans) != items {
				t.Errorf("%d distinct items handled, want %d", len(spans), items)
			}
			for id, ivs := range spans {
				if len(ivs) != 1 {
					t.Errorf("item %d handled %d times: %+v", id, len(ivs), ivs)
				}
				slices.SortFunc(ivs, func(a, b interval) int { return a.start.Compare(b.start) })
				for i := 1; i < len(ivs); i++ {
					if ivs[i].start.Before(ivs[i-1].end) {
						t.Errorf("item %d: workers %d and %d inside it at once", id, ivs[i-1].worker, ivs[i].worker)
					}
				}
			}
			if rows := list(t, pool); len(rows) != 0 {
				t.Errorf("%d rows left", len(rows))
			}
		})
	}
}

// TestTransientRetried: transient errors are recorded (attempts, last_error)
// and retried after a backoff computed from the attempts, then the item
// completes.
func TestTransientRetried(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	const fails = 3
	type seen struct {
		attempts  int
		claimedAt time.Time // the claiming transaction's now()
		row       work.Row  // the committed row, as another session sees it
	}
	var mu sync.Mutex
	var seq []seen
	h := map[string]work.Handler{"flaky": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		s := seen{attempts: it.Attempts}
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&s.claimedAt); err != nil {
			return err
		}
		rows, err := work.List(ctx, pool)
		if err != nil || len(rows) != 1 {
			return work.Intransient("list", fmt.Errorf("%v rows, err %v", len(rows), err))
		}
		s.row = rows[0]
		mu.Lock()
		seq = append(seq, s)
		mu.Unlock()
		if it.Attempts < fails {
			// A follow-up that must vanish with the failure.
			if _, err := work.Enqueue(ctx, tx, work.Job{Kind: "never"}); err != nil {
				return err
			}
			return fmt.Errorf("flaky %d", it.Attempts)
		}
		return nil
	}}
	opts := fastOpts(h, rec, t, "runner")
	opts.MinBackoff, opts.MaxBackoff = 40*time.Millisecond, 100*time.Millisecond
	start(t, pool, opts)
	id := enqueue(t, pool, work.Job{Kind: "flaky"})[0]
	waitFor(t, "done", func() bool { return rec.last(id) == work.OutcomeDone })
	want := []work.Outcome{work.OutcomeRetry, work.OutcomeRetry, work.OutcomeRetry, work.OutcomeDone}
	if got := rec.outcomes(id); !slices.Equal(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, s := range seq {
		if s.attempts != k || s.row.Attempts != k {
			t.Errorf("attempt %d: item says %d, row says %d", k, s.attempts, s.row.Attempts)
		}
		if k == 0 {
			continue
		}
		if want := fmt.Sprintf("flaky %d", k-1); s.row.LastError != want {
			t.Errorf("attempt %d: last_error %q, want %q", k, s.row.LastError, want)
		}
		// run_after = the failed attempt's now() + backoff, backoff in
		// [d/2, d) for d = min(max, min·2^(k-1)).
		d := min(opts.MaxBackoff, opts.MinBackoff<<(k-1))
		got := s.row.RunAfter.Sub(seq[k-1].claimedAt)
		if got < d/2 || got > d {
			t.Errorf("attempt %d: delayed %v after the failure, want within [%v, %v]", k, got, d/2, d)
		}
		if !s.claimedAt.After(s.row.RunAfter) && !s.claimedAt.Equal(s.row.RunAfter) {
			t.Errorf("attempt %d claimed at %v, before its run_after %v", k, s.claimedAt, s.row.RunAfter)
		}
	}
	if rows := list(t, pool); len(rows) != 0 {
		t.Errorf("left: %+v (a follow-up of a failed attempt survived?)", rows)
	}
}

// TestParked: intransient failures park the item with its reason; it gets no
// further attempt while other work flows, and completes after Release.
func TestParked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   string // "" = the case's own kind
		fail   func(ctx context.Context, tx *work.Tx) error
		reason string // substring of last_error
	}{
		{"intransient", "", func(context.Context, *work.Tx) error {
			return work.Intransient("bad spec", errors.New("size xxl"))
		}, "bad spec: size xxl"},
		{"unique violation", "", func(ctx context.Context, tx *work.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO uniq VALUES (1), (1)`)
			return fmt.Errorf("insert: %w", err)
		}, "23505"},
		{"swallowed error", "", func(ctx context.Context, tx *work.Tx) error {
			_, _ = tx.Exec(ctx, `SELECT 1/0`)
			return nil
		}, work.ErrTxAborted.Error()},
		{"panic", "", func(context.Context, *work.Tx) error { panic("oops") }, "panicked: oops"},
		{"unknown kind", "mystery", nil, work.ErrNoHandler.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, newDB(t).DSN(), 6)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `CREATE TABLE uniq (n int PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			var fixed atomic.Bool
			var calls, callsAfterFix atomic.Int32
			h := map[string]work.Handler{
				"buggy": func(ctx context.Context, tx *work.Tx, it work.Item) error {
					calls.Add(1)
					if fixed.Load() {
						callsAfterFix.Add(1)
						if it.Attempts != 0 {
							return work.Intransient("attempts not reset by Release", nil)
						}
						return nil
					}
					return tc.fail(ctx, tx)
				},
				"other": func(context.Context, *work.Tx, work.Item) error { return nil },
			}
			opts := fastOpts(h, rec, t, "runner")
			opts.Workers = 2
			stop := start(t, pool, opts)
			kind := "buggy"
			if tc.kind != "" {
				kind = tc.kind
			}
			id := enqueue(t, pool, work.Job{Kind: kind, Key: "i-1"})[0]
			waitFor(t, "parked", func() bool { return rec.last(id) == work.OutcomeParked })
			rows := list(t, pool)
			if len(rows) != 1 || !rows[0].Parked || rows[0].Attempts != 1 || !strings.Contains(rows[0].LastError, tc.reason) {
				t.Fatalf("rows %+v, want one parked row, attempts 1, last_error containing %q", rows, tc.reason)
			}
			// Other work flows past it, for a few poll intervals.
			for range 3 {
				other := enqueue(t, pool, work.Job{Kind: "other"})[0]
				waitFor(t, "other work done", func() bool { return rec.last(other) == work.OutcomeDone })
				time.Sleep(opts.PollInterval)
			}
			if got := rec.outcomes(id); len(got) != 1 {
				t.Fatalf("parked item attempted again: %v", got)
			}
			before := calls.Load()

			if tc.kind != "" {
				// "Deploy" a handler for the kind: a new runner.
				stop()
				h2 := map[string]work.Handler{tc.kind: h["buggy"]}
				start(t, pool, fastOpts(h2, rec, t, "runner2"))
			}
			fixed.Store(true)
			n, err := work.Release(ctx, pool)
			if err != nil || n != 1 {
				t.Fatalf("Release = %d, %v; want 1", n, err)
			}
			waitFor(t, "done after release", func() bool { return rec.last(id) == work.OutcomeDone })
			if got := rec.outcomes(id); !slices.Equal(got, []work.Outcome{work.OutcomeParked, work.OutcomeDone}) {
				t.Errorf("outcomes %v", got)
			}
			if callsAfterFix.Load() != 1 || (tc.kind == "" && before != 1) {
				t.Errorf("handler calls: %d before the fix (want 1), %d after (want 1)", before, callsAfterFix.Load())
			}
			if rows := list(t, pool); len(rows) != 0 {
				t.Errorf("left: %+v", rows)
			}
			if n, err := work.Release(ctx, pool); err != nil || n != 0 {
				t.Errorf("second Release = %d, %v; want 0", n, err)
			}
		})
	}
}

// TestFailedHandlerUndone: whatever a failing handler wrote through its Tx —
// a follow-up, a row, an AfterCommit hook — is gone with the failure.
func TestFailedHandlerUndone(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want work.Outcome
	}{
		{"transient", errors.New("provider 503"), work.OutcomeRetry},
		{"intransient", work.Intransient("provider 422", nil), work.OutcomeParked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, newDB(t).DSN(), 6)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `CREATE TABLE effects (item bigint)`); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			var hooks atomic.Int32
			h := map[string]work.Handler{"parent": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				if _, err := work.Enqueue(ctx, tx.Tx, work.Job{Kind: "child"}); err != nil {
					return err
				}
				// Inside a nested transaction that the handler commits:
				// still undone with the claim.
				nested, err := tx.Begin(ctx)
				if err != nil {
					return err
				}
				if _, err := nested.Exec(ctx, `INSERT INTO effects VALUES ($1)`, it.ID); err != nil {
					return err
				}
				if err := nested.Commit(ctx); err != nil {
					return err
				}
				tx.AfterCommit(func(context.Context) { hooks.Add(1) })
				return tc.err
			}}
			opts := fastOpts(h, rec, t, "runner")
			opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour // one attempt in this test
			start(t, pool, opts)
			id := enqueue(t, pool, work.Job{Kind: "parent"})[0]
			waitFor(t, "attempt recorded", func() bool { return rec.last(id) != "" })
			if got := rec.outcomes(id); !slices.Equal(got, []work.Outcome{tc.want}) {
				t.Fatalf("outcomes %v, want [%v]", got, tc.want)
			}
			rows := list(t, pool)
			if len(rows) != 1 || rows[0].ID != id || rows[0].Attempts != 1 {
				t.Errorf("rows %+v, want only the parent with attempts 1 (no follow-up)", rows)
			}
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&n); err != nil || n != 0 {
				t.Errorf("%d effects survived (err %v)", n, err)
			}
			if hooks.Load() != 0 {
				t.Errorf("AfterCommit ran after a failed handler")
			}
		})
	}
}

// TestCommitRefused: a COMMIT the server refuses (a deferred constraint)
// runs no AfterCommit hook, and the attempt is still recorded; also when
// the COMMIT went out with the next claim (no hook).
func TestCommitRefused(t *testing.T) {
	for _, hook := range []bool{true, false} {
		t.Run(fmt.Sprintf("hook=%v", hook), func(t *testing.T) { testCommitRefused(t, hook) })
	}
}

func testCommitRefused(t *testing.T, hook bool) {
	pool := newPool(t, newDB(t).DSN(), 6)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE uniq (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var hooks atomic.Int32
	h := map[string]work.Handler{"dup": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		if hook {
			tx.AfterCommit(func(context.Context) { hooks.Add(1) })
		}
		// Fine until COMMIT checks the deferred constraint.
		_, err := tx.Exec(ctx, `INSERT INTO uniq VALUES (1), (1)`)
		return err
	}}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	id := enqueue(t, pool, work.Job{Kind: "dup"})[0]
	waitFor(t, "parked", func() bool { return rec.last(id) == work.OutcomeParked })
	if hooks.Load() != 0 {
		t.Errorf("AfterCommit ran although COMMIT failed")
	}
	rows := list(t, pool)
	if len(rows) != 1 || !rows[0].Parked || rows[0].Attempts != 1 || !strings.Contains(rows[0].LastError, "23505") {
		t.Errorf("rows %+v, want the item parked with the unique violation", rows)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM uniq`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows in uniq (err %v)", n, err)
	}
}

// TestShutdown: when Run's ctx ends, the item in hand either finishes within
// the grace (and commits) or is given back unchanged — never half done.
func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		want  work.Outcome
	}{
		{"no grace: abandoned", 0, work.OutcomeAbandoned},
		{"grace: finishes", time.Minute, work.OutcomeDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, newDB(t).DSN(), 6)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `CREATE TABLE effects (item bigint)`); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			entered, release := make(chan struct{}), make(chan struct{})
			ctxAliveAfterStop := make(chan bool, 1)
			h := map[string]work.Handler{"slow": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				if _, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1)`, it.ID); err != nil {
					return err
				}
				close(entered)
				select {
				case <-release:
					ctxAliveAfterStop <- ctx.Err() == nil
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}}
			opts := fastOpts(h, rec, t, "runner")
			opts.ShutdownGrace = tc.grace
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- work.NewRunner(pool, opts).Run(runCtx) }()
			id := enqueue(t, pool, work.Job{Kind: "slow"})[0]
			<-entered
			cancel()
			if tc.grace > 0 {
				close(release)
				if !<-ctxAliveAfterStop {
					t.Error("handler ctx ended inside the grace")
				}
			}
			if err := <-ran; err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := rec.outcomes(id); !slices.Equal(got, []work.Outcome{tc.want}) {
				t.Fatalf("outcomes %v, want [%v]", got, tc.want)
			}
			rows := list(t, pool)
			var effects int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&effects); err != nil {
				t.Fatal(err)
			}
			switch tc.want {
			case work.OutcomeDone:
				if len(rows) != 0 || effects != 1 {
					t.Errorf("finished item: rows %+v, effects %d", rows, effects)
				}
			case work.OutcomeAbandoned:
				if len(rows) != 1 || rows[0].Attempts != 0 || rows[0].Parked || effects != 0 {
					t.Errorf("abandoned item must be back unchanged: rows %+v, effects %d", rows, effects)
				}
			}
		})
	}
}

// TestSessionTimeouts: each claiming transaction carries the configured
// statement and idle-in-transaction timeouts, and a statement timeout is a
// transient failure on a connection that survives it.
func TestSessionTimeouts(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 4)
	rec := &recorder{}
	var settings [2]string
	h := map[string]work.Handler{"slow": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		if err := tx.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).Scan(&settings[0], &settings[1]); err != nil {
			return err
		}
		if it.Attempts == 0 {
			_, err := tx.Exec(ctx, `SELECT pg_sleep(60)`)
			return err
		}
		return nil
	}}
	opts := fastOpts(h, rec, t, "runner")
	opts.StatementTimeout = 300 * time.Millisecond
	opts.IdleInTxTimeout = 1500 * time.Millisecond
	start(t, pool, opts)
	id := enqueue(t, pool, work.Job{Kind: "slow"})[0]
	waitFor(t, "done", func() bool { return rec.last(id) == work.OutcomeDone })
	if got := rec.outcomes(id); !slices.Equal(got, []work.Outcome{work.OutcomeRetry, work.OutcomeDone}) {
		t.Errorf("outcomes %v, want [retry done]", got)
	}
	if settings != [2]string{"300ms", "1500ms"} {
		t.Errorf("settings in the claiming transaction: %q", settings)
	}
	// Outside a claim, the caller's sessions are untouched.
	var st string
	if err := pool.QueryRow(context.Background(), `SELECT current_setting('statement_timeout')`).Scan(&st); err != nil || st != "0" {
		t.Errorf("pool session statement_timeout %q (err %v), want 0", st, err)
	}
}

// TestRunAfter: an item is not claimed before its run_after, while work
// behind it flows.
func TestRunAfter(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 4)
	rec := &recorder{}
	h := map[string]work.Handler{"job": func(context.Context, *work.Tx, work.Item) error { return nil }}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	later := enqueue(t, pool, work.Job{Kind: "job", RunAfter: time.Now().Add(time.Hour)})[0]
	now := enqueue(t, pool, work.Job{Kind: "job"})[0]
	waitFor(t, "the item due now", func() bool { return rec.last(now) == work.OutcomeDone })
	time.Sleep(3 * 50 * time.Millisecond) // a few poll intervals
	if got := rec.outcomes(later); len(got) != 0 {
		t.Errorf("item claimed before its run_after: %v", got)
	}
	if rows := list(t, pool); len(rows) != 1 || rows[0].ID != later {
		t.Errorf("rows %+v, want only the later item", rows)
	}
}

// CheckClaim tells a handler that its claiming session is gone before it
// acts again in the claim's name; it sees a live claim as live, and says
// nothing once the transaction committed.
func TestCheckClaim(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	var alive, afterKill, inHook atomic.Value
	h := map[string]work.Handler{
		"live": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			alive.Store(fmt.Sprint(tx.CheckClaim()))
			tx.AfterCommit(func(context.Context) { inHook.Store(fmt.Sprint(tx.CheckClaim())) })
			return nil
		},
		"killed": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			var pid int
			if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
				return err
			}
			err := tx.CheckClaim()
			afterKill.Store(err)
			return err
		},
	}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	enqueue(t, pool, work.Job{Kind: "live", Key: "a"}, work.Job{Kind: "killed", Key: "b"})
	waitFor(t, "both handled", func() bool { return alive.Load() != nil && inHook.Load() != nil && afterKill.Load() != nil })
	if got := alive.Load(); got != "<nil>" {
		t.Errorf("CheckClaim on a live claim = %v, want nil", got)
	}
	if got := inHook.Load(); got != "<nil>" {
		t.Errorf("CheckClaim after the commit = %v, want nil", got)
	}
	if err, _ := afterKill.Load().(error); !errors.Is(err, work.ErrClaimLost) {
		t.Errorf("CheckClaim after pg_terminate_backend = %v, want ErrClaimLost", afterKill.Load())
	}
}

// commitTracer counts the COMMITs a pool sends: alone, or first in a batch
// (with the next claim, as COMMIT AND CHAIN).
type commitTracer struct{ alone, batched atomic.Int32 }

func (c *commitTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.EqualFold(strings.TrimSpace(d.SQL), "commit") {
		c.alone.Add(1)
	}
	return ctx
}

func (c *commitTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *commitTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if d.Batch != nil && len(d.Batch.QueuedQueries) > 0 && d.Batch.QueuedQueries[0].SQL == work.ChainSQL {
		c.batched.Add(1)
	}
	return ctx
}

func (c *commitTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *commitTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// errorCount is a slog.Handler that counts the records at level Error.
type errorCount struct {
	slog.Handler
	n *atomic.Int32
}

func (e errorCount) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.n.Add(1)
	}
	return e.Handler.Handle(ctx, r)
}

// TestReadOnlyHandlerClaimsCleanly: COMMIT AND CHAIN, which commits an item
// and begins the worker's next claim, keeps a transaction's READ ONLY; a
// handler that set it has its item done and costs its worker one claim that
// fails and is tried again at once, not an error or a backoff.
func TestReadOnlyHandlerClaimsCleanly(t *testing.T) {
	const n = 5
	pool := newPool(t, newDB(t).DSN(), 3)
	rec := &seqRecorder{}
	h := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, _ work.Item) error {
		_, err := tx.Exec(ctx, "SET TRANSACTION READ ONLY")
		return err
	}}
	jobs := make([]work.Job, n)
	for i := range jobs {
		jobs[i] = work.Job{Kind: "job"}
	}
	enqueue(t, pool, jobs...)
	opts := fastOpts(h, rec, t, "runner")
	var errs atomic.Int32
	opts.Logger = slog.New(errorCount{opts.Logger.Handler(), &errs})
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour // a backoff would outlast the test
	stop := start(t, pool, opts)
	waitFor(t, "every item done", func() bool { return rec.done() == n })
	stop()
	if got := errs.Load(); got != 0 {
		t.Errorf("%d errors logged, want none", got)
	}
	if rows := list(t, pool); len(rows) != 0 {
		t.Errorf("left: %+v", rows)
	}
}

// TestCommitRidesWithNextClaim: an item without AfterCommit hooks is
// committed in the round trip of its worker's next claim, and the Observer
// hears of it before that claim's item begins; an item with a hook is
// committed alone, before the hook runs.
func TestCommitRidesWithNextClaim(t *testing.T) {
	const n = 20
	for _, hook := range []bool{false, true} {
		t.Run(fmt.Sprintf("hook=%v", hook), func(t *testing.T) {
			tr := &commitTracer{}
			pool := tracedPool(t, newDB(t).DSN(), 3, tr)
			var hooks atomic.Int32
			rec := &seqRecorder{}
			h := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				if hook {
					tx.AfterCommit(func(context.Context) { hooks.Add(1) })
				}
				return nil
			}}
			jobs := make([]work.Job, n)
			for i := range jobs {
				jobs[i] = work.Job{Kind: "job"}
			}
			enqueue(t, pool, jobs...)
			tr.alone.Store(0)
			stop := start(t, pool, fastOpts(h, rec, t, "runner"))
			waitFor(t, "every item done", func() bool { return rec.done() == n })
			stop()
			if rows := list(t, pool); len(rows) != 0 {
				t.Fatalf("left: %+v", rows)
			}
			alone, batched := tr.alone.Load(), tr.batched.Load()
			if hook && (alone != n || batched != 0 || hooks.Load() != n) {
				t.Errorf("with a hook: %d COMMITs alone, %d with a claim, %d hooks; want %d, 0, %d", alone, batched, hooks.Load(), n, n)
			}
			if !hook && (alone != 0 || batched != n) {
				t.Errorf("without a hook: %d COMMITs alone, %d with a claim; want 0, %d", alone, batched, n)
			}
			if err := rec.alternates(); err != nil {
				t.Error(err)
			}
		})
	}
}

// seqRecorder records one worker's Begin and end calls in order.
type seqRecorder struct {
	mu  sync.Mutex
	seq []string
	n   int
}

func (r *seqRecorder) Begin(it work.Item) func(work.Outcome) {
	r.mu.Lock()
	r.seq = append(r.seq, fmt.Sprintf("begin %d", it.ID))
	r.mu.Unlock()
	return func(o work.Outcome) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seq = append(r.seq, fmt.Sprintf("end %d %s", it.ID, o))
		if o == work.OutcomeDone {
			r.n++
		}
	}
}

func (r *seqRecorder) done() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// alternates checks that every item ended, done, before the next began.
func (r *seqRecorder) alternates() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i+1 < len(r.seq); i += 2 {
		var id int64
		if _, err := fmt.Sscanf(r.seq[i], "begin %d", &id); err != nil || r.seq[i+1] != fmt.Sprintf("end %d done", id) {
			return fmt.Errorf("observer calls out of order at %d: %v", i, r.seq)
		}
	}
	return nil
}

// TestEnqueueAtCommit: a follow-up of EnqueueAtCommit commits with its item
// (alone, or with the next claim), vanishes with a failed handler, and an
// insert that fails at commit fails the attempt whole: nothing of it
// commits, and the attempt is recorded.
func TestEnqueueAtCommit(t *testing.T) {
	for _, hook := range []bool{false, true} {
		t.Run(fmt.Sprintf("hook=%v", hook), func(t *testing.T) {
			pool := newPool(t, newDB(t).DSN(), 6)
			ctx := context.Background()
			for _, q := range []string{
				`CREATE TABLE effects (item bigint)`,
				`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused kind %', NEW.kind; END $$`,
				`CREATE TRIGGER refuse BEFORE INSERT ON work FOR EACH ROW WHEN (NEW.kind = 'refused') EXECUTE FUNCTION refuse()`,
			} {
				if _, err := pool.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			rec := &recorder{}
			var tries atomic.Int32
			h := map[string]work.Handler{
				"parent": func(ctx context.Context, tx *work.Tx, it work.Item) error {
					if hook {
						tx.AfterCommit(func(context.Context) {})
					}
					if err := tx.EnqueueAtCommit(work.Job{}); !errors.Is(err, work.ErrInvalidJob) {
						t.Errorf("EnqueueAtCommit of a job without a kind: %v", err)
					}
					if _, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1)`, it.ID); err != nil {
						return err
					}
					kind := "child"
					switch it.Key {
					case "refused":
						kind = "refused"
						tries.Add(1)
					case "fails":
						_ = tx.EnqueueAtCommit(work.Job{Kind: "child", Key: it.Key})
						return work.Intransient("", errors.New("no"))
					}
					return tx.EnqueueAtCommit(work.Job{Kind: kind, Key: it.Key, Spec: map[string]int{"n": 1}})
				},
				"child": func(context.Context, *work.Tx, work.Item) error { return nil },
			}
			start(t, pool, fastOpts(h, rec, t, "runner"))
			ids := enqueue(t, pool, work.Job{Kind: "parent", Key: "ok"}, work.Job{Kind: "parent", Key: "fails"}, work.Job{Kind: "parent", Key: "refused"})
			waitFor(t, "the child done and the others parked", func() bool {
				return rec.count(work.OutcomeDone) == 2 && rec.last(ids[1]) == work.OutcomeParked && rec.last(ids[2]) == work.OutcomeParked
			})
			var effects []int64
			rows, err := pool.Query(ctx, `SELECT item FROM effects`)
			if err == nil {
				effects, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			}
			if err != nil || !slices.Equal(effects, []int64{ids[0]}) {
				t.Errorf("effects %v (err %v), want only the committed parent's [%d]", effects, err, ids[0])
			}
			left := list(t, pool)
			if len(left) != 2 {
				t.Fatalf("left %+v, want the two parked parents", left)
			}
			for _, r := range left {
				switch r.ID {
				case ids[1]:
					if !r.Parked {
						t.Errorf("failed parent %+v, want parked", r)
					}
				case ids[2]:
					// A raised exception is intransient (IsIntransient), as if
					// the handler had returned it from Enqueue.
					if !r.Parked || !strings.Contains(r.LastError, "enqueue at commit: ERROR: refused kind refused") || tries.Load() != 1 {
						t.Errorf("refused parent %+v after %d tries, want it parked with the insert's error", r, tries.Load())
					}
				default:
					t.Errorf("unexpected row %+v", r)
				}
			}
		})
	}
}
