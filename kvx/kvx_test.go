package kvx_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/internal/kvxtest"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

func create(id, size string) contract.Request {
	return contract.Request{Op: contract.OpCreate, Instance: id, Size: size}
}

func resize(id, size string) contract.Request {
	return contract.Request{Op: contract.OpResize, Instance: id, Size: size}
}

func del(id string) contract.Request { return contract.Request{Op: contract.OpDelete, Instance: id} }

func get(id string) contract.Request { return contract.Request{Op: contract.OpGet, Instance: id} }

// ready waits until id is ready at generation gen with nothing pending and
// its welcome email (if any) has had time to be recorded: wantEmails emails.
func ready(e *kvxtest.Env, id string, gen int64, wantEmails int) (contract.Snapshot, fakes.Snapshot) {
	return e.Wait(fmt.Sprintf("%s ready at g%d", id, gen), func(s contract.Snapshot, l fakes.Snapshot) bool {
		in, ok := kvxtest.Instance(s, id)
		return ok && kvxtest.Settled(s) && in.State == kvx.StateReady && in.ObservedGen == gen &&
			len(kvxtest.Emails(l, id)) >= wantEmails
	})
}

func noOverlaps(t *testing.T, e *kvxtest.Env) {
	t.Helper()
	for _, v := range e.Observer.Violations() {
		t.Errorf("observer: %s", v)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	e.StartWorker("w1", 1)

	// create → ready: one VM, one deployment, one charge, one email.
	r := e.MustServe(contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small", Customer: "acme"})
	if r.State != kvx.StateProvisioning || !r.HasActiveWork || r.Size != "small" || r.Generation <= 0 {
		t.Fatalf("create answered %+v", r)
	}
	g1 := r.Generation
	snap, led := ready(e, "i1", g1, 1)
	in, _ := kvxtest.Instance(snap, "i1")
	vms := kvxtest.RunningVMs(led, "i1")
	if len(vms) != 1 || vms[0].ID != in.VMID || vms[0].Size != "small" {
		t.Fatalf("after create: instance %+v, running VMs %+v", in, vms)
	}
	if in.Customer != "acme" || in.DesiredSize != "small" || in.ObservedSize != "small" || in.Deleting {
		t.Errorf("after create: instance %+v", in)
	}
	deps := kvxtest.Deployments(led, "i1")
	if len(deps) != 1 || deps[0].Name != "kvx-i1" || deps[0].Size != "small" {
		t.Errorf("after create: deployments %+v", deps)
	}
	charges := kvxtest.Charges(led, "i1")
	wantEvent := fmt.Sprintf("provision:i1:g%d", g1)
	if len(charges) != 1 || charges[0].Event != wantEvent || charges[0].Amount != kvx.Price("small") || charges[0].Customer != "acme" {
		t.Errorf("after create: charges %+v, want one for %s", charges, wantEvent)
	}
	if m := kvxtest.Emails(led, "i1"); len(m) != 1 || m[0].Event != kvx.WelcomeEvent("i1", g1) || m[0].To != kvx.WelcomeTo("acme") {
		t.Errorf("after create: emails %+v", m)
	}
	if got := e.MustServe(get("i1")); got.State != kvx.StateReady || got.HasActiveWork || got.Generation != g1 || got.Size != "small" {
		t.Errorf("get after create: %+v", got)
	}

	// resize → observed size, a resize charge.
	r = e.MustServe(resize("i1", "large"))
	g2 := r.Generation
	if g2 <= g1 || r.State != kvx.StateResizing || !r.HasActiveWork {
		t.Fatalf("resize answered %+v (create was g%d)", r, g1)
	}
	snap, led = ready(e, "i1", g2, 1)
	in, _ = kvxtest.Instance(snap, "i1")
	if in.ObservedSize != "large" || in.DesiredSize != "large" {
		t.Errorf("after resize: instance %+v", in)
	}
	if vms := kvxtest.RunningVMs(led, "i1"); len(vms) != 1 || vms[0].ID != in.VMID || vms[0].Size != "large" {
		t.Errorf("after resize: running VMs %+v", vms)
	}
	if deps := kvxtest.Deployments(led, "i1"); len(deps) != 1 || deps[0].Size != "large" {
		t.Errorf("after resize: deployments %+v", deps)
	}
	charges = kvxtest.Charges(led, "i1")
	if len(charges) != 2 || charges[1].Event != fmt.Sprintf("resize:i1:g%d", g2) || charges[1].Amount != kvx.Price("large") {
		t.Errorf("after resize: charges %+v", charges)
	}

	// delete → VM terminated, deployment gone, row gone, no charge.
	r = e.MustServe(del("i1"))
	if r.State != kvx.StateDeleting || r.Generation <= g2 {
		t.Fatalf("delete answered %+v", r)
	}
	_, led = e.Wait("i1 deleted", func(s contract.Snapshot, _ fakes.Snapshot) bool {
		_, ok := kvxtest.Instance(s, "i1")
		return !ok && len(s.Work) == 0
	})
	if vms := kvxtest.RunningVMs(led, "i1"); len(vms) != 0 {
		t.Errorf("after delete: running VMs %+v", vms)
	}
	if deps := kvxtest.Deployments(led, "i1"); len(deps) != 0 {
		t.Errorf("after delete: deployments %+v", deps)
	}
	if n := len(kvxtest.Charges(led, "i1")); n != 2 {
		t.Errorf("after delete: %d charges, want 2 (delete charges nothing)", n)
	}
	if _, err := e.Serve(get("i1")); !errors.Is(err, contract.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}

	// re-create the same id: a new uid, so new keys: a new VM and a new,
	// distinct provision event.
	r = e.MustServe(create("i1", "medium"))
	g4 := r.Generation
	_, led = ready(e, "i1", g4, 2)
	if vms := kvxtest.RunningVMs(led, "i1"); len(vms) != 1 || vms[0].Size != "medium" {
		t.Errorf("after re-create: running VMs %+v", vms)
	}
	events := map[string]int{}
	for _, c := range kvxtest.Charges(led, "i1") {
		events[c.Event]++
	}
	if len(events) != 3 {
		t.Errorf("after re-create: charge events %v, want 3 distinct", events)
	}
	noOverlaps(t, e)
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	for _, req := range []contract.Request{
		{Op: "reboot", Instance: "i1"},
		{Op: contract.OpCreate, Size: "small"},
		{Op: contract.OpCreate, Instance: strings.Repeat("a", kvx.MaxIDLen+1), Size: "small"},
		{Op: contract.OpCreate, Instance: "I1", Size: "small"},
		{Op: contract.OpCreate, Instance: "i_1", Size: "small"},
		{Op: contract.OpCreate, Instance: "-i1", Size: "small"},
		{Op: contract.OpCreate, Instance: "i1", Size: ""},
		{Op: contract.OpCreate, Instance: "i1", Size: "huge"},
		{Op: contract.OpCreate, Instance: "i1", Size: "small", Customer: "a b"},
		{Op: contract.OpResize, Instance: "i1", Size: "tiny"},
		{Op: contract.OpGet},
		{Op: contract.OpDelete},
	} {
		if _, err := e.Serve(req); !errors.Is(err, contract.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", req, err)
		}
	}
	if _, err := e.Serve(create(strings.Repeat("a", kvx.MaxIDLen), "small")); err != nil {
		t.Errorf("create with a %d-character id: %v", kvx.MaxIDLen, err)
	}
	for _, req := range []contract.Request{get("nope"), resize("nope", "small"), del("nope")} {
		if _, err := e.Serve(req); !errors.Is(err, contract.ErrNotFound) {
			t.Errorf("%+v: %v, want ErrNotFound", req, err)
		}
	}
	if snap := e.Inspect(); len(snap.Instances) != 1 || len(snap.Work) != 1 {
		t.Errorf("refused requests changed something: %s", kvxtest.Dump(snap))
	}
}

func TestBusy(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	// No worker yet: the create's work stays active.
	g1 := e.MustServe(create("i1", "small")).Generation
	for _, req := range []contract.Request{resize("i1", "large"), del("i1")} {
		if _, err := e.Serve(req); !contract.IsBusy(err) {
			t.Errorf("%s during provision: %v, want busy", req.Op, err)
		}
	}
	if _, err := e.Serve(create("i1", "small")); !errors.Is(err, contract.ErrExists) {
		t.Errorf("create of an existing instance: %v, want ErrExists", err)
	}
	if got := e.MustServe(get("i1")); got.Generation != g1 || !got.HasActiveWork || got.State != kvx.StateProvisioning {
		t.Errorf("refused changes changed the instance: %+v", got)
	}
	if snap := e.Inspect(); len(snap.Work) != 1 {
		t.Errorf("refused changes enqueued work: %s", kvxtest.Dump(snap))
	}

	stop := e.StartWorker("w1", 1)
	ready(e, "i1", g1, 1)
	stop()

	// Many concurrent changes of a ready instance: exactly one is accepted.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			req := resize("i1", "medium")
			if i%2 == 1 {
				req = del("i1")
			}
			_, errs[i] = e.Serve(req)
		})
	}
	wg.Wait()
	accepted := 0
	for i, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !contract.IsBusy(err):
			t.Errorf("concurrent change %d: %v, want nil or busy", i, err)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %d concurrent changes accepted, want exactly 1", accepted, n)
	}
	if snap := e.Inspect(); len(snap.Work) != 1 {
		t.Errorf("want one work item after the concurrent changes: %s", kvxtest.Dump(snap))
	}

	// A create of an instance being deleted is busy, not "exists".
	e2 := kvxtest.New(t, kvx.New(kvx.Options{}))
	stop2 := e2.StartWorker("w1", 2)
	g := e2.MustServe(create("i2", "small")).Generation
	ready(e2, "i2", g, 1)
	stop2()
	e2.MustServe(del("i2"))
	if _, err := e2.Serve(create("i2", "small")); !contract.IsBusy(err) {
		t.Errorf("create while deleting: %v, want busy", err)
	}
}

