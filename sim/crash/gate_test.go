package crash_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/workproof/workproof/sim/crash"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStatementPoint(t *testing.T) {
	for sql, want := range map[string]string{
		"begin":                                  "sql:begin",
		"COMMIT":                                 "sql:commit",
		"  -- claim\nDELETE FROM work WHERE id":  "sql:delete work",
		"insert into instances (id) values ($1)": "sql:insert instances",
		"UPDATE \"instances\" SET x=1":           "sql:update instances",
		"/* c */ select 1":                       "sql:select",
		"SELECT pg_notify('work', 'x')":          "sql:select",
		"SELECT a FROM public.instances WHERE id = 'delete from x'":                                                               "sql:select instances",
		"SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1)":                                                                   "sql:select instances",
		"WITH ins AS (INSERT INTO work (kind) VALUES ($1) RETURNING id) SELECT ins.id FROM ins, LATERAL pg_notify('w', ins.kind)": "sql:insert work",
		"WITH locked AS (SELECT id FROM river_job FOR UPDATE SKIP LOCKED) UPDATE river_job SET state = 'running'":                 "sql:update river_job",
		"INSERT INTO instances (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET x = 1":                                             "sql:insert instances",
		"WITH r AS (SELECT 1) SELECT * FROM r":                                                                                    "sql:select r",
		"savepoint work_attempt":                                                                                                  "sql:savepoint",
		"":                                                                                                                        "sql:",
	} {
		if got := crash.StatementPoint(sql); got != want {
			t.Errorf("StatementPoint(%q) = %q, want %q", sql, got, want)
		}
	}
}

// The rule fires at the first At after After, not before, and only once;
// the crashed worker stays frozen until Close, and OnCrash ran first.
func TestArmFreezesAtRuleUntilClose(t *testing.T) {
	var mu sync.Mutex
	var severed []string
	g := crash.New(nil, crash.Options{OnCrash: func(w, p string) {
		mu.Lock()
		severed = append(severed, w+"@"+p)
		mu.Unlock()
	}})
	g.Arm("w1", crash.Rule{After: "cloud:CreateVM", At: "sql:commit"})
	ctx := context.Background()

	for _, p := range []string{"sql:begin", "sql:commit", "cloud:CreateVM", "cloud:CreateVM:done", "sql:update instances"} {
		if err := g.Point(ctx, "w1", p); err != nil {
			t.Fatalf("point %s: %v", p, err)
		}
	}
	if err := g.Point(ctx, "w2", "sql:commit"); err != nil {
		t.Fatalf("other worker: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Point(ctx, "w1", "sql:commit") }()
	select {
	case err := <-done:
		t.Fatalf("crashed worker returned before Close: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if !g.Crashed("w1") || g.Crashed("w2") {
		t.Fatalf("Crashed: w1=%v w2=%v", g.Crashed("w1"), g.Crashed("w2"))
	}
	mu.Lock()
	if len(severed) != 1 || severed[0] != "w1@sql:commit" {
		t.Errorf("OnCrash calls = %v", severed)
	}
	mu.Unlock()
	g.Close()
	if err := <-done; !errors.Is(err, crash.ErrCrashed) {
		t.Fatalf("after Close: %v, want ErrCrashed", err)
	}
	if err := g.Point(ctx, "w1", "sql:rollback"); !errors.Is(err, crash.ErrCrashed) {
		t.Fatalf("later point of crashed worker: %v", err)
	}
	if h := g.Hits(); len(h) != 1 || h[0].Point != "sql:commit" {
		t.Errorf("Hits = %+v", h)
	}
}

func TestScheduledReleasesOneAtATime(t *testing.T) {
	g := crash.New(nil, crash.Options{Scheduled: true})
	t.Cleanup(g.Close)
	ctx := context.Background()
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range []string{"w2", "w1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range []string{"sql:begin", "sql:commit"} {
				if err := g.Point(ctx, w, p); err != nil {
					return
				}
				mu.Lock()
				order = append(order, w+" "+p)
				mu.Unlock()
			}
		}()
	}
	// Release in the order the "scenario" chooses: w1, w1, w2, w2.
	for _, w := range []string{"w1", "w1", "w2", "w2"} {
		for {
			ps := g.Parked(ctx, 20*time.Millisecond)
			found := false
			for _, p := range ps {
				found = found || p.Worker == w
			}
			if found {
				break
			}
		}
		if !g.Release(w) {
			t.Fatalf("release %s: not parked", w)
		}
	}
	wg.Wait()
	want := []string{"w1 sql:begin", "w1 sql:commit", "w2 sql:begin", "w2 sql:commit"}
	if len(order) != len(want) {
		t.Fatalf("order = %v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order = %v, want %v", order, want)
		}
	}
}

