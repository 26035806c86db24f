package fakes

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

func rec(seq int64, caller, owner string, mutation bool, start, end int) Record {
	r := Record{Seq: seq, Service: "cloud", Endpoint: "CreateVM", Caller: caller, Owner: owner,
		Mutation: mutation, Start: t0.Add(time.Duration(start) * time.Second)}
	if end >= 0 {
		r.End = t0.Add(time.Duration(end) * time.Second)
	}
	return r
}

func TestOverlappingMutationsHandMade(t *testing.T) {
	s := Snapshot{Requests: []Record{
		rec(1, "w1", "i1", true, 0, 10),
		rec(2, "w2", "i1", true, 5, 6),   // overlaps 1
		rec(3, "w1", "i1", true, 7, 8),   // same caller as 1; overlaps nothing else (2 ended at 6)
		rec(4, "w3", "i1", true, 10, 12), // touches 1 at 10: no overlap
		rec(5, "w2", "i2", true, 0, 10),  // other owner
		rec(6, "w4", "i1", false, 0, 10), // a read
		rec(7, "w5", "", true, 0, 10),    // no owner
		rec(8, "w9", "i1", true, 11, -1), // still in flight: overlaps 4
		rec(9, "w3", "i1", true, 20, 21), // overlaps 8 (open-ended)
	}}
	got := s.OverlappingMutations()
	var pairs [][2]int64
	for _, o := range got {
		pairs = append(pairs, [2]int64{o.A.Seq, o.B.Seq})
	}
	want := [][2]int64{{1, 2}, {4, 8}, {8, 9}}
	if !reflect.DeepEqual(pairs, want) {
		t.Fatalf("got %v, want %v", pairs, want)
	}
	if len((Snapshot{}).OverlappingMutations()) != 0 {
		t.Fatal("empty snapshot has overlaps")
	}
}

func TestLedgerQueriesHandMade(t *testing.T) {
	s := Snapshot{
		VMs: []VM{
			{ID: "a", Owner: "i1", State: "running"},
			{ID: "b", Owner: "i1", State: "terminated"},
			{ID: "c", Owner: "i2", State: "running"},
		},
		Deployments: []Deployment{{Name: "d1", Owner: "i1"}, {Name: "d2", Owner: "i2"}},
		Charges: []Charge{
			{ID: "ch1", Event: "e1"}, {ID: "ch2", Event: "e2"}, {ID: "ch3", Event: "e1", Refunded: true},
		},
		Emails:   []Email{{ID: "m1", Event: "x"}, {ID: "m2", Event: "x"}},
		Requests: []Record{{Seq: 1, Owner: "i1"}, {Seq: 2, Owner: "i2"}},
	}
	if v := s.LiveVMs("i1"); len(v) != 1 || v[0].ID != "a" {
		t.Fatalf("LiveVMs(i1) = %+v", v)
	}
	if v := s.LiveVMs(""); len(v) != 2 {
		t.Fatalf("LiveVMs() = %+v", v)
	}
	if v := s.LiveVMs("i3"); len(v) != 0 {
		t.Fatalf("LiveVMs(i3) = %+v", v)
	}
	if d := s.LiveDeployments("i2"); len(d) != 1 || d[0].Name != "d2" {
		t.Fatalf("LiveDeployments = %+v", d)
	}
	if c := s.ChargesByEvent(); len(c["e1"]) != 2 || c["e1"][1].ID != "ch3" || len(c["e2"]) != 1 {
		t.Fatalf("ChargesByEvent = %+v", c)
	}
	if e := s.EmailsByEvent(); len(e["x"]) != 2 {
		t.Fatalf("EmailsByEvent = %+v", e)
	}
	if r := s.Filter(func(r Record) bool { return r.Owner == "i2" }); len(r) != 1 || r[0].Seq != 2 {
		t.Fatalf("Filter = %+v", r)
	}
	m := Merge(Snapshot{Requests: []Record{{Seq: 3}, {Seq: 1}}}, Snapshot{Requests: []Record{{Seq: 2}}, VMs: s.VMs})
	if m.Requests[0].Seq != 1 || m.Requests[2].Seq != 3 || len(m.VMs) != 3 {
		t.Fatalf("Merge = %+v", m)
	}
}

