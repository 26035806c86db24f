package work_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/work"
)

// fenceRow reads the fence on key: whether it exists and whether it is live.
func fenceRow(t *testing.T, pool *pgxpool.Pool, key string) (exists, live bool) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT until > now() FROM work_fence WHERE key = $1`, key).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false
	}
	if err != nil {
		t.Fatalf("read fence %q: %v", key, err)
	}
	return true, live
}

// TestFenceOutlivesALostClaim: the claim of X sets a fence and its session
// is killed, as a worker's is when a fault ends it while a call is in
// flight. X itself is taken over at once (the same change), and the
// takeover's commit does not lift the dead claim's fence; Y, the key's next
// item, is not claimed before the fence ends. Without the fence Y would run
// at once, which is how a late effect of X's first attempt overtook it.
// The takeover fences for ten minutes and commits with its effects settled:
// its commit lifts its own fence, so Y runs once the dead claim's ends (with
// one fence per key, the takeover could only extend the dead claim's, and Y
// waited out the takeover's).
func TestFenceOutlivesALostClaim(t *testing.T) {
	const d = 3 * time.Second
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	var mu sync.Mutex
	var fencedAt, xDone, yStart time.Time
	var takeoverInFence bool
	attempts := 0
	h := map[string]work.Handler{
		"x": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			mu.Lock()
			attempts++
			first := attempts == 1
			mu.Unlock()
			at, end := time.Now(), time.Now().Add(d)
			if !first {
				end = at.Add(10 * time.Minute)
			}
			if err := tx.Fence(ctx, end); err != nil {
				return err
			}
			if !first {
				var live bool
				if err := pool.QueryRow(ctx, `SELECT until > now() FROM work_fence WHERE key = $1`, it.Key).Scan(&live); err != nil {
					return err
				}
				mu.Lock()
				takeoverInFence, xDone = live, time.Now()
				mu.Unlock()
				return nil
			}
			mu.Lock()
			fencedAt = at
			mu.Unlock()
			var pid int
			if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
				return err
			}
			return tx.CheckClaim()
		},
		"y": func(ctx context.Context, tx *work.Tx, it work.Item) error {
			mu.Lock()
			yStart = time.Now()
			mu.Unlock()
			return nil
		},
	}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	ids := enqueue(t, pool, work.Job{Kind: "x", Key: "k"}, work.Job{Kind: "y", Key: "k"})
	waitFor(t, "both done", func() bool {
		return rec.last(ids[0]) == work.OutcomeDone && rec.last(ids[1]) == work.OutcomeDone
	})
	mu.Lock()
	defer mu.Unlock()
	if got := rec.outcomes(ids[0]); len(got) < 2 || got[0] != work.OutcomeError {
		t.Fatalf("x's outcomes = %v, want error (its session was killed), then done", got)
	}
	if !takeoverInFence {
		t.Errorf("x was taken over only after its own fence ended: a fence must not hold the item that set it")
	}
	if xDone.After(yStart) {
		t.Errorf("y started at %s, before x's takeover finished at %s", yStart.Format("15:04:05.000"), xDone.Format("15:04:05.000"))
	}
	// until = the database's now() + d, and fencedAt was read before the
	// statement; 10ms allows for the wall clock against the monotonic one.
	if early := fencedAt.Add(d - 10*time.Millisecond); yStart.Before(early) {
		t.Errorf("y started %s after the fence was set, within the fence (%s)", yStart.Sub(fencedAt), d)
	}
}

// TestFenceLiftedOnCommit: a claim that commits with every effect settled
// removes its own fence, in every outcome that commits (done, retried,
// parked); after Unsettled the fence stays, shortened to what Unsettled
// asked.
func TestFenceLiftedOnCommit(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	var mu sync.Mutex
	tries := map[string]int{}
	fenced := func(ctx context.Context, tx *work.Tx, it work.Item) error {
		mu.Lock()
		tries[it.Key]++
		n := tries[it.Key]
		mu.Unlock()
		if err := tx.Fence(ctx, time.Now().Add(time.Minute)); err != nil {
			return err
		}
		switch it.Key {
		case "retried":
			if n == 1 {
				return errors.New("a transient failure")
			}
		case "parked":
			return work.Intransient("a bug", nil)
		case "unsettled":
			tx.Unsettled(time.Now().Add(30 * time.Second))
		}
		return nil
	}
	h := map[string]work.Handler{"f": fenced, "nokey": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		err := tx.Fence(ctx, time.Now().Add(time.Minute))
		if !errors.Is(err, work.ErrNoKey) {
			t.Errorf("Fence of an item without a key = %v, want ErrNoKey", err)
		}
		return nil
	}}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	ids := enqueue(t, pool,
		work.Job{Kind: "f", Key: "done"}, work.Job{Kind: "f", Key: "retried"},
		work.Job{Kind: "f", Key: "parked"}, work.Job{Kind: "f", Key: "unsettled"},
		work.Job{Kind: "nokey"})
	waitFor(t, "all handled", func() bool {
		return rec.last(ids[0]) == work.OutcomeDone && rec.last(ids[1]) == work.OutcomeDone &&
			rec.last(ids[2]) == work.OutcomeParked && rec.last(ids[3]) == work.OutcomeDone && rec.last(ids[4]) == work.OutcomeDone
	})
	for _, key := range []string{"done", "retried", "parked"} {
		if exists, _ := fenceRow(t, pool, key); exists {
			t.Errorf("the fence on %q outlived its claim's commit", key)
		}
	}
	if _, live := fenceRow(t, pool, "unsettled"); !live {
		t.Errorf("the fence on %q was lifted at commit after Unsettled", "unsettled")
	}
	var left time.Duration
	if err := pool.QueryRow(context.Background(), `SELECT (extract(epoch FROM until - now()) * 1e6)::bigint * interval '1 microsecond' FROM work_fence WHERE key = 'unsettled'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left > 31*time.Second {
		t.Errorf("the fence on %q ends in %s after Unsettled(30s), want it shortened from its minute", "unsettled", left)
	}
}

