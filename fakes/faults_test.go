package fakes

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// lastEnded reports whether the last request arrived and was answered.
func lastEnded(s Server) bool {
	rs := s.Snapshot().Requests
	return len(rs) > 0 && !rs[len(rs)-1].End.IsZero()
}

// waitFor polls cond (not a timing assertion: it only waits for a state).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFaultModesToLedger(t *testing.T) {
	req := CreateVMRequest{Owner: "i1", Size: "small", Region: "r", ClientToken: "t1"}
	type want struct {
		status    int // recorded
		effect    bool
		fault     string
		transient bool
		ambiguous bool
		intrans   bool
		transport bool // a *TransportError rather than an *Error
		timeout   bool
		vms       int
	}
	for _, tc := range []struct {
		name  string
		fault Fault
		want  want
	}{
		{"fail-before 503", Fault{Mode: ModeFailBefore},
			want{status: 503, fault: "fail-before", transient: true, ambiguous: true}},
		{"fail-before 429", Fault{Mode: ModeFailBefore, Status: 429},
			want{status: 429, fault: "fail-before", transient: true}},
		{"fail-before drop", Fault{Mode: ModeFailBefore, Drop: true},
			want{status: 0, fault: "fail-before", transient: true, ambiguous: true, transport: true}},
		{"fail-before hang (timeout)", Fault{Mode: ModeFailBefore, Hang: true},
			want{status: 0, fault: "fail-before", transient: true, ambiguous: true, transport: true, timeout: true}},
		{"fail-after 500", Fault{Mode: ModeFailAfter},
			want{status: 500, effect: true, fault: "fail-after", transient: true, ambiguous: true, vms: 1}},
		{"fail-after 502", Fault{Mode: ModeFailAfter, Status: 502},
			want{status: 502, effect: true, fault: "fail-after", transient: true, ambiguous: true, vms: 1}},
		{"fail-after drop", Fault{Mode: ModeFailAfter, Drop: true},
			want{status: 0, effect: true, fault: "fail-after", transient: true, ambiguous: true, transport: true, vms: 1}},
		{"fail-after hang (timeout)", Fault{Mode: ModeFailAfter, Hang: true},
			want{status: 0, effect: true, fault: "fail-after", transient: true, ambiguous: true, transport: true, timeout: true, vms: 1}},
		{"intransient", Fault{Mode: ModeIntransient},
			want{status: 422, fault: "intransient", intrans: true}},
		{"intransient 400", Fault{Mode: ModeIntransient, Status: 400, Code: "bad_size"},
			want{status: 400, fault: "intransient", intrans: true}},
		{"down", Fault{Mode: ModeDown},
			want{status: 503, fault: "down", transient: true, ambiguous: true}},
		{"down drop", Fault{Mode: ModeDown, Drop: true},
			want{status: 0, fault: "down", transient: true, ambiguous: true, transport: true}},
		{"latency", Fault{Mode: ModeLatency, Latency: 20 * time.Millisecond},
			want{status: 200, effect: true, fault: "latency", vms: 1}},
		{"latency then fail-after", Fault{Mode: ModeLatency, Latency: time.Millisecond},
			want{status: 500, effect: true, fault: "latency+fail-after", transient: true, ambiguous: true, vms: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := world(t, Options{Clock: NewOffsetClock()})
			plan := Plan{Faults: []Fault{tc.fault}}
			if tc.want.fault == "latency+fail-after" {
				plan.Faults = append(plan.Faults, Fault{Mode: ModeFailAfter})
			}
			if err := w.SetFaults(plan); err != nil {
				t.Fatal(err)
			}
			o := ClientOptions{Caller: "w1", Timeout: 5 * time.Second}
			if tc.want.timeout {
				o.Timeout = 200 * time.Millisecond
			}
			c := NewCloudClient(w.Cloud().URL(), o)
			_, err := c.CreateVM(ctxT(t), req)
			if tc.want.status == 200 {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					t.Fatal("want an error")
				}
				if IsTransient(err) != tc.want.transient || IsAmbiguous(err) != tc.want.ambiguous ||
					IsIntransient(err) != tc.want.intrans {
					t.Fatalf("%v: transient=%v ambiguous=%v intransient=%v", err, IsTransient(err), IsAmbiguous(err), IsIntransient(err))
				}
				var te *TransportError
				if errors.As(err, &te) != tc.want.transport {
					t.Fatalf("transport error? %v", err)
				}
				if te != nil && te.Timeout != tc.want.timeout {
					t.Fatalf("timeout? %+v", te)
				}
			}
			// A hung request is recorded once the server noticed the client left.
			waitFor(t, "the request to end", func() bool { return lastEnded(w.Cloud()) })
			r := lastReq(t, w.Cloud())
			s := w.Cloud().Snapshot()
			if r.Status != tc.want.status || r.Effect != tc.want.effect || r.Fault != tc.want.fault || len(s.VMs) != tc.want.vms {
				t.Fatalf("record %+v, %d VMs", r, len(s.VMs))
			}
			if tc.fault.Mode == ModeLatency && r.End.Sub(r.Start) < tc.fault.Latency {
				t.Fatalf("latency not applied: %v", r.End.Sub(r.Start))
			}
		})
	}
}

