package reports

import (
	"slices"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// Evidence is what a check read — history, ledgers, the system's state —
// as snake_case JSON throughout: the contract's own types carry no JSON
// names, so their rows are copied into Op, Instance and WorkItem here.
// EvidenceOf holds all of it; SliceOf only what one violation names.
type Evidence struct {
	// Taken is when the history was snapshotted (the end of the run).
	Taken time.Time `json:"taken"`
	// Healed says the liveness phase ran before the check.
	Healed bool `json:"healed"`

	Ops       []Op               `json:"ops"`       // user and operator requests
	Intervals []history.Interval `json:"intervals"` // worker incarnations inside work items
	// Events are the harness's events: crashes, lease losses, faults on
	// and off, bugs deployed and fixed. A slice keeps only the crashes and
	// lease losses of the worker incarnations it holds.
	Events []history.Event `json:"events"`

	// Requests are the ledger records of provider requests, each with its
	// idempotency key (key), caller, effect and fault.
	Requests    []fakes.Record     `json:"requests"`
	VMs         []fakes.VM         `json:"vms"`
	Deployments []fakes.Deployment `json:"deployments"`
	Charges     []fakes.Charge     `json:"charges"`
	Emails      []fakes.Email      `json:"emails"`
	AtMostOnce  []string           `json:"at_most_once,omitempty"`

	Instances []Instance `json:"instances"` // the system's instance rows
	Work      []WorkItem `json:"work"`      // work not done, parked included

	// Observed are the violations the scenario saw itself while it ran.
	Observed []check.Violation `json:"observed,omitempty"`
}

// Op is a history op (history.Op) with snake_case names.
type Op struct {
	Index    int       `json:"index"`
	Client   string    `json:"client"`
	Op       string    `json:"op"`
	Instance string    `json:"instance,omitempty"`
	Customer string    `json:"customer,omitempty"`
	Size     string    `json:"size,omitempty"`
	Invoke   time.Time `json:"invoke"`
	Complete time.Time `json:"complete,omitzero"`
	// Outcome is "ok", "fail", "info" (unknown) or "pending".
	Outcome  string      `json:"outcome"`
	Response *OpResponse `json:"response,omitempty"` // for ok and fail
	ErrKind  string      `json:"err_kind,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// OpResponse is what Serve answered.
type OpResponse struct {
	Generation    int64  `json:"generation"`
	Size          string `json:"size,omitempty"`
	State         string `json:"state,omitempty"`
	HasActiveWork bool   `json:"has_active_work"`
	Resumed       int    `json:"resumed,omitempty"`
}

// Instance is a contract.Instance row with snake_case names.
type Instance struct {
	ID            string `json:"id"`
	Customer      string `json:"customer"`
	Generation    int64  `json:"generation"`
	DesiredSize   string `json:"desired_size"`
	Deleting      bool   `json:"deleting"`
	State         string `json:"state"`
	HasActiveWork bool   `json:"has_active_work"`
	VMID          string `json:"vm_id"`
	ObservedSize  string `json:"observed_size"`
	ObservedGen   int64  `json:"observed_generation"`
}

// WorkItem is a contract.WorkItem row with snake_case names.
type WorkItem struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Key      string `json:"key"`
	Attempts int    `json:"attempts"`
	Parked   bool   `json:"parked"`
	Reason   string `json:"reason,omitempty"`
}

// EvidenceOf copies everything a check read.
func EvidenceOf(in check.Input) Evidence {
	return evidence(in, func(history.Op) bool { return true }, func(history.Interval) bool { return true },
		func(fakes.Record) bool { return true }, func(owner, token string) bool { return true }, nil)
}

// SliceOf is the evidence one violation names, and nothing else: the ops
// it lists (v.Ops); the work intervals on its instance (v.Instance); the
// ledger records, VMs, deployments, charges and emails of that instance or
// carrying one of its idempotency keys (v.Keys); its instance row and work
// rows; and the crashes and lease losses of the worker incarnations those
// intervals and records belong to, since they explain why an interval ended.
func SliceOf(in check.Input, v check.Violation) Evidence {
	keys := map[string]bool{}
	for _, k := range v.Keys {
		keys[k] = true
	}
	mine := func(owner, key string) bool {
		return (v.Instance != "" && owner == v.Instance) || (key != "" && keys[key])
	}
	workers := map[string]bool{}
	ev := evidence(in,
		func(o history.Op) bool { return slices.Contains(v.Ops, o.Index) },
		func(iv history.Interval) bool {
			ok := v.Instance != "" && iv.Key == v.Instance
			if ok {
				workers[iv.Worker] = true
			}
			return ok
		},
		func(r fakes.Record) bool {
			ok := mine(r.Owner, r.Key)
			if ok {
				workers[r.Caller] = true
			}
			return ok
		},
		mine,
		workers)
	return ev
}

// evidence copies what the filters keep. Events are kept when workers is
// nil (everything), else only crashes and lease losses of those workers.
func evidence(in check.Input, op func(history.Op) bool, iv func(history.Interval) bool,
	rec func(fakes.Record) bool, owned func(owner, key string) bool, workers map[string]bool) Evidence {
	h, l, st := in.History, in.Ledger, in.State
	// Empty lists, not null: a reader can range over every list.
	e := Evidence{Taken: h.Taken, Healed: in.Healed, AtMostOnce: slices.Clone(l.AtMostOnce), Observed: slices.Clone(in.Observed),
		Ops: []Op{}, Intervals: []history.Interval{}, Events: []history.Event{}, Requests: []fakes.Record{}, VMs: []fakes.VM{},
		Deployments: []fakes.Deployment{}, Charges: []fakes.Charge{}, Emails: []fakes.Email{}, Instances: []Instance{}, Work: []WorkItem{}}
	for _, o := range h.Ops {
		if op(o) {
			e.Ops = append(e.Ops, OpOf(o))
		}
	}
	for _, i := range h.Intervals {
		if iv(i) {
			e.Intervals = append(e.Intervals, i)
		}
	}
	for _, r := range l.Requests {
		if rec(r) {
			e.Requests = append(e.Requests, r)
		}
	}
	for _, ev := range h.Events {
		switch {
		case workers == nil:
		case ev.Kind != history.EventCrash && ev.Kind != history.EventLeaseLost:
			continue
		case !workers[ev.Worker]:
			continue
		}
		e.Events = append(e.Events, ev)
	}
	for _, vm := range l.VMs {
		if owned(vm.Owner, vm.ClientToken) {
			e.VMs = append(e.VMs, vm)
		}
	}
	for _, d := range l.Deployments {
		if owned(d.Owner, "") {
			e.Deployments = append(e.Deployments, d)
		}
	}
	for _, c := range l.Charges {
		if owned(c.Owner, "") {
			e.Charges = append(e.Charges, c)
		}
	}
	for _, m := range l.Emails {
		if owned(m.Owner, "") {
			e.Emails = append(e.Emails, m)
		}
	}
	for _, i := range st.Instances {
		if owned(i.ID, "") {
			e.Instances = append(e.Instances, InstanceOf(i))
		}
	}
	for _, w := range st.Work {
		if owned(w.Key, "") {
			e.Work = append(e.Work, WorkItemOf(w))
		}
	}
	return e
}

// OpOf copies a history op.
func OpOf(o history.Op) Op {
	out := Op{
		Index: o.Index, Client: o.Client, Op: string(o.Request.Op), Instance: o.Request.Instance,
		Customer: o.Request.Customer, Size: o.Request.Size, Invoke: o.Invoke, Complete: o.Complete,
		Outcome: string(o.Outcome), ErrKind: o.ErrKind, Error: o.Error,
	}
	if o.Outcome == history.Pending {
		out.Outcome = "pending"
	}
	if o.Outcome == history.OK || o.Outcome == history.Fail {
		r := o.Response
		out.Response = &OpResponse{Generation: r.Generation, Size: r.Size, State: r.State, HasActiveWork: r.HasActiveWork, Resumed: r.Resumed}
	}
	return out
}

// InstanceOf copies an instance row.
func InstanceOf(i contract.Instance) Instance {
	return Instance{ID: i.ID, Customer: i.Customer, Generation: i.Generation, DesiredSize: i.DesiredSize, Deleting: i.Deleting,
		State: i.State, HasActiveWork: i.HasActiveWork, VMID: i.VMID, ObservedSize: i.ObservedSize, ObservedGen: i.ObservedGen}
}

// WorkItemOf copies a work row.
func WorkItemOf(w contract.WorkItem) WorkItem {
	return WorkItem{ID: w.ID, Kind: w.Kind, Key: w.Key, Attempts: w.Attempts, Parked: w.Parked, Reason: w.Reason}
}

// Slice is one violation's evidence file: the violation, the command that
// replays the example, what it cost, and its evidence slice.
type Slice struct {
	Violation Violation `json:"violation"` // with its blast radius
	Replay    string    `json:"replay,omitempty"`
	Evidence  Evidence  `json:"evidence"`
}