// TestFenceExtendsOnlyWhileItHolds: a later end extends a fence that will
// still hold when the extension lands (within the runner's FenceTimeout), and
// is refused, as transient ErrFenceLapsed, when the fence may end before
// that: another item of the key may have been claimed in the gap.
func TestFenceExtendsOnlyWhileItHolds(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	opts := fastOpts(nil, rec, t, "runner")
	opts.FenceTimeout = 500 * time.Millisecond
	var errs [4]error
	opts.Handlers = map[string]work.Handler{"f": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		switch it.Key {
		case "holds":
			errs[0] = tx.Fence(ctx, time.Now().Add(time.Minute))
			errs[1] = tx.Fence(ctx, time.Now().Add(2*time.Minute))
		case "lapses":
			errs[2] = tx.Fence(ctx, time.Now().Add(opts.FenceTimeout/2))
			errs[3] = tx.Fence(ctx, time.Now().Add(time.Minute))
		}
		return nil
	}}
	start(t, pool, opts)
	ids := enqueue(t, pool, work.Job{Kind: "f", Key: "holds"}, work.Job{Kind: "f", Key: "lapses"})
	waitFor(t, "both handled", func() bool { return rec.last(ids[0]) != "" && rec.last(ids[1]) != "" })
	for i, err := range errs[:3] {
		if err != nil {
			t.Errorf("fence %d: %v", i, err)
		}
	}
	if !errors.Is(errs[3], work.ErrFenceLapsed) || !work.IsTransient(errs[3]) {
		t.Errorf("extending a fence that ends within FenceTimeout = %v, want a transient ErrFenceLapsed", errs[3])
	}
}

// TestFenceCallEnds: FenceCall fences until effect after the latest the
// next call can start: the handler's deadline when it comes first, else
// once the fence statement's own deadline (FenceTimeout) has passed.
func TestFenceCallEnds(t *testing.T) {
	const effect = 4 * time.Second
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	opts := fastOpts(nil, rec, t, "runner")
	opts.FenceTimeout = 3 * time.Second
	var mu sync.Mutex
	left := map[string]time.Duration{}
	bound := map[string]time.Duration{}
	opts.Handlers = map[string]work.Handler{"f": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		at := time.Now()
		want := opts.FenceTimeout + effect
		if it.Key == "deadline" {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Second)
			defer cancel()
			want = time.Second + effect
		}
		if err := tx.FenceCall(ctx, effect); err != nil {
			return err
		}
		var l time.Duration
		if err := pool.QueryRow(ctx, `SELECT (extract(epoch FROM until - now()) * 1e6)::bigint * interval '1 microsecond' FROM work_fence WHERE key = $1`, it.Key).Scan(&l); err != nil {
			return err
		}
		mu.Lock()
		left[it.Key], bound[it.Key] = l+time.Since(at), want
		mu.Unlock()
		tx.Unsettled(time.Now().Add(time.Minute)) // keep the row for the reading above to be about this claim alone
		return nil
	}}
	start(t, pool, opts)
	ids := enqueue(t, pool, work.Job{Kind: "f", Key: "deadline"}, work.Job{Kind: "f", Key: "statement"})
	waitFor(t, "both done", func() bool {
		return rec.last(ids[0]) == work.OutcomeDone && rec.last(ids[1]) == work.OutcomeDone
	})
	mu.Lock()
	defer mu.Unlock()
	for key, want := range bound {
		// left is measured from before FenceCall: at least the bound (the
		// database's clock started later), at most it plus two round trips.
		// The deadline's case ends 2s before FenceTimeout's would.
		if got := left[key]; got < want-10*time.Millisecond || got > want+1500*time.Millisecond {
			t.Errorf("%s: the fence ends %s after FenceCall began, want %s", key, got, want)
		}
	}
}