func TestFaultIntransientUntilCleared(t *testing.T) {
	w := world(t, Options{})
	c := clientsFor(w, "w1")
	if err := w.AddFault(Fault{ID: "bug-1", Service: "kube", Endpoint: "Apply", Mode: ModeIntransient}); err != nil {
		t.Fatal(err)
	}
	d := Deployment{Name: "d1", Owner: "i1", Size: "small", Replicas: 1}
	for range 3 {
		_, err := c.kube.Apply(ctxT(t), d)
		wantErr(t, err, "intransient", IsIntransient)
		if e := err.(*Error); e.Status != 422 || e.Code != CodeDeployedBug {
			t.Fatalf("got %+v", e)
		}
	}
	// Other endpoints and services are untouched.
	val(c.kube.Create(ctxT(t), Deployment{Name: "d2", Owner: "i2"})).must(t)
	val(c.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r"})).must(t)
	if n := w.ClearFault("bug-1"); n != 1 {
		t.Fatalf("cleared %d", n)
	}
	val(c.kube.Apply(ctxT(t), d)).must(t)
	s := w.Snapshot()
	var bug int
	for _, r := range s.Requests {
		if r.Fault == "intransient" {
			bug++
			if r.Effect || r.Status != 422 {
				t.Fatalf("intransient record: %+v", r)
			}
		}
	}
	if bug != 3 || len(s.LiveDeployments("i1")) != 1 {
		t.Fatalf("%d intransient records, deployments %+v", bug, s.Deployments)
	}
}

func TestFaultMatchingAndTimes(t *testing.T) {
	w := world(t, Options{})
	a, b := clientsFor(w, "w1"), clientsFor(w, "w2")
	plan := Plan{Faults: []Fault{
		{ID: "owner", Service: "cloud", Owner: "i2", Mode: ModeFailBefore, Times: 2},
		{ID: "caller", Service: "billing", Caller: "w2", Mode: ModeFailBefore, Status: 429},
		{ID: "endpoint", Service: "cloud", Endpoint: "TerminateVM", Mode: ModeDown},
	}}
	if err := w.SetFaults(plan); err != nil {
		t.Fatal(err)
	}
	val(a.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r"})).must(t)
	for range 2 {
		_, err := a.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i2", Size: "s", Region: "r"})
		wantErr(t, err, "owner fault", IsTransient)
	}
	if got := w.Faults().Faults; len(got) != 2 || got[0].ID != "endpoint" || got[1].ID != "caller" {
		t.Fatalf("after Times ran out: %+v", got)
	}
	vm := val(a.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i2", Size: "s", Region: "r"})).must(t)

	ch := ChargeRequest{Customer: "c", Owner: "i1", Amount: 1, Event: "e"}
	val(a.billing.CreateCharge(ctxT(t), ch)).must(t)
	_, err := b.billing.CreateCharge(ctxT(t), ch)
	wantErr(t, err, "caller fault", IsTransient)
	if e := err.(*Error); e.Status != 429 || e.Code != CodeThrottled {
		t.Fatalf("got %+v", e)
	}

	_, err = a.cloud.TerminateVM(ctxT(t), vm.ID)
	wantErr(t, err, "endpoint fault", IsTransient)
	if r := lastReq(t, w.Cloud()); r.Owner != "i2" || r.Fault != "down" || r.Effect {
		t.Fatalf("terminate record: %+v", r)
	}
	val(a.cloud.DescribeVM(ctxT(t), vm.ID)).must(t)
	w.ClearFaults()
	if p := w.Faults(); len(p.Faults) != 0 {
		t.Fatalf("not cleared: %+v", p)
	}
	val(a.cloud.TerminateVM(ctxT(t), vm.ID)).must(t)
	val(b.billing.CreateCharge(ctxT(t), ch)).must(t)
}

// fired runs n charges against a fresh world with plan and returns which
// of them a fault fired on.
func fired(t *testing.T, plan Plan, n int) []bool {
	w := world(t, Options{})
	if err := w.SetFaults(plan); err != nil {
		t.Fatal(err)
	}
	c := clientsFor(w, "w1").email
	for range n {
		c.Send(ctxT(t), EmailRequest{To: "a@b", Owner: "i1", Event: "e"})
	}
	var out []bool
	for _, r := range w.Email().Snapshot().Requests {
		out = append(out, r.Fault != "")
	}
	return out
}

func TestFaultProbabilityIsSeeded(t *testing.T) {
	plan := Plan{Seed: 42, Faults: []Fault{{Mode: ModeFailBefore, Probability: 0.3}}}
	a, b := fired(t, plan, 100), fired(t, plan, 100)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different draws:\n%v\n%v", a, b)
	}
	n := 0
	for _, f := range a {
		if f {
			n++
		}
	}
	if n == 0 || n == 100 {
		t.Fatalf("probability 0.3 fired %d/100 times", n)
	}
	plan.Seed = 43
	if c := fired(t, plan, 100); reflect.DeepEqual(a, c) {
		t.Fatalf("different seeds, same draws")
	}
}

func TestPlanJSONRoundTrip(t *testing.T) {
	p := Plan{Seed: 7, Faults: []Fault{
		{ID: "a", Service: "cloud", Endpoint: "CreateVM", Owner: "i1", Caller: "w1.2", Mode: ModeFailAfter, Drop: true, Times: 3},
		{Mode: ModeLatency, Latency: 250 * time.Millisecond, Probability: 0.5},
		{Service: "billing", Mode: ModeFailBefore, Status: 429},
		{Mode: ModeFailBefore, Hang: true, Latency: time.Second},
		{ID: "bug", Mode: ModeIntransient, Code: "deployed_bug", Message: "size rejected"},
		{Mode: ModeDown},
	}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency":"250ms"`) {
		t.Fatalf("latency not a duration string: %s", b)
	}
	var q Plan
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip:\n%+v\n%+v", p, q)
	}
	var f Fault
	if err := json.Unmarshal([]byte(`{"mode":"latency","latency":1000000}`), &f); err != nil || f.Latency != time.Millisecond {
		t.Fatalf("nanoseconds: %v %v", f.Latency, err)
	}
	if err := json.Unmarshal([]byte(`{"mode":"latency","latency":"soon"}`), &f); err == nil {
		t.Fatal("bad duration accepted")
	}
	// A World's merged plan restores itself.
	w := world(t, Options{})
	if err := w.SetFaults(p); err != nil {
		t.Fatal(err)
	}
	got := w.Faults()
	w.ClearFaults()
	if err := w.SetFaults(got); err != nil {
		t.Fatal(err)
	}
	if again := w.Faults(); !reflect.DeepEqual(got, again) {
		t.Fatalf("restore:\n%+v\n%+v", got, again)
	}
	if n := len(got.Faults); n != 1+4+1+4+4+4 {
		t.Fatalf("merged plan has %d faults", n)
	}
}

func TestFaultValidate(t *testing.T) {
	for _, f := range []Fault{
		{Mode: "explode"},
		{Mode: ModeFailBefore, Service: "dns"},
		{Mode: ModeFailBefore, Status: 200},
		{Mode: ModeLatency},
		{Mode: ModeLatency, Latency: -1},
		{Mode: ModeFailBefore, Times: -1},
		{Mode: ModeFailBefore, Probability: 1.5},
		{Mode: ModeFailAfter, Drop: true, Hang: true},
		{Mode: ModeIntransient, Drop: true},
		{Mode: ModeDown, Hang: true},
	} {
		if err := f.Validate(); !errors.Is(err, ErrInvalidFault) {
			t.Errorf("%+v: got %v", f, err)
		}
	}
	w := world(t, Options{})
	if err := w.SetFaults(Plan{Faults: []Fault{{Mode: "x"}}}); err == nil {
		t.Fatal("invalid plan accepted")
	}
	if err := w.Cloud().AddFault(Fault{Mode: "x"}); err == nil {
		t.Fatal("invalid fault accepted")
	}
	if _, err := Start(Options{Faults: Plan{Faults: []Fault{{Mode: "x"}}}}); err == nil {
		t.Fatal("invalid initial plan accepted")
	}
}

func TestLatencyOutlivesTheClient(t *testing.T) {
	// The client gives up during the latency; the server still acts: the
	// classic ambiguous timeout.
	w := world(t, Options{})
	if err := w.Cloud().AddFault(Fault{Mode: ModeLatency, Latency: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c := NewCloudClient(w.Cloud().URL(), ClientOptions{Timeout: 150 * time.Millisecond})
	_, err := c.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r", ClientToken: "t"})
	wantErr(t, err, "timeout", IsAmbiguous)
	if te := err.(*TransportError); !te.Timeout || !IsTransient(err) {
		t.Fatalf("got %+v", te)
	}
	waitFor(t, "the request to end", func() bool { return lastEnded(w.Cloud()) })
	r := lastReq(t, w.Cloud())
	if !r.Effect || !strings.Contains(r.Error, "client gone") || len(w.Cloud().Snapshot().LiveVMs("i1")) != 1 {
		t.Fatalf("record: %+v", r)
	}
}

func TestCloseDropsHeldRequests(t *testing.T) {
	for _, f := range []Fault{
		{Mode: ModeLatency, Latency: time.Hour},
		{Mode: ModeFailBefore, Hang: true},
		{Mode: ModeFailAfter, Hang: true},
	} {
		t.Run(string(f.Mode), func(t *testing.T) {
			s, err := NewEmailServer(EmailOptions{ServerOptions: ServerOptions{Faults: Plan{Faults: []Fault{f}}}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			c := NewEmailClient(s.URL(), ClientOptions{Timeout: time.Minute})
			done := make(chan error, 1)
			go func() {
				_, err := c.Send(ctxT(t), EmailRequest{To: "a@b", Owner: "i1", Event: "e"})
				done <- err
			}()
			waitFor(t, "the request to arrive", func() bool { return len(s.Snapshot().Requests) == 1 })
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			err = <-done
			wantErr(t, err, "dropped", IsAmbiguous)
			r := s.Snapshot().Requests[0]
			if r.Status != 0 || r.End.IsZero() || r.Effect != (f.Mode == ModeFailAfter) {
				t.Fatalf("record: %+v", r)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}
