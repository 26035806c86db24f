package work_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/netfault"
	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
	"github.com/workproof/workproof/work"
)

// viaLink returns a pool on db whose every connection goes through a fresh
// netfault link, and the link.
func viaLink(t *testing.T, db *pgenv.Database, maxConns int32) (*pgxpool.Pool, *netfault.Link) {
	t.Helper()
	n, err := netfault.New(netfault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	l, err := n.Link("worker-a", pgenvtest.Server(t).HostPort())
	if err != nil {
		t.Fatal(err)
	}
	pool := newPool(t, db.DSNVia(l.Addr()), maxConns)
	// Close the link before the pool: pgxpool.Close waits up to 15 s for
	// each connection that a blackhole keeps from closing.
	t.Cleanup(func() { _ = l.Close() })
	return pool, l
}

// TestLostWorker: a worker whose network dies while it holds an item (the
// proxy severed, or blackholed so that nothing errors) loses the item to
// another worker: Postgres drops the session (connection closed, or
// idle_in_transaction_session_timeout) and the row reappears. The lost worker
// cannot commit, and the item is done exactly once.
func TestLostWorker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*netfault.Link) error
	}{
		{"severed", func(l *netfault.Link) error { return l.Sever() }},
		{"blackholed", func(l *netfault.Link) error {
			if err := l.Apply(netfault.Blackhole{Dir: netfault.Upstream}); err != nil {
				return err
			}
			return l.Apply(netfault.Blackhole{Dir: netfault.Downstream})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			poolA, link := viaLink(t, db, 3)
			poolB := newPool(t, db.DSN(), 3)

			entered, release := make(chan struct{}), make(chan struct{})
			recA, recB := &recorder{}, &recorder{}
			var doneA, doneB atomic.Int32
			hA := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				close(entered)
				<-release // a handler stuck in an external call
				tx.AfterCommit(func(context.Context) { doneA.Add(1) })
				return nil
			}}
			hB := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, it work.Item) error {
				tx.AfterCommit(func(context.Context) { doneB.Add(1) })
				return nil
			}}
			optsA := fastOpts(hA, recA, t, "A")
			optsA.IdleInTxTimeout = time.Second
			optsA.DBTimeout = time.Second
			start(t, poolA, optsA)
			id := enqueue(t, poolB, work.Job{Kind: "job"})[0]
			<-entered
			if err := tc.fault(link); err != nil {
				t.Fatal(err)
			}
			start(t, poolB, fastOpts(hB, recB, t, "B"))
			// A's handler is still inside the item, from its point of view:
			// B can only get it because Postgres freed it.
			waitFor(t, "B to do the item", func() bool { return recB.last(id) == work.OutcomeDone })
			close(release)
			waitFor(t, "A to leave the item", func() bool { return recA.last(id) != "" })
			if got := recA.outcomes(id); !slices.Equal(got, []work.Outcome{work.OutcomeError}) {
				t.Errorf("A's outcomes %v, want [error]", got)
			}
			if got := recB.outcomes(id); !slices.Equal(got, []work.Outcome{work.OutcomeDone}) {
				t.Errorf("B's outcomes %v, want [done]", got)
			}
			if doneA.Load() != 0 || doneB.Load() != 1 {
				t.Errorf("committed by A %d times, by B %d times; want 0, 1", doneA.Load(), doneB.Load())
			}
			if rows := list(t, poolB); len(rows) != 0 {
				t.Errorf("left: %+v", rows)
			}
		})
	}
}

// TestCommitLost: AfterCommit hooks run only after a COMMIT known to have
// succeeded. The connection dies as the handler returns: either COMMIT never
// reaches the server (the item is redone elsewhere), or it does and its
// answer is lost (the item is done, but the worker cannot know). Without a
// hook the COMMIT goes out with the next claim, and the outcomes are the same.
func TestCommitLost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     func(*netfault.Link) error
		committed bool
	}{
		{"connection lost before COMMIT", func(l *netfault.Link) error { return l.Sever() }, false},
		{"COMMIT unanswered", func(l *netfault.Link) error { return l.Apply(netfault.Blackhole{Dir: netfault.Downstream}) }, true},
	} {
		for _, hook := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/hook=%v", tc.name, hook), func(t *testing.T) { testCommitLost(t, tc.fault, tc.committed, hook) })
		}
	}
}