func TestTransportPoints(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	tr := g.Transport("w1", func(r *http.Request) string { return "cloud:" + r.Method }, nil)
	c := &http.Client{Transport: tr}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.Post(srv.URL+"/vms", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := g.Reached()
	if r["cloud:POST"] != 1 || r["cloud:POST:done"] != 1 {
		t.Fatalf("Reached = %v", r)
	}
}

func TestOnPointRunsOnceThenProceeds(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	n := 0
	g.OnPoint("w1", crash.Rule{After: "cloud:", At: "sql:commit"}, func() { n++ })
	ctx := context.Background()
	for _, p := range []string{"sql:commit", "cloud:CreateVM", "sql:commit", "sql:commit"} {
		if err := g.Point(ctx, "w1", p); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Fatalf("action ran %d times, want 1", n)
	}
	if g.Crashed("w1") {
		t.Fatal("an action must not crash the worker")
	}
	if c := g.Reached()["sql:commit"]; c != 3 {
		t.Fatalf("sql:commit reached %d times, want 3", c)
	}
}

// A batch's statements are points too (package work claims with one).
func TestBatchPoints(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	tr := g.Tracer("w1").(pgx.BatchTracer)
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue("DELETE FROM work WHERE id = 1")
	b.Queue("SAVEPOINT h")
	tr.TraceBatchStart(context.Background(), nil, pgx.TraceBatchStartData{Batch: b})
	r := g.Reached()
	for _, p := range []string{"sql:begin", "sql:delete work", "sql:savepoint"} {
		if r[p] != 1 {
			t.Errorf("point %s reached %d times, want 1 (all: %v)", p, r[p], r)
		}
	}
	plain := &pgx.Batch{}
	plain.Queue("select 1")
	tr.TraceBatchStart(context.Background(), nil, pgx.TraceBatchStartData{Batch: plain})
	if g.Reached()["sql:begin"] != 1 {
		t.Errorf("a batch without BeginTx must not pass sql:begin")
	}
}

// A rule aimed at an item fires only inside the named entry of that item,
// at the nth occurrence counted within it, and Trace records where each
// point was passed.
func TestItemRulesAndTrace(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	g.SetTracing(true)
	ctx := context.Background()
	fired := 0
	g.OnPoint("w1", crash.Rule{At: "sql:update", Item: "7", Entry: 2, Nth: 2}, func() { fired++ })
	pass := func(w string, points ...string) {
		for _, p := range points {
			if err := g.Point(ctx, w, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	pass("w1", "sql:update", "sql:update") // outside any item
	g.Enter("w1", "7", "i1")               // entry 1
	pass("w1", "sql:update", "sql:update")
	g.Leave("w1")
	g.Enter("w2", "7", "i1") // entry 2, by another worker: w1's rule cannot match
	pass("w2", "sql:update", "sql:update")
	g.Leave("w2")
	g.Enter("w1", "7", "i1") // entry 3
	pass("w1", "sql:update", "sql:update")
	if fired != 0 {
		t.Fatalf("fired %d times outside item 7's second entry on w1", fired)
	}
	g.OnPoint("w1", crash.Rule{At: "sql:update", Item: "7", Entry: 3, Nth: 3}, func() { fired++ })
	pass("w1", "sql:commit", "sql:update")
	if fired != 1 {
		t.Fatalf("fired %d times, want once at the third update of entry 3", fired)
	}
	tr := g.Trace()
	last := tr[len(tr)-1]
	if len(tr) != 10 || last.Item != "7" || last.Entry != 3 || last.Nth != 3 || last.Point != "sql:update" {
		t.Fatalf("trace has %d points, last %+v", len(tr), last)
	}
	if tr[0].Item != "" || tr[1].Nth != 2 || tr[4].Worker != "w2" || tr[4].Entry != 2 {
		t.Fatalf("trace %+v", tr)
	}
}

func TestNthOccurrence(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	n := 0
	g.OnPoint("w1", crash.Rule{At: "sql:commit", Nth: 3}, func() { n++ })
	for range 5 {
		if err := g.Point(context.Background(), "w1", "sql:commit"); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
	}
	if r := g.Reached()["sql:commit"]; n != 1 || r != 3 {
		t.Fatalf("fired %d times after %d commits, want once at the third", n, r)
	}
}

// Bury lets one crashed worker go before Close; a live worker and another
// crashed one are not affected.
func TestBuryLetsOneCrashedWorkerGo(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	ctx := context.Background()
	g.Bury("w3") // never crashed: nothing happens
	if err := g.Point(ctx, "w3", "sql:begin"); err != nil {
		t.Fatalf("live worker after Bury: %v", err)
	}
	g.Freeze("w1")
	g.Freeze("w2")
	w1, w2 := make(chan error, 1), make(chan error, 1)
	go func() { w1 <- g.Point(ctx, "w1", "sql:commit") }()
	go func() { w2 <- g.Point(ctx, "w2", "sql:commit") }()
	g.Bury("w1")
	g.Bury("w1") // idempotent
	if err := <-w1; !errors.Is(err, crash.ErrCrashed) {
		t.Fatalf("buried worker: %v, want ErrCrashed", err)
	}
	if err := g.Point(ctx, "w1", "sql:rollback"); !errors.Is(err, crash.ErrCrashed) {
		t.Fatalf("later point of a buried worker: %v", err)
	}
	select {
	case err := <-w2:
		t.Fatalf("a crashed worker nobody buried returned before Close: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.Close()
	if err := <-w2; !errors.Is(err, crash.ErrCrashed) {
		t.Fatalf("after Close: %v", err)
	}
}

// ForgetEntries keeps the count of an item a worker is inside and drops the
// others: an item entered again after it counts from its first entry.
func TestForgetEntries(t *testing.T) {
	g := crash.New(nil, crash.Options{})
	t.Cleanup(g.Close)
	g.SetTracing(true)
	g.Enter("w1", "7", "i1")
	g.Leave("w1")
	g.Enter("w1", "8", "i2")
	g.Enter("w2", "7", "i1") // entry 2 of item 7
	g.Leave("w2")
	g.ForgetEntries()
	g.Enter("w2", "7", "i1") // counted from 1 again: nobody was inside 7
	g.Enter("w3", "8", "i2") // entry 2 of item 8: w1 is still inside it
	for _, w := range []string{"w2", "w3"} {
		if err := g.Point(context.Background(), w, "sql:update"); err != nil {
			t.Fatal(err)
		}
	}
	tr := g.Trace()
	if len(tr) != 2 || tr[0].Item != "7" || tr[0].Entry != 1 || tr[1].Item != "8" || tr[1].Entry != 2 {
		t.Fatalf("trace after ForgetEntries %+v, want item 7 entry 1 and item 8 entry 2", tr)
	}
}
