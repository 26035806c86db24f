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

// Forget keeps an owner's latest ended lifetime and drops the ones before
// it: the terminated VM and its client token, the charges and their
// idempotency records, the emails. A live owner's state, an owner the
// system still has, and what came after upTo stay, and ids are never made
// twice.
func TestWorldForgetsEndedLifetimes(t *testing.T) {
	w := world(t, Options{})
	c := clientsFor(w, "w1")
	ctx := ctxT(t)
	ended := func(owner string) bool { return owner != "kept" }
	vmReq := func(owner, gen string) CreateVMRequest {
		return CreateVMRequest{Owner: owner, Size: "s", Region: "r", ClientToken: "tok-" + owner + gen}
	}
	chReq := func(owner, gen string) ChargeRequest {
		return ChargeRequest{Customer: "c", Owner: owner, Amount: 1, Event: "provision:" + owner + gen, IdempotencyKey: "key-" + owner + gen}
	}
	lifetime := func(owner, gen string, terminate bool) VM {
		t.Helper()
		vm := val(c.cloud.CreateVM(ctx, vmReq(owner, gen))).must(t)
		val(c.billing.CreateCharge(ctx, chReq(owner, gen))).must(t)
		val(c.email.Send(ctx, EmailRequest{To: "t", Owner: owner, Event: "welcome:" + owner + gen})).must(t)
		if terminate {
			val(c.cloud.TerminateVM(ctx, vm.ID)).must(t)
		}
		return vm
	}
	want := func(step, owner string, vms, charges, emails int) {
		t.Helper()
		s := w.Snapshot()
		var v, ch, m int
		for _, x := range s.VMs {
			v += b2i(x.Owner == owner)
		}
		for _, x := range s.Charges {
			ch += b2i(x.Owner == owner)
		}
		for _, x := range s.Emails {
			m += b2i(x.Owner == owner)
		}
		if v != vms || ch != charges || m != emails {
			t.Errorf("%s: %s has %d VMs, %d charges, %d emails; want %d, %d, %d", step, owner, v, ch, m, vms, charges, emails)
		}
	}

	first := lifetime("gone", "g1", true)
	lifetime("running", "g1", false)
	lifetime("kept", "g1", true)
	w.Forget(w.Snapshot(), ended)
	want("one ended lifetime", "gone", 1, 1, 1)
	// The latest ended lifetime stays whole: its token replays, as a
	// cloud's does.
	if vm := val(c.cloud.CreateVM(ctx, vmReq("gone", "g1"))).must(t); vm.ID != first.ID {
		t.Errorf("the latest ended lifetime's token made VM %s, want a replay of %s", vm.ID, first.ID)
	}

	lifetime("gone", "g2", true)
	upTo := w.Snapshot()
	later := val(c.billing.CreateCharge(ctx, ChargeRequest{Customer: "c", Owner: "gone", Amount: 2, Event: "resize:goneg2", IdempotencyKey: "key-later"})).must(t)
	w.Forget(upTo, ended)
	want("a second ended lifetime", "gone", 1, 2, 1)
	if _, err := c.cloud.DescribeVM(ctx, first.ID); !IsNotFound(err) {
		t.Errorf("DescribeVM of the first lifetime's VM: %v, want not found", err)
	}
	if !slices.ContainsFunc(w.Snapshot().Charges, func(ch Charge) bool { return ch.ID == later.ID }) {
		t.Error("the charge made after upTo is gone")
	}
	for _, o := range []string{"running", "kept"} {
		want("a second ended lifetime", o, 1, 1, 1)
	}

	// The first lifetime's token and key are free again: a new VM and a
	// new charge, with ids never made before; kept's key still replays.
	vm := val(c.cloud.CreateVM(ctx, vmReq("gone", "g1"))).must(t)
	ch := val(c.billing.CreateCharge(ctx, chReq("gone", "g1"))).must(t)
	s := w.Snapshot()
	for _, x := range append(upTo.VMs, s.VMs...) {
		if x.ID == vm.ID && x.CreatedAt != vm.CreatedAt {
			t.Errorf("VM id %s made twice", vm.ID)
		}
	}
	for _, x := range append(upTo.Charges, s.Charges...) {
		if x.ID == ch.ID && x.CreatedAt != ch.CreatedAt {
			t.Errorf("charge id %s made twice", ch.ID)
		}
	}
	want("after the freed token and key", "gone", 2, 3, 1)
	if r := val(c.billing.CreateCharge(ctx, chReq("kept", "g1"))).must(t); len(w.Snapshot().Charges) != len(s.Charges) {
		t.Errorf("kept's key made charge %s, want a replay", r.ID)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
