package sim_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/netfault"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
	"github.com/workproof/workproof/sim/proc"
)

func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(proc.SpecEnv); ok {
		os.Exit(workerProcess()) // started by a test below as a worker process
	}
	pgenvtest.Main(m)
}

func newEnv(t *testing.T, workers int) *sim.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: workers, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func events(e *sim.Env, kind history.EventKind) []history.Event {
	var out []history.Event
	for _, ev := range e.Recorder().Snapshot().Events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// A crash freezes the incarnation and severs its links; Finish restarts
// the slot as a new incarnation that finishes the work, and checks.
func TestCrashRestartConverge(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	if err := e.Crash("w1", crash.Rule{At: "cloud:CreateVM:done"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatal(err)
	}
	if !sim.Await(ctx, 10*time.Second, func() bool { return e.Crashed("w1") }) {
		t.Fatal("w1 never crashed")
	}
	if inc, _ := e.Incarnation("w1"); inc != "w1.1" {
		t.Fatalf("incarnation %s before restart", inc)
	}
	res, err := e.Finish(ctx)
	if err != nil || !res.Settled {
		t.Fatalf("finish: settled=%v err=%v", res.Settled, err)
	}
	if inc, _ := e.Incarnation("w1"); inc != "w1.2" {
		t.Fatalf("incarnation %s after finish, want w1.2", inc)
	}
	if res.Verdict != check.Valid {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Violations)
	}
	if len(events(e, history.EventCrash)) == 0 || len(res.Crashes) != 1 {
		t.Fatalf("crash not recorded: events %v, hits %v", events(e, history.EventCrash), res.Crashes)
	}
}

// A fault on a worker's database link that can end its session is
// recorded as a lease loss; latency is not. Heal records the faults off.
func TestLinkFaultsRecordLeaseLoss(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.LinkFault("w1", sim.Postgres, netfault.Latency{Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n := len(events(e, history.EventLeaseLost)); n != 0 {
		t.Fatalf("latency recorded %d lease losses", n)
	}
	if err := e.LinkFault("w1", sim.Postgres, netfault.Blackhole{}); err != nil {
		t.Fatal(err)
	}
	if err := e.LinkFault("w1", fakes.ServiceCloud, netfault.Reset{}); err != nil {
		t.Fatal(err)
	}
	if n := len(events(e, history.EventLeaseLost)); n != 1 {
		t.Fatalf("%d lease losses, want 1 (the database blackhole only)", n)
	}
	if got := len(e.ActiveFaults()); got != 3 {
		t.Fatalf("active faults %v", e.ActiveFaults())
	}
	if err := e.HealLinks(); err != nil {
		t.Fatal(err)
	}
	if len(e.ActiveFaults()) != 0 || len(events(e, history.EventFaultOff)) != 3 {
		t.Fatalf("after heal: active %v, fault-off events %d", e.ActiveFaults(), len(events(e, history.EventFaultOff)))
	}
	if err := e.LinkFault("w1", "nowhere", netfault.Reset{}); err == nil {
		t.Fatal("a fault on an unknown upstream must be an error")
	}
}

// A lease loss is recorded before the fault that causes it acts: the item
// the lost session held can be claimed by another worker at once, and a
// loss recorded after that claim would read as two workers in one item.
func TestLeaseLossRecordedBeforeTheFault(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	if err := e.LinkFault("w1", sim.Postgres, netfault.Reset{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TerminateBackends(ctx, "w1", sim.WorkerBackends); err != nil {
		t.Fatal(err)
	}
	var kinds []history.EventKind
	for _, ev := range e.Recorder().Snapshot().Events {
		if ev.Kind == history.EventLeaseLost || ev.Kind == history.EventFaultOn {
			kinds = append(kinds, ev.Kind)
		}
	}
	want := []history.EventKind{history.EventLeaseLost, history.EventFaultOn, history.EventLeaseLost, history.EventFaultOn}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v (each lease loss before its fault)", kinds, want)
	}
}

// TerminateBackends finds the worker's listener by its LISTEN statement.
func TestTerminateListener(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	var n int
	ok := sim.Await(ctx, 10*time.Second, func() bool {
		k, err := e.TerminateBackends(ctx, "w1", sim.ListenerBackends)
		n += k
		return err == nil && n > 0
	})
	if !ok {
		t.Fatal("no listener session found")
	}
	if len(events(e, history.EventLeaseLost)) != 0 {
		t.Fatal("killing the listener holds no claim: not a lease loss")
	}
	if _, err := e.TerminateBackends(ctx, "w1", "bogus"); err == nil {
		t.Fatal("unknown backend kind must be an error")
	}
}

// Kill, then Restart: a new incarnation with new links does the work.
func TestKillRestart(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	if err := e.Kill("w1"); err != nil {
		t.Fatal(err)
	}
	if !e.Crashed("w1") {
		t.Fatal("killed worker not crashed")
	}
	if err := e.Restart(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if e.Crashed("w1") {
		t.Fatal("restarted worker still crashed")
	}
	if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatal(err)
	}
	if !sim.Await(ctx, 10*time.Second, func() bool {
		r, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpGet, Instance: "i1"})
		return err == nil && !r.HasActiveWork
	}) {
		t.Fatal("the new incarnation did not do the work")
	}
}

// In scheduled mode workers park at every point until Step lets one go.
func TestScheduledStep(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	e.SetScheduled(true)
	seen := map[string]bool{}
	for range 40 {
		p, ok := e.Step(ctx, 10*time.Millisecond)
		if !ok {
			continue
		}
		seen[p.Worker] = true
	}
	if len(seen) == 0 {
		t.Fatal("no worker ever parked in scheduled mode")
	}
	e.SetScheduled(false)
}

// A request handler crashed at one of its statements ends with an unknown
// outcome and leaves nothing half-done (its transaction rolls back); the
// client's next request runs on a new link.
func TestCrashRequest(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	e.Gate().OnPoint(sim.APIActor("u1"), crash.Rule{At: "sql:insert work"}, func() { e.CrashRequest("u1") })
	if _, err := e.Serve(ctx, "u1", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err == nil {
		t.Fatal("a crashed request answered OK")
	}
	ops := e.Recorder().Snapshot().Ops
	if len(ops) != 1 || ops[0].Outcome != history.Info {
		t.Fatalf("ops %+v, want one Info", ops)
	}
	if _, err := e.Serve(ctx, "u1", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatalf("the client's next request: %v (the crashed one must have rolled back)", err)
	}
	res, err := e.Finish(ctx)
	if err != nil || res.Verdict != check.Valid {
		t.Fatalf("finish: %v %s %v", err, res.Verdict, res.Violations)
	}
}

// A fault on an API client's link reaches its requests, and heals.
func TestAPILinkFault(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	if err := e.APILinkFault(ctx, "u1", netfault.Partition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Serve(ctx, "u1", contract.Request{Op: contract.OpGet, Instance: "i1"}); err == nil || errors.Is(err, contract.ErrNotFound) {
		t.Fatalf("a partitioned client's request: %v", err)
	}
	if _, err := e.Serve(ctx, "u2", contract.Request{Op: contract.OpGet, Instance: "i1"}); !errors.Is(err, contract.ErrNotFound) {
		t.Fatalf("another client's request: %v", err)
	}
	if err := e.HealLinks(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Serve(ctx, "u1", contract.Request{Op: contract.OpGet, Instance: "i1"}); !errors.Is(err, contract.ErrNotFound) {
		t.Fatalf("after heal: %v", err)
	}
}

// returnCounter is kvx whose Work counts the incarnations that returned.
type returnCounter struct {
	contract.System
	returned atomic.Int32
}

func (r *returnCounter) Work(ctx context.Context, db *pgxpool.Pool, deps contract.Deps) error {
	defer r.returned.Add(1)
	return r.System.Work(ctx, db, deps)
}

// With ReleaseCrashed a killed incarnation's goroutine returns once its slot
// has a new one, and the new one still does the work.
func TestReleaseCrashed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	sys := &returnCounter{System: kvx.New(kvx.Options{})}
	e, err := sim.New(ctx, sim.Options{System: sys, Server: pgenvtest.Server(t), Workers: 1, Seed: 3, ReleaseCrashed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	for i := range 3 {
		if err := e.Restart(ctx, "w1"); err != nil {
			t.Fatal(err)
		}
		want := int32(i + 1)
		if !sim.Await(ctx, 10*time.Second, func() bool { return sys.returned.Load() == want }) {
			t.Fatalf("after %d restarts %d incarnations returned", i+1, sys.returned.Load())
		}
	}
	if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatal(err)
	}
	res, err := e.Finish(ctx)
	if err != nil || !res.Settled || res.Verdict != check.Valid {
		t.Fatalf("finish: settled=%v verdict=%s err=%v %v", res.Settled, res.Verdict, err, res.Violations)
	}
}

// Compact forgets the provider state of a lifetime its valid check found
// ended once a later lifetime of the same instance ended too (the latest
// ended one stays, for a re-create to meet), keeps a live instance's, and
// the checks after it stay valid.
func TestCompactForgetsEndedLifetimes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	serve := func(req contract.Request) {
		t.Helper()
		if _, err := e.Serve(ctx, "u", req); err != nil {
			t.Fatalf("%s %s: %v", req.Op, req.Instance, err)
		}
	}
	compact := func(step string) {
		t.Helper()
		res, err := e.Finish(ctx)
		if err != nil || res.Verdict != check.Valid {
			t.Fatalf("%s: finish %s %v, %v", step, res.Verdict, res.Violations, err)
		}
		if _, err := e.Compact(res); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	want := func(step, owner string, n int) {
		t.Helper()
		s := e.Providers().Snapshot()
		var vms, charges, emails int
		for _, vm := range s.VMs {
			vms += b2i(vm.Owner == owner)
		}
		for _, ch := range s.Charges {
			charges += b2i(ch.Owner == owner)
		}
		for _, m := range s.Emails {
			emails += b2i(m.Owner == owner)
		}
		if vms != n || charges != n || emails != n {
			t.Errorf("%s: %s has %d VMs, %d charges, %d emails; want %d each", step, owner, vms, charges, emails, n)
		}
	}
	serve(contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"})
	serve(contract.Request{Op: contract.OpCreate, Instance: "i2", Size: "small"})
	compact("create")
	serve(contract.Request{Op: contract.OpDelete, Instance: "i1"})
	compact("delete")
	want("the first lifetime ended", "i1", 1)
	serve(contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "large"})
	compact("re-create")
	want("re-created", "i1", 2)
	serve(contract.Request{Op: contract.OpDelete, Instance: "i1"})
	compact("delete again")
	want("the second lifetime ended", "i1", 1)
	want("live all along", "i2", 1)
	serve(contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "medium"})
	if res, err := e.Finish(ctx); err != nil || res.Verdict != check.Valid {
		t.Fatalf("the third lifetime: finish %s %v, %v", res.Verdict, res.Violations, err)
	}
	want("the third lifetime", "i1", 2)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