func testCommitLost(t *testing.T, fault func(*netfault.Link) error, committed, hook bool) {
	db := newDB(t)
	poolA, link := viaLink(t, db, 3)
	poolB := newPool(t, db.DSN(), 3)
	var hooksA, hooksB atomic.Int32
	recA, recB := &recorder{}, &recorder{}
	hA := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		if hook {
			tx.AfterCommit(func(context.Context) { hooksA.Add(1) })
		}
		if err := fault(link); err != nil {
			t.Errorf("fault: %v", err)
		}
		return nil
	}}
	hB := map[string]work.Handler{"job": func(ctx context.Context, tx *work.Tx, it work.Item) error {
		tx.AfterCommit(func(context.Context) { hooksB.Add(1) })
		return nil
	}}
	optsA := fastOpts(hA, recA, t, "A")
	optsA.DBTimeout = time.Second
	optsA.NoListen = true
	start(t, poolA, optsA)
	id := enqueue(t, poolB, work.Job{Kind: "job"})[0]
	waitFor(t, "A to leave the item", func() bool { return recA.last(id) != "" })
	if got := recA.last(id); got != work.OutcomeError {
		t.Errorf("A's outcome %v, want error", got)
	}
	if hooksA.Load() != 0 {
		t.Errorf("AfterCommit ran although the COMMIT's outcome was not known")
	}
	if !committed {
		start(t, poolB, fastOpts(hB, recB, t, "B"))
		waitFor(t, "B to redo the item", func() bool { return recB.last(id) == work.OutcomeDone })
		if hooksB.Load() != 1 {
			t.Errorf("B's hook ran %d times, want 1", hooksB.Load())
		}
	}
	if rows := list(t, poolB); len(rows) != 0 {
		t.Errorf("left: %+v", rows)
	}
}

// TestListenerKilled: terminating the LISTEN session never stalls work.
// Either polling carries on while the listener is down (its reconnect is
// made to wait for an hour), or the listener comes back and notifications
// alone deliver work (polling is made to wait for an hour).
func TestListenerKilled(t *testing.T) {
	for _, tc := range []struct {
		name       string
		poll       time.Duration
		minBackoff time.Duration
		reconnects bool
	}{
		{"polling covers a dead listener", 50 * time.Millisecond, time.Hour, false},
		{"listener reconnects", time.Hour, 10 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			pool := newPool(t, db.DSN(), 4)
			ctx := context.Background()
			rec := &recorder{}
			h := map[string]work.Handler{"job": func(context.Context, *work.Tx, work.Item) error { return nil }}
			opts := fastOpts(h, rec, t, "runner")
			opts.Workers = 2
			opts.PollInterval = tc.poll
			opts.MinBackoff, opts.MaxBackoff = tc.minBackoff, max(tc.minBackoff, 100*time.Millisecond)
			start(t, pool, opts)

			listener := func() (pid int32) {
				err := pool.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
					WHERE datname = current_database() AND application_name LIKE '%' || $1`, work.ListenerApplicationName).Scan(&pid)
				if err != nil {
					t.Fatal(err)
				}
				return pid
			}
			var old int32
			waitFor(t, "the listener", func() bool { old = listener(); return old != 0 })
			// Prove the listener worked before the kill: with an hour's
			// poll, only a notification delivers this.
			if tc.reconnects {
				id := enqueue(t, pool, work.Job{Kind: "job"})[0]
				waitFor(t, "a notified item", func() bool { return rec.last(id) == work.OutcomeDone })
			}
			if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, old); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the listener to die", func() bool { return listener() != old })
			if tc.reconnects {
				waitFor(t, "a new listener", func() bool { p := listener(); return p != 0 && p != old })
			} else if p := listener(); p != 0 {
				t.Fatalf("listener %d reconnected although its backoff is an hour", p)
			}
			var ids []int64
			for range 3 {
				ids = append(ids, enqueue(t, pool, work.Job{Kind: "job"})...)
			}
			for _, id := range ids {
				waitFor(t, "work after the kill", func() bool { return rec.last(id) == work.OutcomeDone })
			}
		})
	}
}
