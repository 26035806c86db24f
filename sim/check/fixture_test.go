package check_test

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

var epoch = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// at is a moment n milliseconds into the run (fractions allowed).
func at(n float64) time.Time { return epoch.Add(time.Duration(n * float64(time.Millisecond))) }

// fx builds an Input by hand. Ops are renumbered in invoke order by input().
type fx struct {
	in  check.Input
	seq int64
}

func (f *fx) op(client string, req contract.Request, inv, comp float64, out history.Outcome, gen int64, haw bool) *history.Op {
	o := history.Op{Client: client, Request: req, Invoke: at(inv), Outcome: out}
	if comp > 0 {
		o.Complete = at(comp)
	}
	switch out {
	case history.OK:
		o.Response = contract.Response{Instance: req.Instance, Generation: gen, Size: req.Size, HasActiveWork: haw}
	case history.Fail:
		o.ErrKind, o.Error = history.ErrKindBusy, contract.ErrBusy.Error()
	case history.Info:
		o.ErrKind, o.Error = history.ErrKindUnknown, "context deadline exceeded"
	}
	f.in.History.Ops = append(f.in.History.Ops, o)
	return &f.in.History.Ops[len(f.in.History.Ops)-1]
}

func create(id, size string) contract.Request {
	return contract.Request{Op: contract.OpCreate, Instance: id, Size: size}
}
func resize(id, size string) contract.Request {
	return contract.Request{Op: contract.OpResize, Instance: id, Size: size}
}
func del(id string) contract.Request { return contract.Request{Op: contract.OpDelete, Instance: id} }
func get(id string) contract.Request { return contract.Request{Op: contract.OpGet, Instance: id} }

// iv adds a worker interval; end 0 leaves it open.
func (f *fx) iv(worker, item, key string, start, end float64, outcome string) {
	v := history.Interval{Seq: len(f.in.History.Intervals), Worker: worker, Item: item, Key: key, Start: at(start)}
	if end > 0 {
		v.End, v.Outcome = at(end), outcome
	}
	f.in.History.Intervals = append(f.in.History.Intervals, v)
}

// rec adds an answered (200), effectful ledger request.
func (f *fx) rec(caller, service, endpoint, key, owner string, start, end float64, mods ...func(*fakes.Record)) {
	f.seq++
	r := fakes.Record{Seq: f.seq, Service: service, Endpoint: endpoint, Caller: caller, Key: key, Owner: owner,
		Mutation: true, Status: 200, Effect: true, Start: at(start), End: at(end)}
	for _, m := range mods {
		m(&r)
	}
	f.in.Ledger.Requests = append(f.in.Ledger.Requests, r)
}

func event(e string) func(*fakes.Record) {
	return func(r *fakes.Record) {
		r.Params, r.Event = json.RawMessage(`{"owner":"x","event":"`+e+`"}`), e
	}
}
func replayed(r *fakes.Record) { r.Replayed, r.Effect = true, false }
func dropped(r *fakes.Record)  { r.Status, r.Error = 0, "connection dropped" }
func clientGone(r *fakes.Record) {
	r.Error = "client gone before the answer"
}
func ambiguous(r *fakes.Record) { r.Status, r.Fault = 500, "fail-after" }

func (f *fx) event(kind history.EventKind, worker string, t float64) *history.Event {
	f.in.History.Events = append(f.in.History.Events, history.Event{Seq: len(f.in.History.Events), Time: at(t), Kind: kind, Worker: worker})
	return &f.in.History.Events[len(f.in.History.Events)-1]
}

// rejected makes a record a request a deployed bug answered 422 before any
// effect.
func rejected(r *fakes.Record) {
	r.Status, r.Effect, r.Fault, r.Error = 422, false, "intransient", "deployed_bug: deployed bug b1"
}

// bug deploys bug b1 at from and fixes it at to (0: never).
func (f *fx) bug(from, to float64) {
	f.event(history.EventDeployBug, "", from).Detail = "b1"
	if to > 0 {
		f.event(history.EventDeployFix, "", to).Detail = "b1"
	}
}

// rejections adds n requests of w3.1 to cloud CreateVM for i3, rejected by a
// deployed bug, one a millisecond from start.
func (f *fx) rejections(n int, start float64) {
	for i := range n {
		f.rec("w3.1", "cloud", "CreateVM", "vm:i3:g1", "i3", start+float64(i), start+float64(i)+0.1, rejected)
	}
}

func (f *fx) instance(id string) *contract.Instance {
	for i := range f.in.State.Instances {
		if f.in.State.Instances[i].ID == id {
			return &f.in.State.Instances[i]
		}
	}
	return nil
}

func (f *fx) dropInstance(id string) {
	f.in.State.Instances = slices.DeleteFunc(f.in.State.Instances, func(i contract.Instance) bool { return i.ID == id })
}

func (f *fx) vm(id string) *fakes.VM {
	for i := range f.in.Ledger.VMs {
		if f.in.Ledger.VMs[i].ID == id {
			return &f.in.Ledger.VMs[i]
		}
	}
	return nil
}

