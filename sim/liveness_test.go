package sim_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/netfault"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// lateSystem is a system whose one work item is done only at a set moment:
// a recovery that takes as long as the test says. Its worker holds a plain
// session that never LISTENs.
type lateSystem struct {
	live contract.Liveness
	mu   sync.Mutex
	done time.Time // zero: never
}

func (s *lateSystem) Migrate(context.Context, *pgxpool.Pool) error { return nil }
func (s *lateSystem) Serve(context.Context, *pgxpool.Pool, contract.Request) (contract.Response, error) {
	return contract.Response{}, contract.ErrInvalid
}
func (s *lateSystem) Liveness() contract.Liveness { return s.live }

func (s *lateSystem) Work(ctx context.Context, db *pgxpool.Pool, _ contract.Deps) error {
	for ctx.Err() == nil {
		_, _ = db.Exec(ctx, `SELECT 1`)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func (s *lateSystem) Inspect(context.Context, *pgxpool.Pool) (contract.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done.IsZero() && time.Now().After(s.done) {
		return contract.Snapshot{}, nil
	}
	return contract.Snapshot{Work: []contract.WorkItem{{ID: "1", Kind: "slow", Key: "i1"}}}, nil
}

func (s *lateSystem) settleIn(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = time.Now().Add(d)
}

func lateEnv(t *testing.T, sys contract.System) *sim.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e, err := sim.New(ctx, sim.Options{System: sys, Server: pgenvtest.Server(t), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func settleBound(res sim.Result) (check.Violation, bool) {
	for _, v := range res.Violations {
		if v.Rule == sim.RuleSettleBound {
			return v, true
		}
	}
	return check.Violation{}, false
}

// A system that settles after the bound it promised is invalid, and the
// violation says what it promised and what it took, even though its state
// is clean by the time the checks read it.
func TestFinishHoldsTheSystemToItsSettlePromise(t *testing.T) {
	sys := &lateSystem{live: contract.Liveness{Settle: 2 * time.Second}}
	e := lateEnv(t, sys)
	if got := e.Liveness().Settle; got != 2*time.Second {
		t.Fatalf("declared settle %v, want 2s", got)
	}
	sys.settleIn(2500 * time.Millisecond)
	res, err := e.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, ok := settleBound(res)
	if !ok || res.Verdict != check.Invalid {
		t.Fatalf("verdict %s, violations %v: want a %s violation", res.Verdict, res.Violations, sim.RuleSettleBound)
	}
	if !strings.Contains(v.Message, "promised to settle within 2s") || !strings.Contains(v.Message, "took 2.") {
		t.Errorf("message %q: want the promise and how long it took", v.Message)
	}
	if len(res.Violations) != 1 {
		t.Errorf("violations %v: the state was clean once settled, only the promise was broken", res.Violations)
	}
}

// A system that never settles is told so, beside what the state shows.
func TestFinishReportsNeverSettling(t *testing.T) {
	sys := &lateSystem{live: contract.Liveness{Settle: time.Second}}
	e := lateEnv(t, sys)
	res, err := e.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, ok := settleBound(res)
	if !ok || !strings.Contains(v.Message, "promised to settle within 1s") || !strings.Contains(v.Message, "not settled after") {
		t.Fatalf("violations %v: want the broken promise", res.Violations)
	}
	if !check.HasInvariant(res.Violations, check.InvConvergence) || len(res.Violations) < 2 {
		t.Errorf("violations %v: want the work left beside the promise", res.Violations)
	}
}

// Options.Settle overrides the promise, and the contract's defaults fill
// what a system does not declare.
func TestLivenessOverridesAndDefaults(t *testing.T) {
	l := sim.LivenessOf(&lateSystem{live: contract.Liveness{Takeover: time.Minute, Claim: contract.ClaimRow}}, contract.Liveness{Settle: 3 * time.Second})
	want := contract.Liveness{Takeover: time.Minute, Settle: 3 * time.Second, ParkVisibleWithin: contract.DefaultParkVisibleWithin, Claim: contract.ClaimRow}
	if l != want {
		t.Errorf("liveness %+v, want %+v", l, want)
	}
}

// A system whose claim is a committed row keeps its worker inside the item
// after a lost session: the loss is recorded, no interval is cut.
func TestClaimRowRecordsSessionLossNotLeaseLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: 1,
		Liveness: contract.Liveness{Claim: contract.ClaimRow}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	end := e.Recorder().Observer("w1.1").Begin("7", "i1")
	if err := e.LinkFault("w1", sim.Postgres, netfault.Reset{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TerminateBackends(ctx, "w1", sim.WorkerBackends); err != nil {
		t.Fatal(err)
	}
	if n := len(events(e, history.EventLeaseLost)); n != 0 {
		t.Errorf("%d lease losses recorded for a row claim", n)
	}
	if n := len(events(e, history.EventSessionLost)); n != 2 {
		t.Errorf("%d session losses, want 2 (the reset, the terminated backends)", n)
	}
	end("done")
	for _, iv := range e.Recorder().Snapshot().Intervals {
		if iv.Item == "7" && iv.Outcome != "done" {
			t.Errorf("interval %+v cut by a session loss of a row claim", iv)
		}
	}
}

// A worker whose listener is not told apart (no declared name, no LISTEN
// as its last statement) loses every session to a listener fault, and that
// is recorded as a loss.
func TestTerminateListenerNotToldApartEndsEverySession(t *testing.T) {
	ctx := context.Background()
	e := lateEnv(t, &lateSystem{})
	var n int
	if !sim.Await(ctx, 10*time.Second, func() bool {
		k, err := e.TerminateBackends(ctx, "w1", sim.ListenerBackends)
		n += k
		return err == nil && n > 0
	}) {
		t.Fatal("no session of the worker ended")
	}
	if len(events(e, history.EventLeaseLost)) == 0 {
		t.Error("every session ended: a loss must be recorded")
	}
}