func TestOverlapFromRealTraffic(t *testing.T) {
	w := world(t, Options{Clock: NewOffsetClock()})
	entered, release := hold(t, w.Cloud().server, "w1")
	a, b := clientsFor(w, "w1"), clientsFor(w, "w2")
	done := make(chan error, 1)
	go func() {
		_, err := a.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r", ClientToken: "t"})
		done <- err
	}()
	<-entered
	val(b.kube.Apply(ctxT(t), Deployment{Name: "d", Owner: "i1", Size: "s"})).must(t)  // race
	val(b.kube.Apply(ctxT(t), Deployment{Name: "d2", Owner: "i2", Size: "s"})).must(t) // other owner
	val(b.cloud.ListVMs(ctxT(t), "i1")).must(t)                                        // a read
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	val(b.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r", ClientToken: "t"})).must(t) // after
	s := w.Snapshot()
	o := s.OverlappingMutations()
	if len(o) != 1 || o[0].A.Endpoint != "CreateVM" || o[0].A.Caller != "w1" || o[0].B.Endpoint != "Apply" || o[0].B.Caller != "w2" {
		t.Fatalf("overlaps: %+v", o)
	}
	// Snapshots are plain data.
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, back) {
		t.Fatalf("snapshot JSON round trip differs")
	}
}