// TestTransientRetried injects transient and ambiguous faults into every
// provider step, with two workers: everything converges, and the ledgers
// show each effect once.
func TestTransientRetried(t *testing.T) {
	t.Parallel()
	// The observer sees a worker leave a retried item only after the
	// COMMIT that re-queued it has returned; with the default 25 ms backoff
	// (12.5 ms after jitter) another worker may claim the item before that,
	// under -race on 2 busy cores, and the observer would report an overlap
	// that never held a claim twice. A longer backoff keeps the test exact.
	e := kvxtest.New(t, kvx.New(kvx.Options{Budget: kvx.Budget{MinBackoff: 250 * time.Millisecond}}))
	for _, f := range []fakes.Fault{
		{Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailAfter, Times: 2},          // VM made, 500
		{Service: "kube", Endpoint: "Apply", Mode: fakes.ModeFailBefore, Drop: true, Times: 1}, // connection dropped
		{Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailAfter, Drop: true, Times: 1},
		{Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailBefore, Status: 429, Times: 1},
		{Service: "cloud", Endpoint: "ResizeVM", Mode: fakes.ModeFailAfter, Times: 1},
		{Service: "cloud", Endpoint: "TerminateVM", Mode: fakes.ModeFailAfter, Drop: true, Times: 1},
		{Service: "kube", Endpoint: "Delete", Mode: fakes.ModeFailAfter, Times: 1}, // deleted, then 500: a 404 next
	} {
		if err := e.World.AddFault(f); err != nil {
			t.Fatal(err)
		}
	}
	e.StartWorker("w1", 1)
	e.StartWorker("w2", 2)

	g1 := e.MustServe(create("i1", "small")).Generation
	_, led := ready(e, "i1", g1, 1)
	if n := len(kvxtest.RunningVMs(led, "i1")); n != 1 {
		t.Errorf("%d running VMs after retried creates, want 1", n)
	}
	if n := len(kvxtest.Charges(led, "i1")); n != 1 {
		t.Errorf("%d charges after retried charges, want 1", n)
	}
	g2 := e.MustServe(resize("i1", "medium")).Generation
	ready(e, "i1", g2, 1)
	e.MustServe(del("i1"))
	_, led = e.Wait("i1 deleted", func(s contract.Snapshot, _ fakes.Snapshot) bool {
		return len(s.Instances) == 0 && len(s.Work) == 0
	})
	if vms := kvxtest.RunningVMs(led, "i1"); len(vms) != 0 {
		t.Errorf("running VMs after delete: %+v", vms)
	}
	if deps := kvxtest.Deployments(led, "i1"); len(deps) != 0 {
		t.Errorf("deployments after delete: %+v", deps)
	}
	events := map[string]int{}
	for _, c := range kvxtest.Charges(led, "i1") {
		events[c.Event]++
	}
	want := map[string]int{fmt.Sprintf("provision:i1:g%d", g1): 1, fmt.Sprintf("resize:i1:g%d", g2): 1}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("charges by event %v, want %v", events, want)
	}
	for _, ep := range []string{"CreateVM", "Apply", "CreateCharge", "ResizeVM", "TerminateVM", "Delete"} {
		if kvxtest.Fired(led, ep) == 0 {
			t.Errorf("no fault fired on %s: the test did not exercise its retry", ep)
		}
	}
	if e.Observer.Outcomes()["retry"] == 0 {
		t.Errorf("no item was retried: outcomes %v", e.Observer.Outcomes())
	}
	noOverlaps(t, e)
}

