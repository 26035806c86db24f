package work_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
	"github.com/workproof/workproof/work"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

// patience bounds every wait for something that must happen; it is a
// liveness bound, not a speed assertion.
const patience = 60 * time.Second

func newDB(t testing.TB) *pgenv.Database { return pgenvtest.DB(t, "work", work.Migrate) }

// newPool opens a pool on dsn with room for maxConns connections (the
// pgenvtest pool's default size is too small for many workers + LISTEN).
func newPool(t testing.TB, dsn string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	return tracedPool(t, dsn, maxConns, nil)
}

// tracedPool is newPool with tr tracing every connection's statements.
func tracedPool(t testing.TB, dsn string, maxConns int32, tr pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = tr
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// testLogger logs warnings and errors into the test log.
func testLogger(t testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct {
	t    testing.TB
	name string
}

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a runner until the returned stop is called (also at cleanup,
// before the pool closes).
func start(t testing.TB, pool *pgxpool.Pool, opts work.RunnerOptions) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := work.NewRunner(pool, opts)
	go func() { done <- r.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

func enqueue(t testing.TB, pool *pgxpool.Pool, jobs ...work.Job) []int64 {
	t.Helper()
	var ids []int64
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		for _, j := range jobs {
			id, err := work.Enqueue(context.Background(), tx, j)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return ids
}

func list(t testing.TB, pool *pgxpool.Pool) []work.Row {
	t.Helper()
	rows, err := work.List(context.Background(), pool)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return rows
}

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is an Observer that keeps every (item, outcome) in order.
type recorder struct {
	mu     sync.Mutex
	begun  []work.Item
	events []event
}

type event struct {
	ID      int64
	Kind    string
	Outcome work.Outcome
}

func (r *recorder) Begin(it work.Item) func(work.Outcome) {
	r.mu.Lock()
	r.begun = append(r.begun, it)
	r.mu.Unlock()
	return func(o work.Outcome) {
		r.mu.Lock()
		r.events = append(r.events, event{it.ID, it.Kind, o})
		r.mu.Unlock()
	}
}

// outcomes returns the outcomes of item id, in order.
func (r *recorder) outcomes(id int64) []work.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []work.Outcome
	for _, e := range r.events {
		if e.ID == id {
			out = append(out, e.Outcome)
		}
	}
	return out
}

func (r *recorder) count(o work.Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Outcome == o {
			n++
		}
	}
	return n
}

// last reports the latest outcome of item id ("" if none yet).
func (r *recorder) last(id int64) work.Outcome {
	o := r.outcomes(id)
	if len(o) == 0 {
		return ""
	}
	return o[len(o)-1]
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.events)
}

// fast options for tests.
func fastOpts(h map[string]work.Handler, obs work.Observer, t testing.TB, name string) work.RunnerOptions {
	return work.RunnerOptions{
		Handlers:        h,
		PollInterval:    50 * time.Millisecond,
		DBTimeout:       2 * time.Second,
		IdleInTxTimeout: 2 * time.Second,
		MinBackoff:      10 * time.Millisecond,
		MaxBackoff:      100 * time.Millisecond,
		Observer:        obs,
		Logger:          testLogger(t, name),
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	Relation string      `json:"Relation Name"`
	Loops    int         `json:"Actual Loops"`
	Hit      int         `json:"Shared Hit Blocks"`
	Plans    []*planNode `json:"Plans"`
}

// explain runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of q in tx and
// returns its plan.
func explain(t testing.TB, tx pgx.Tx, q string, args ...any) *planNode {
	t.Helper()
	var raw []byte
	if err := tx.QueryRow(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+q, args...).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	return &plan[0].Plan
}
