package check_test

import (
	"slices"
	"testing"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// twoWindows is base() checked valid at a quiescent point (100), then a
// second window: resize i1 to large (generation 3), done by w1.2 and
// charged, and i2 created again (generation 3) and provisioned. It returns
// the carry of the first window and the second window's own input (its
// history only, with the ledger and state as they are at its end), as
// sim.Env.Compact leaves them.
func twoWindows(t *testing.T) (carry check.Input, second *fx) {
	t.Helper()
	first := base().input()
	if r := check.Check(first); r.Verdict != check.Valid {
		t.Fatalf("first window: %s %v", r.Verdict, r.Violations)
	}
	carry = check.Compact(first)
	f := base()
	f.in.History = history.Snapshot{Taken: at(300)}
	f.in.Ledger.Requests = nil
	o := f.op("c1", resize("i1", "large"), 110, 111, history.OK, 3, true)
	o.Index = 6
	f.in.History.Intervals = []history.Interval{
		{Seq: 4, Worker: "w1.2", Item: "5", Key: "i1", Start: at(112), End: at(120), Outcome: "done"},
		{Seq: 5, Worker: "w2.2", Item: "6", Key: "i2", Start: at(132), End: at(140), Outcome: "done"},
	}
	o = f.op("c1", create("i2", "small"), 130, 131, history.OK, 3, true)
	o.Index = 7
	f.seq = 100
	f.rec("w1.2", "cloud", "ResizeVM", "", "i1", 113, 114)
	f.rec("w1.2", "kube", "Apply", "", "i1", 115, 116)
	f.rec("w1.2", "billing", "CreateCharge", "charge:i1:g3", "i1", 117, 118, event("resize:i1:g3"))
	f.rec("w2.2", "cloud", "CreateVM", "vm:i2:g3", "i2", 133, 134)
	f.rec("w2.2", "kube", "Apply", "", "i2", 135, 136)
	f.rec("w2.2", "billing", "CreateCharge", "charge:i2:g3", "i2", 137, 138, event("provision:i2:g3"))
	f.vm("vm-1").Size = "large"
	f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-3", Owner: "i2", Size: "small", ClientToken: "vm:i2:g3", State: "running", CreatedAt: at(133.5)})
	f.in.Ledger.Deployments = []fakes.Deployment{{Name: "kvx-i1", Owner: "i1", Size: "large", Replicas: 1}, {Name: "kvx-i2", Owner: "i2", Size: "small", Replicas: 1}}
	f.in.Ledger.Charges = append(f.in.Ledger.Charges,
		fakes.Charge{ID: "ch_4", Customer: "i1", Owner: "i1", Amount: 300, Event: "resize:i1:g3", CreatedAt: at(117.5)},
		fakes.Charge{ID: "ch_5", Customer: "i2", Owner: "i2", Amount: 100, Event: "provision:i2:g3", CreatedAt: at(137.5)})
	f.in.State.Instances = []contract.Instance{ready("i1", "large", 3, "vm-1"), ready("i2", "small", 3, "vm-3")}
	return carry, f
}

func TestCompactKeepsLastLifetimes(t *testing.T) {
	carry, _ := twoWindows(t)
	var kept []int
	for _, o := range carry.History.Ops {
		kept = append(kept, o.Index)
	}
	// i1: its create, the resize and the get (the busy resize failed);
	// i2: its create and the delete that ended that lifetime.
	if want := []int{0, 1, 3, 4, 5}; !slices.Equal(kept, want) {
		t.Errorf("carried ops %v, want %v", kept, want)
	}
	if carry.Compacted == nil || !carry.Compacted.Since.Equal(at(100)) || !carry.Compacted.Intervals {
		t.Errorf("compaction %+v, want since %v with intervals", carry.Compacted, at(100))
	}
	if len(carry.History.Intervals)+len(carry.History.Events)+len(carry.Ledger.Requests) != 0 {
		t.Errorf("carry keeps intervals, events or requests: %+v", carry.History)
	}
}

func TestCompactedRunIsJudgedLikeTheWhole(t *testing.T) {
	cases := []struct {
		name string
		mut  func(f *fx)
		want []string // rules, on the compacted and on the whole run alike
	}{
		{"correct second window", func(f *fx) {}, nil},
		{"second window with no interval yet", func(f *fx) {
			// A get only: no worker ran since the checkpoint, and the
			// changes accepted before it are not races for want of the
			// forgotten intervals.
			f.in.History.Ops = f.in.History.Ops[:0]
			f.in.History.Intervals = nil
			o := f.op("c1", get("i1"), 110, 111, history.OK, 2, false)
			o.Index = 6
			f.in.Ledger = base().in.Ledger
			f.in.Ledger.Requests = nil
			f.in.State.Instances = []contract.Instance{ready("i1", "medium", 2, "vm-1")}
		}, nil},
		{"a zombie charges a first-window event again", func(f *fx) {
			f.rec("w1.1", "billing", "CreateCharge", "charge:i1:g1:retry", "i1", 150, 151, event("provision:i1:g1"))
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_6", Customer: "i1", Owner: "i1", Amount: 100, Event: "provision:i1:g1", CreatedAt: at(150.5)})
		}, []string{"double-billing/duplicate-charge"}},
		{"a first-window instance vanishes with no delete", func(f *fx) {
			f.dropInstance("i1")
			f.in.Ledger.Deployments = f.in.Ledger.Deployments[1:]
			f.vm("vm-1").State = "terminated"
		}, []string{"lost-work/change-not-applied", "lost-work/create-lost"}},
		{"a first-window resize rolled back", func(f *fx) {
			f.in.History.Ops = f.in.History.Ops[1:] // no second-window resize of i1
			f.in.History.Intervals = f.in.History.Intervals[1:]
			f.in.Ledger.Charges = slices.DeleteFunc(f.in.Ledger.Charges, func(c fakes.Charge) bool { return c.ID == "ch_4" })
			f.vm("vm-1").Size = "small"
			f.in.Ledger.Deployments[0].Size = "small"
			*f.instance("i1") = ready("i1", "small", 2, "vm-1")
			f.instance("i1").ObservedGen = 1
		}, []string{"convergence/not-converged", "lost-work/change-not-applied"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			carry, f := twoWindows(t)
			c.mut(f)
			second := f.in
			compacted := check.Check(second.Merge(carry))
			whole := second
			first := base().input()
			whole.History.Ops = append(slices.Clone(first.History.Ops), second.History.Ops...)
			whole.History.Intervals = append(slices.Clone(first.History.Intervals), second.History.Intervals...)
			whole.History.Events = first.History.Events
			whole.Ledger.Requests = append(slices.Clone(first.Ledger.Requests), second.Ledger.Requests...)
			w := check.Check(whole)
			if got := rules(compacted.Violations); !slices.Equal(got, c.want) {
				t.Errorf("compacted: rules %v, want %v\n%s", got, c.want, lines(compacted.Violations))
			}
			if got := rules(w.Violations); !slices.Equal(got, c.want) {
				t.Errorf("whole: rules %v, want %v\n%s", got, c.want, lines(w.Violations))
			}
		})
	}
}