// TestIntransientParks deploys a bug in billing: the provision parks,
// visibly, with the instance still locked; after the fix and a resume it
// completes with one charge.
func TestIntransientParks(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	if err := e.World.AddFault(fakes.Fault{ID: "bug", Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeIntransient}); err != nil {
		t.Fatal(err)
	}
	e.StartWorker("w1", 1)
	g1 := e.MustServe(create("i1", "small")).Generation
	snap, _ := e.Wait("provision parked", func(s contract.Snapshot, _ fakes.Snapshot) bool {
		return len(s.Work) == 1 && s.Work[0].Parked
	})
	if w := snap.Work[0]; w.Kind != kvx.KindProvision || w.Key != "i1" || w.Reason == "" {
		t.Errorf("parked item %+v", w)
	}
	if in, _ := kvxtest.Instance(snap, "i1"); !in.HasActiveWork || in.State != kvx.StateProvisioning {
		t.Errorf("instance while parked: %+v", in)
	}
	if _, err := e.Serve(resize("i1", "large")); !contract.IsBusy(err) {
		t.Errorf("resize while parked: %v, want busy", err)
	}

	if n := e.World.ClearFault("bug"); n == 0 {
		t.Fatal("no fault cleared")
	}
	r := e.MustServe(contract.Request{Op: contract.OpResume})
	if r.Resumed != 1 {
		t.Errorf("resume released %d items, want 1", r.Resumed)
	}
	_, led := ready(e, "i1", g1, 1)
	if n := len(kvxtest.Charges(led, "i1")); n != 1 {
		t.Errorf("%d charges, want 1", n)
	}
	if e.Observer.Outcomes()["parked"] == 0 {
		t.Errorf("observer saw no parked outcome: %v", e.Observer.Outcomes())
	}
}

