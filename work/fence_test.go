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
			at := time.Now()
			if err := tx.Fence(ctx, time.Now().Add(d)); err != nil {
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