// input renumbers ops in invoke order, as the recorder does.
func (f *fx) input() check.Input {
	in := f.in
	in.History.Ops = slices.Clone(in.History.Ops)
	slices.SortStableFunc(in.History.Ops, func(a, b history.Op) int { return a.Invoke.Compare(b.Invoke) })
	for i := range in.History.Ops {
		in.History.Ops[i].Index = i
	}
	return in
}

func ready(id, size string, gen int64, vmid string) contract.Instance {
	return contract.Instance{ID: id, Customer: id, Generation: gen, DesiredSize: size, State: check.ReadyState,
		VMID: vmid, ObservedSize: size, ObservedGen: gen}
}

// base is a correct, converged run:
//
//	op 0 create i1 small (gen 1)   w1.1 item 1 [3,10]: CreateVM, Apply, charge; email after commit
//	op 1 resize i1 medium (gen 2)  w2.1 item 2 [14,20]: ResizeVM, Apply, charge
//	op 2 resize i1 large: busy
//	op 3 get i1: gen 2, no active work
//	op 4 create i2 small (gen 1)   w1.1 item 3 [32,40]: CreateVM, Apply, charge
//	op 5 delete i2 (gen 2)         w2.1 item 4 [43,50]: TerminateVM, kube Delete; row removed
func base() *fx {
	f := &fx{}
	f.in.Healed = true
	f.in.Ledger.AtMostOnce = []string{"email"}
	f.op("c1", create("i1", "small"), 1, 2, history.OK, 1, true)
	f.op("c1", resize("i1", "medium"), 12, 13, history.OK, 2, true)
	f.op("c2", resize("i1", "large"), 15.5, 15.8, history.Fail, 0, false)
	op := f.op("c1", get("i1"), 21, 22, history.OK, 2, false)
	op.Response.Size = "medium"
	f.op("c1", create("i2", "small"), 30, 31, history.OK, 1, true)
	f.op("c1", del("i2"), 41, 42, history.OK, 2, true)

	f.iv("w1.1", "1", "i1", 3, 10, "done")
	f.iv("w2.1", "2", "i1", 14, 20, "done")
	f.iv("w1.1", "3", "i2", 32, 40, "done")
	f.iv("w2.1", "4", "i2", 43, 50, "done")

	f.rec("w1.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 4, 5)
	f.rec("w1.1", "kube", "Apply", "", "i1", 6, 7)
	f.rec("w1.1", "billing", "CreateCharge", "charge:i1:g1", "i1", 8, 9, event("provision:i1:g1"))
	f.rec("w1.1", "email", "Send", "", "i1", 11, 11.5, event("welcome:i1"))
	f.rec("w2.1", "cloud", "ResizeVM", "", "i1", 15, 16)
	f.rec("w2.1", "kube", "Apply", "", "i1", 17, 18)
	f.rec("w1.1", "cloud", "CreateVM", "vm:i2:g1", "i2", 33, 34)
	f.rec("w1.1", "kube", "Apply", "", "i2", 35, 36)
	f.rec("w1.1", "billing", "CreateCharge", "charge:i2:g1", "i2", 37, 38, event("provision:i2:g1"))
	f.rec("w2.1", "cloud", "TerminateVM", "", "i2", 44, 45)
	f.rec("w2.1", "kube", "Delete", "", "i2", 46, 47)
	f.rec("w2.1", "billing", "CreateCharge", "charge:i1:g2", "i1", 18.5, 19, event("resize:i1:g2"))

	f.in.Ledger.VMs = []fakes.VM{
		{ID: "vm-1", Owner: "i1", Size: "medium", ClientToken: "vm:i1:g1", State: "running", CreatedAt: at(4.5)},
		{ID: "vm-2", Owner: "i2", Size: "small", ClientToken: "vm:i2:g1", State: "terminated", CreatedAt: at(33.5), TerminatedAt: at(44.5)},
	}
	f.in.Ledger.Deployments = []fakes.Deployment{{Name: "kvx-i1", Owner: "i1", Size: "medium", Replicas: 1}}
	f.in.Ledger.Charges = []fakes.Charge{
		{ID: "ch_1", Customer: "i1", Owner: "i1", Amount: 100, Event: "provision:i1:g1", CreatedAt: at(8.5)},
		{ID: "ch_2", Customer: "i2", Owner: "i2", Amount: 100, Event: "provision:i2:g1", CreatedAt: at(37.5)},
		{ID: "ch_3", Customer: "i1", Owner: "i1", Amount: 200, Event: "resize:i1:g2", CreatedAt: at(18.7)},
	}
	f.in.Ledger.Emails = []fakes.Email{{ID: "em_1", To: "i1@example.com", Owner: "i1", Event: "welcome:i1", SentAt: at(11.2)}}
	f.in.State.Instances = []contract.Instance{ready("i1", "medium", 2, "vm-1")}
	f.in.History.Taken = at(100)
	return f
}

// rules lists a checker's violations as "invariant/rule" (sorted, unique).
func rules(vs []check.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, string(v.Invariant)+"/"+v.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func lines(vs []check.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return out
}

// stepClock advances by one millisecond on every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}