// TestMismatchParks: a key reused with other parameters (here: a charge made
// by hand with the key the provision will use) is intransient.
func TestMismatchParks(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	r := e.MustServe(create("i1", "small"))
	var uid string
	if err := e.DB.QueryRow(t.Context(), `SELECT uid::text FROM instances WHERE id = 'i1'`).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	event := fmt.Sprintf("provision:i1:g%d", r.Generation)
	billing := kvx.NewClients(e.Deps("squatter", 9), 2*time.Second).Billing
	if _, err := billing.CreateCharge(t.Context(), fakes.ChargeRequest{
		Customer: "i1", Owner: "i1", Amount: 1, Event: event, IdempotencyKey: kvx.ChargeKey(uid, event),
	}); err != nil {
		t.Fatal(err)
	}
	e.StartWorker("w1", 1)
	snap, _ := e.Wait("provision parked", func(s contract.Snapshot, _ fakes.Snapshot) bool {
		return len(s.Work) == 1 && s.Work[0].Parked
	})
	if !strings.Contains(snap.Work[0].Reason, "different parameters") {
		t.Errorf("parked with reason %q", snap.Work[0].Reason)
	}
}

// TestWelcomeAtMostOnce: a send that fails after the email went out is not
// retried.
func TestWelcomeAtMostOnce(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	if err := e.World.AddFault(fakes.Fault{Service: "email", Endpoint: "Send", Mode: fakes.ModeFailAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	e.StartWorker("w1", 1)
	g := e.MustServe(create("i1", "small")).Generation
	_, led := ready(e, "i1", g, 1)
	if kvxtest.Fired(led, "Send") != 1 {
		t.Fatalf("the fault did not fire")
	}
	// Give a (wrong) retry every chance to show: another create's email
	// being recorded means the first item is long done.
	g2 := e.MustServe(create("i2", "small")).Generation
	_, led = ready(e, "i2", g2, 1)
	if m := kvxtest.Emails(led, "i1"); len(m) != 1 {
		t.Errorf("%d welcome emails for i1, want exactly 1", len(m))
	}
}

// TestChargeStored5xx: billing stores a 500 given after the charge was made
// and replays it to every retry with the key; the worker settles it from
// the billing ledger instead of retrying forever, and charges once.
func TestChargeStored5xx(t *testing.T) {
	t.Parallel()
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	if err := e.World.AddFault(fakes.Fault{Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	e.StartWorker("w1", 1)
	g := e.MustServe(create("i1", "small")).Generation
	_, led := ready(e, "i1", g, 1)
	if kvxtest.Fired(led, "CreateCharge") != 1 {
		t.Fatal("the fault did not fire")
	}
	if n := len(kvxtest.Charges(led, "i1")); n != 1 {
		t.Errorf("%d charges, want 1", n)
	}
}

// TestDefaultStepsComplete: New fills every nil part from DefaultSteps, so
// DefaultSteps must set every field.
func TestDefaultStepsComplete(t *testing.T) {
	v := reflect.ValueOf(kvx.DefaultSteps())
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			t.Errorf("DefaultSteps leaves %s nil", v.Type().Field(i).Name)
		}
	}
}

// TestReadAfterWriteLag: with new VMs invisible to describe, list and
// find-by-token for the whole test, the lifecycle still converges with no
// second VM and no VM left running: kvx never decides from a read that lags.
func TestReadAfterWriteLag(t *testing.T) {
	t.Parallel()
	e := kvxtest.NewWith(t, kvx.New(kvx.Options{}), fakes.Options{Lag: time.Hour})
	if err := e.World.AddFault(fakes.Fault{Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	e.StartWorker("w1", 1)
	g := e.MustServe(create("i1", "small")).Generation
	_, led := ready(e, "i1", g, 1)
	if n := len(kvxtest.RunningVMs(led, "i1")); n != 1 {
		t.Errorf("%d running VMs, want 1", n)
	}
	g = e.MustServe(resize("i1", "medium")).Generation
	ready(e, "i1", g, 1)
	e.MustServe(del("i1"))
	_, led = e.Wait("i1 deleted", func(s contract.Snapshot, _ fakes.Snapshot) bool {
		return len(s.Instances) == 0 && len(s.Work) == 0
	})
	if vms := kvxtest.RunningVMs(led, "i1"); len(vms) != 0 {
		t.Errorf("running VMs after delete: %+v", vms)
	}
}

// TestLateCallFenced: a worker's claiming session is killed while its
// deployment Apply (large) is held 4s by a slow Kubernetes API, which acts
// on it when the delay ends, as a real server does after its client gave up.
// The resize is taken over and completes, and the next resize (small) is
// accepted at once. Without the fence the small one ran before the held
// Apply landed, and that late Apply left the deployment large under an
// instance that wants small (found by the false-alarm gates on the
// reference); with it, the next resize waits until the held call can no
// longer land.
func TestLateCallFenced(t *testing.T) {
	t.Parallel()
	const held = 4 * time.Second
	e := kvxtest.New(t, kvx.New(kvx.Options{}))
	e.StartWorker("w1", 1)
	e.StartWorker("w2", 2)
	g1 := e.MustServe(create("i1", "small")).Generation
	ready(e, "i1", g1, 1)

	if err := e.World.AddFault(fakes.Fault{Service: "kube", Endpoint: "Apply", Mode: fakes.ModeLatency, Latency: held, Times: 1}); err != nil {
		t.Fatal(err)
	}
	g2 := e.MustServe(resize("i1", "large")).Generation
	// The claiming session idles in its transaction while the Apply is
	// held; every other call of the resize takes milliseconds.
	ctx := context.Background()
	deadline := time.Now().Add(kvxtest.WaitLimit)
	for {
		var n int
		if err := e.DB.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction'
			AND now() - state_change > interval '500 milliseconds'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no claiming session held in the slow Apply")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready(e, "i1", g2, 1)
	g3 := e.MustServe(resize("i1", "small")).Generation
	_, led := ready(e, "i1", g3, 1)
	// Wait for the held Apply to have been acted on before reading the
	// deployment: the ledger records a request when it ends.
	_, led = e.Wait("the held Apply to land", func(_ contract.Snapshot, l fakes.Snapshot) bool {
		return kvxtest.Fired(l, "Apply") == 1
	})
	deps := kvxtest.Deployments(led, "i1")
	if len(deps) != 1 || deps[0].Size != "small" {
		t.Errorf("deployments of i1 after resizes to large then small: %+v, want one of size small (a late Apply of the first worker overtook the second resize)", deps)
	}
	// No noOverlaps: the killed worker's handler runs on until its Apply
	// times out, beside the takeover. That overlap is the premise here.
}