func TestWorldSharesOneSequence(t *testing.T) {
	w := world(t, Options{})
	c := clientsFor(w, "w1")
	val(c.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r"})).must(t)
	val(c.billing.CreateCharge(ctxT(t), ChargeRequest{Customer: "c", Owner: "i1", Amount: 1, Event: "e"})).must(t)
	val(c.kube.Apply(ctxT(t), Deployment{Name: "d", Owner: "i1"})).must(t)
	val(c.email.Send(ctxT(t), EmailRequest{To: "t", Owner: "i1", Event: "e"})).must(t)
	s := w.Snapshot()
	var services []string
	for i, r := range s.Requests {
		if r.Seq != int64(i+1) {
			t.Fatalf("seq %d at %d", r.Seq, i)
		}
		services = append(services, r.Service)
	}
	if !reflect.DeepEqual(services, []string{"cloud", "billing", "kube", "email"}) {
		t.Fatalf("order %v", services)
	}
	if len(s.VMs) != 1 || len(s.Charges) != 1 || len(s.Deployments) != 1 || len(s.Emails) != 1 {
		t.Fatalf("merged snapshot %+v", s)
	}
	for _, sv := range w.Servers() {
		if sv.URL() != "http://"+sv.Addr() {
			t.Fatalf("%s: URL %s, Addr %s", sv.Service(), sv.URL(), sv.Addr())
		}
	}
}

func TestOmitReads(t *testing.T) {
	w := world(t, Options{OmitReads: true})
	c := clientsFor(w, "w1").cloud
	vm := val(c.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r"})).must(t)
	val(c.DescribeVM(ctxT(t), vm.ID)).must(t)
	val(c.ListVMs(ctxT(t), "")).must(t)
	if rs := w.Cloud().Snapshot().Requests; len(rs) != 1 || rs[0].Endpoint != "CreateVM" {
		t.Fatalf("requests %+v", rs)
	}
}

func TestClocks(t *testing.T) {
	m := NewManualClock(t0)
	m.Advance(time.Hour)
	if !m.Now().Equal(t0.Add(time.Hour)) {
		t.Fatal("Advance")
	}
	m.Set(t0)
	if !m.Now().Equal(t0) {
		t.Fatal("Set")
	}
	o := NewOffsetClock()
	before := time.Now()
	o.Advance(24 * time.Hour)
	o.Advance(-48 * time.Hour) // ignored: monotonic
	if o.Offset() != 24*time.Hour || o.Now().Before(before.Add(24*time.Hour)) {
		t.Fatalf("offset %v", o.Offset())
	}
	if RealClock().Now().Before(before) {
		t.Fatal("real clock")
	}
}

func TestWorldForgetsEndedRequestsKeepsState(t *testing.T) {
	w := world(t, Options{})
	c := clientsFor(w, "w1")
	val(c.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r"})).must(t)
	val(c.billing.CreateCharge(ctxT(t), ChargeRequest{Customer: "c", Owner: "i1", Amount: 1, Event: "e"})).must(t)
	upTo := w.Snapshot()
	val(c.kube.Apply(ctxT(t), Deployment{Name: "d", Owner: "i1"})).must(t)
	w.Forget(upTo, nil)
	s := w.Snapshot()
	if len(s.Requests) != 1 || s.Requests[0].Seq != 3 || s.Requests[0].Service != "kube" {
		t.Fatalf("requests after Forget: %+v, want only kube's, seq 3", s.Requests)
	}
	if len(s.VMs) != 1 || len(s.Charges) != 1 || len(s.Deployments) != 1 {
		t.Fatalf("state after Forget %+v: want the VM, charge and deployment kept", s)
	}
	val(c.email.Send(ctxT(t), EmailRequest{To: "t", Owner: "i1", Event: "e"})).must(t)
	if s := w.Snapshot(); len(s.Requests) != 2 || s.Requests[1].Seq != 4 {
		t.Fatalf("numbering after Forget: %+v, want seq 4 next", s.Requests)
	}
}

// An ended lifetime's state goes with Forget: its terminated VM and client
// token, its charges and idempotency records, its emails. A live owner's,
// an owner the system still has, and what came after upTo stay, and ids
// are never made twice.
func TestWorldForgetsEndedOwners(t *testing.T) {
	w := world(t, Options{})
	c := clientsFor(w, "w1")
	ctx := ctxT(t)
	ended := func(owner string) bool { return owner != "kept" }
	lifetime := func(owner string, terminate bool) VM {
		t.Helper()
		vm := val(c.cloud.CreateVM(ctx, CreateVMRequest{Owner: owner, Size: "s", Region: "r", ClientToken: "tok-" + owner})).must(t)
		val(c.billing.CreateCharge(ctx, ChargeRequest{Customer: "c", Owner: owner, Amount: 1, Event: "provision:" + owner, IdempotencyKey: "key-" + owner})).must(t)
		val(c.email.Send(ctx, EmailRequest{To: "t", Owner: owner, Event: "welcome:" + owner})).must(t)
		if terminate {
			val(c.cloud.TerminateVM(ctx, vm.ID)).must(t)
		}
		return vm
	}
	old := lifetime("gone", true)
	lifetime("running", false)
	lifetime("kept", true)
	upTo := w.Snapshot()
	later := val(c.billing.CreateCharge(ctx, ChargeRequest{Customer: "c", Owner: "gone", Amount: 2, Event: "resize:gone", IdempotencyKey: "key2-gone"})).must(t)
	w.Forget(upTo, ended)

	s := w.Snapshot()
	owners := func(n int, owner func(int) string) map[string]int {
		m := map[string]int{}
		for i := range n {
			m[owner(i)]++
		}
		return m
	}
	if got := owners(len(s.VMs), func(i int) string { return s.VMs[i].Owner }); got["gone"] != 0 || got["running"] != 1 || got["kept"] != 1 {
		t.Errorf("VMs by owner after Forget: %v, want gone's dropped, running's and kept's kept", got)
	}
	if got := owners(len(s.Emails), func(i int) string { return s.Emails[i].Owner }); got["gone"] != 0 || got["running"] != 1 || got["kept"] != 1 {
		t.Errorf("emails by owner after Forget: %v", got)
	}
	if len(s.Charges) != 3 || !slices.ContainsFunc(s.Charges, func(ch Charge) bool { return ch.ID == later.ID }) {
		t.Errorf("charges after Forget: %+v, want running's, kept's and gone's made after upTo", s.Charges)
	}
	if _, err := c.cloud.DescribeVM(ctx, old.ID); !IsNotFound(err) {
		t.Errorf("DescribeVM of a forgotten VM: %v, want not found", err)
	}

	// The token and the key of the ended lifetime are free again: a new
	// VM and a new charge, with ids never made before.
	again := lifetime("gone", false)
	s = w.Snapshot()
	ids := map[string]bool{}
	for _, vm := range append(upTo.VMs, s.VMs...) {
		ids[vm.ID] = true
	}
	if again.ID == old.ID || len(ids) != 4 {
		t.Errorf("VM ids %v after a forgotten one, want 4 distinct (the new one %s)", ids, again.ID)
	}
	chIDs := map[string]bool{}
	for _, ch := range append(upTo.Charges, s.Charges...) {
		chIDs[ch.ID] = true
	}
	if len(s.Charges) != 4 || len(chIDs) != 5 {
		t.Errorf("charges %+v: want the charge key forgotten (a new charge) and 5 distinct ids, got %d", s.Charges, len(chIDs))
	}
	// kept's key was not forgotten: the same request replays.
	r := val(c.billing.CreateCharge(ctx, ChargeRequest{Customer: "c", Owner: "kept", Amount: 1, Event: "provision:kept", IdempotencyKey: "key-kept"})).must(t)
	if s2 := w.Snapshot(); len(s2.Charges) != 4 || !slices.ContainsFunc(s2.Charges, func(ch Charge) bool { return ch.ID == r.ID }) {
		t.Errorf("charge of a kept owner's key: %+v, want a replay of the kept charge", r)
	}
}