// TestFenceWrittenOnlyWhileClaimHolds: once the claiming session is ended
// on the database, a fence is refused with a transient ErrClaimLost, whether
// or not the worker has heard of it yet: the item may have been taken over
// and finished, and the key's next item may be running. The handler does
// not call CheckClaim: the check is the fence statement's own.
func TestFenceWrittenOnlyWhileClaimHolds(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	var mu sync.Mutex
	var first, lost error
	attempts := 0
	h := map[string]work.Handler{"x": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		mu.Lock()
		attempts++
		n := attempts
		mu.Unlock()
		if n > 1 {
			return nil
		}
		err := tx.Fence(ctx, time.Now().Add(time.Minute))
		var pid int
		if err == nil {
			err = tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
		}
		if err == nil {
			_, err = pool.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid)
		}
		l := tx.Fence(ctx, time.Now().Add(2*time.Minute))
		mu.Lock()
		first, lost = err, l
		mu.Unlock()
		return l
	}}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	ids := enqueue(t, pool, work.Job{Kind: "x", Key: "k"})
	waitFor(t, "x done", func() bool { return rec.last(ids[0]) == work.OutcomeDone })
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		t.Fatalf("fence, then terminate the claim's backend: %v", first)
	}
	if !errors.Is(lost, work.ErrClaimLost) || !work.IsTransient(lost) {
		t.Errorf("a fence after the claim's backend ended = %v, want a transient ErrClaimLost", lost)
	}
}

// TestFenceAfterCommitDoesNothing: in an AfterCommit hook the claim is
// over: Fence and FenceCall return nil and write no fence (a fence then
// would be a stray row, and the claim check would refuse it anyway).
func TestFenceAfterCommitDoesNothing(t *testing.T) {
	pool := newPool(t, newDB(t).DSN(), 6)
	rec := &recorder{}
	errs := make(chan error, 2)
	h := map[string]work.Handler{"x": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		tx.AfterCommit(func(ctx context.Context) {
			errs <- tx.FenceCall(ctx, time.Minute)
			errs <- tx.Fence(ctx, time.Now().Add(time.Hour))
		})
		return nil
	}}
	start(t, pool, fastOpts(h, rec, t, "runner"))
	enqueue(t, pool, work.Job{Kind: "x", Key: "k"})
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("a fence in an AfterCommit hook: %v", err)
			}
		case <-time.After(patience):
			t.Fatal("the AfterCommit hook never ran")
		}
	}
	if exists, _ := fenceRow(t, pool, "k"); exists {
		t.Errorf("a fence in an AfterCommit hook wrote a row")
	}
}

// TestClaimProbesFencesOnlyForKeys: a claim looks up work_fence for the
// items with a key that it walks past, and never for an item without one,
// which cannot be fenced.
func TestClaimProbesFencesOnlyForKeys(t *testing.T) {
	for _, tc := range []struct {
		key        string
		wantProbes bool
	}{{"", false}, {"k", true}} {
		t.Run("key="+tc.key, func(t *testing.T) {
			pool := newPool(t, newDB(t).DSN(), 3)
			ctx := context.Background()
			if _, err := pool.Exec(ctx, `INSERT INTO work (kind, key) SELECT 'n', CASE $1::text WHEN '' THEN '' ELSE $1 || g END FROM generate_series(1, 10) g`, tc.key); err != nil {
				t.Fatal(err)
			}
			// Another worker's claims: the claim walks past their items.
			held, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = held.Rollback(ctx) })
			if _, err := held.Exec(ctx, `SELECT id FROM work ORDER BY run_after, id LIMIT 3 FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			probes := 0
			var walk func(n *planNode)
			walk = func(n *planNode) {
				if n.Relation == "work_fence" {
					probes += n.Loops
				}
				for _, c := range n.Plans {
					walk(c)
				}
			}
			walk(explain(t, tx, work.ClaimSkipLockedSQL, "30000", "10000"))
			if (probes > 0) != tc.wantProbes {
				t.Errorf("the claim probed work_fence %d times; want probes: %v", probes, tc.wantProbes)
			}
		})
	}
}
