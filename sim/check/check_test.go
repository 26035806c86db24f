package check_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// TestCorrectHistories: runs that are correct, some of them in tricky ways,
// must produce no violation at all.
func TestCorrectHistories(t *testing.T) {
	cases := []struct {
		name string
		mut  func(f *fx)
	}{
		{"base", func(f *fx) {}},
		{"replayed create: the user retries an unknown create, the worker replays CreateVM", func(f *fx) {
			// The first create timed out (Info), the client retried and the
			// system answered the identical request OK with the same generation.
			f.in.History.Ops[0].Outcome, f.in.History.Ops[0].Response = history.Info, contract.Response{}
			f.op("c1", create("i1", "small"), 2.2, 2.5, history.OK, 1, true)
			// The worker's first CreateVM answer was lost; its retry got the
			// same VM from the idempotency record.
			f.rec("w1.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 5.2, 5.4, replayed)
		}},
		{"crashed worker whose item another worker redid", func(f *fx) {
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = at(7.5), history.IntervalCrashed
			f.event(history.EventCrash, "w1.1", 7.5)
			// The charge request was in flight when the proxies were severed.
			f.in.Ledger.Requests[2].Start, f.in.Ledger.Requests[2].End = at(7.2), at(8)
			dropped(&f.in.Ledger.Requests[2])
			f.in.Ledger.Requests[2].Effect = false
			f.iv("w3.1", "1", "i1", 7.8, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 7.9, 8.1, replayed)
			f.rec("w3.1", "billing", "CreateCharge", "charge:i1:g1", "i1", 8.2, 9, event("provision:i1:g1"))
			f.in.Ledger.Charges[0].CreatedAt = at(8.5)
		}},
		{"ambiguous create that did happen", func(f *fx) {
			f.in.History.Ops[4].Outcome, f.in.History.Ops[4].Response = history.Info, contract.Response{}
		}},
		{"ambiguous create that did not happen", func(f *fx) {
			f.op("c3", create("i9", "large"), 60, 70, history.Info, 0, false)
		}},
		{"ambiguous delete that did happen", func(f *fx) {
			f.in.History.Ops[5].Outcome, f.in.History.Ops[5].Response = history.Info, contract.Response{}
		}},
		{"ambiguous delete that did not happen", func(f *fx) {
			f.op("c3", del("i1"), 60, 70, history.Info, 0, false)
		}},
		{"pending request at the end of the run", func(f *fx) {
			f.op("c3", resize("i1", "large"), 90, 0, history.Pending, 0, false)
		}},
		{"refunded duplicate charge", func(f *fx) {
			f.rec("w2.1", "billing", "CreateCharge", "charge:i1:g1:retry", "i1", 15.2, 15.4, event("provision:i1:g1"))
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i1",
				Event: "provision:i1:g1", Refunded: true, CreatedAt: at(15.3)})
		}},
		{"caller keeps calling providers after losing its lease", func(f *fx) {
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = at(6.5), history.IntervalLeaseLost
			f.event(history.EventLeaseLost, "w1.1", 6.5)
			f.in.History.Intervals[0].Reported, f.in.History.Intervals[0].ReportedOutcome = at(10), "error"
			// w3.1 claims the item once the session is gone and overlaps
			// w1.1's late charge request; idempotency settles it.
			f.iv("w3.1", "1", "i1", 7, 11, "done")
			f.rec("w3.1", "billing", "CreateCharge", "charge:i1:g1", "i1", 8.2, 9.2, replayed)
		}},
		{"provider call answered after the caller's lease was lost", func(f *fx) {
			// The database link was cut at 7.5; the provider link was not, so
			// the charge request in flight was answered at 9.
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = at(7.5), history.IntervalLeaseLost
			f.event(history.EventLeaseLost, "w1.1", 7.5)
			f.in.Ledger.Requests[2].Start = at(7.2)
			f.iv("w3.1", "1", "i1", 8, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 8.2, 8.6, replayed)
		}},
		{"a claim lost at its start inside another worker's takeover", func(f *fx) {
			// Seen in a false-alarm gate (network, seed 2): w2.1's session
			// was cut under item 1, w1.1 claimed the freed row on a session
			// being cut too, and its claim's answer came after w2.1 had
			// claimed again; its Begin, recorded late, is lost at its start.
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = at(6.5), history.IntervalLeaseLost
			f.event(history.EventLeaseLost, "w1.1", 6.5)
			f.iv("w3.1", "1", "i1", 7, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 7.5, 8.5, replayed)
			f.iv("w4.1", "1", "i1", 8, 0, "")
			last := &f.in.History.Intervals[len(f.in.History.Intervals)-1]
			last.End, last.Outcome, last.LostAtStart = at(8), history.IntervalLeaseLost, true
			last.Reported, last.ReportedOutcome = at(8.4), "error"
		}},
		{"a claim begun on a cut session, still open, beside the takeover", func(f *fx) {
			// Seen in a false-alarm gate (network, seed 2, checked before
			// the liveness phase): w1.1 began item 1 after its lease loss was
			// recorded, the fault killed its session, w3.1 claimed the freed
			// row, and w1.1's late CreateVM landed while both were open.
			f.in.History.Intervals[0].BegunCut = true
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = time.Time{}, ""
			f.event(history.EventLeaseLost, "w1.1", 2.9)
			f.iv("w3.1", "1", "i1", 4.2, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 4.3, 4.8, replayed)
		}},
		{"a recorded end after the commit overlaps the next claim by a hair", func(f *fx) {
			// w1.1 committed after its last request (ends 9) and reported
			// leaving at 10; w3.1 had claimed the follow-up at 9.5.
			f.iv("w3.1", "5", "i1", 9.5, 9.9, "done")
		}},
		{"after-commit email overlaps the next worker", func(f *fx) {
			f.in.History.Intervals[0].End = at(11.6)
			f.iv("w3.1", "5", "i1", 11.1, 11.4, "done")
			f.rec("w3.1", "cloud", "DescribeVM", "", "i1", 11.2, 11.3, func(r *fakes.Record) { r.Mutation, r.Effect = false, false })
		}},
		{"a slow request outlives the worker that gave up on it", func(f *fx) {
			f.in.History.Intervals[1].End, f.in.History.Intervals[1].Outcome = at(17.5), "retry"
			f.in.Ledger.Requests[4].End = at(25)
			clientGone(&f.in.Ledger.Requests[4])
			f.iv("w3.1", "2", "i1", 17, 21, "done")
			f.in.Ledger.Requests[5].Caller = "w3.1"
		}},
		{"ambiguous provider fault then retry with the same key", func(f *fx) {
			ambiguous(&f.in.Ledger.Requests[0])
			f.rec("w1.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 5.2, 5.4, replayed)
		}},
		{"no-op resize accepted without active work, then another change", func(f *fx) {
			f.op("c1", resize("i1", "medium"), 22.5, 23, history.OK, 2, false)
			f.op("c1", resize("i1", "medium"), 23.5, 24, history.OK, 2, false)
		}},
		{"concurrent resize and delete take effect in generation order, not invoke order", func(f *fx) {
			// Issue 10's false alarm: the delete (op 6) was invoked first but
			// waited for the resize's row lock, was refused as busy, tried
			// again once the resize's work was done and was accepted with
			// generation 4; the resize (op 7), invoked a moment later, was
			// answered generation 3 at once.
			f.op("c3", del("i1"), 60, 63.5, history.OK, 4, true)
			f.op("c4", resize("i1", "small"), 60.1, 60.4, history.OK, 3, true)
			f.iv("w1.1", "6", "i1", 61, 63, "done")
			f.rec("w1.1", "cloud", "ResizeVM", "", "i1", 61.1, 61.2)
			f.rec("w1.1", "kube", "Apply", "", "i1", 61.3, 61.4)
			f.rec("w1.1", "billing", "CreateCharge", "charge:i1:g3", "i1", 61.5, 61.6, event("resize:i1:g3"))
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_4", Owner: "i1", Event: "resize:i1:g3", CreatedAt: at(61.55)})
			f.iv("w2.1", "7", "i1", 64, 68, "done")
			f.rec("w2.1", "cloud", "TerminateVM", "", "i1", 64.1, 64.2)
			f.rec("w2.1", "kube", "Delete", "", "i1", 64.3, 64.4)
			f.vm("vm-1").State, f.vm("vm-1").TerminatedAt = "terminated", at(64.15)
			f.vm("vm-1").Size = "small"
			f.in.Ledger.Deployments = nil
			f.dropInstance("i1")
		}},
		{"instance id re-created after delete, generations restart", func(f *fx) {
			f.op("c1", create("i2", "large"), 55, 56, history.OK, 1, true)
			f.iv("w1.1", "6", "i2", 57, 65, "done")
			f.rec("w1.1", "cloud", "CreateVM", "vm:i2:g1b", "i2", 58, 59)
			f.rec("w1.1", "kube", "Apply", "", "i2", 60, 61)
			f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-3", Owner: "i2", Size: "large",
				ClientToken: "vm:i2:g1b", State: "running", CreatedAt: at(58.5)})
			f.in.Ledger.Deployments = append(f.in.Ledger.Deployments, fakes.Deployment{Name: "kvx-i2", Owner: "i2", Size: "large"})
			f.in.State.Instances = append(f.in.State.Instances, ready("i2", "large", 1, "vm-3"))
		}},
		{"concurrent change answered busy", func(f *fx) {
			f.op("c2", del("i1"), 12.5, 12.7, history.Fail, 0, false)
		}},
		{"two workers on different instances at once", func(f *fx) {
			f.iv("w3.1", "7", "i3", 4, 9, "done")
			f.rec("w3.1", "cloud", "ListVMs", "", "i3", 4.5, 8.5, func(r *fakes.Record) { r.Mutation, r.Effect = false, false })
		}},
		{"same worker retries its own item", func(f *fx) {
			f.iv("w1.1", "1", "i1", 3.5, 4.2, "retry")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.mut(f)
			in := f.input()
			if vs := check.All(in); len(vs) > 0 {
				t.Errorf("false alarms:\n%s", strings.Join(lines(vs), "\n"))
			}
			if r := check.Check(in); r.Verdict != check.Valid || r.Verdict.ExitCode() != 0 {
				t.Errorf("verdict %q, want valid", r.Verdict)
			}
		})
	}
}

type violationCase struct {
	name    string
	mut     func(f *fx)
	checker func(check.Input) []check.Violation
	want    []string // "invariant/rule", sorted
}

func runViolationCases(t *testing.T, cases []violationCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.mut(f)
			in := f.input()
			vs := c.checker(in)
			if d := cmp.Diff(c.want, rules(vs)); d != "" {
				t.Errorf("rules (-want +got):\n%s\nlines:\n%s", d, strings.Join(lines(vs), "\n"))
			}
			all := check.All(in)
			for _, v := range vs {
				if !slices.ContainsFunc(all, func(w check.Violation) bool { return cmp.Equal(v, w) }) {
					t.Errorf("All lacks %s", v)
				}
			}
			if len(c.want) > 0 {
				if r := check.Check(in); r.Verdict != check.Invalid || r.Verdict.ExitCode() != 1 {
					t.Errorf("verdict %q, want invalid", r.Verdict)
				}
			}
		})
	}
}

func TestOrphans(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"VM outlives a deleted instance", func(f *fx) {
			f.vm("vm-2").State = "running"
		}, check.Orphans, []string{"orphan/vm-outlives-instance"}},
		{"VM and deployment outlive an instance stuck deleting", func(f *fx) {
			f.instance("i1").Deleting = true
		}, check.Orphans, []string{"orphan/deployment-outlives-instance", "orphan/vm-outlives-instance"}},
		{"deployment outlives a deleted instance", func(f *fx) {
			f.in.Ledger.Deployments = append(f.in.Ledger.Deployments, fakes.Deployment{Name: "kvx-i2", Owner: "i2", Size: "small"})
		}, check.Orphans, []string{"orphan/deployment-outlives-instance"}},
		{"live instance missing its VM", func(f *fx) {
			f.vm("vm-1").State = "terminated"
		}, check.Orphans, []string{"orphan/missing-vm", "orphan/unknown-vm"}},
		{"live instance missing its deployment", func(f *fx) {
			f.in.Ledger.Deployments = nil
		}, check.Orphans, []string{"orphan/missing-deployment"}},
		{"leaked duplicate VM", func(f *fx) {
			f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-7", Owner: "i1", Size: "medium",
				ClientToken: "vm:i1:g1:attempt2", State: "running", CreatedAt: at(6)})
		}, check.Orphans, []string{"orphan/duplicate-vm"}},
		{"duplicate deployment", func(f *fx) {
			f.in.Ledger.Deployments = append(f.in.Ledger.Deployments, fakes.Deployment{Name: "kvx-i1-b", Owner: "i1", Size: "medium"})
		}, check.Orphans, []string{"orphan/duplicate-deployment"}},
		{"VM of the wrong size", func(f *fx) {
			f.vm("vm-1").Size = "small"
		}, check.Orphans, []string{"orphan/size-mismatch"}},
		{"deployment of the wrong size", func(f *fx) {
			f.in.Ledger.Deployments[0].Size = "large"
		}, check.Orphans, []string{"orphan/size-mismatch"}},
		{"instance records a VM it does not own", func(f *fx) {
			f.instance("i1").VMID = "vm-2"
		}, check.Orphans, []string{"orphan/unknown-vm"}},
		{"not converged: state checks skipped", func(f *fx) {
			f.in.Healed = false
			f.vm("vm-2").State = "running"
			f.in.Ledger.Deployments = nil
		}, check.Orphans, nil},
	})
}

func TestDoubleBilling(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"two live charges for one event", func(f *fx) {
			f.rec("w3.1", "billing", "CreateCharge", "charge:i1:g1:attempt2", "i1", 15.2, 15.4, event("provision:i1:g1"))
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i1",
				Event: "provision:i1:g1", CreatedAt: at(15.3)})
		}, check.DoubleBilling, []string{"double-billing/duplicate-charge"}},
		{"charge for an instance never created", func(f *fx) {
			f.rec("w1.1", "billing", "CreateCharge", "charge:i7:g1", "i7", 8.1, 8.3, event("provision:i7:g1"))
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_7", Owner: "i7",
				Event: "provision:i7:g1", CreatedAt: at(8.2)})
		}, check.DoubleBilling, []string{"double-billing/charge-never-created"}},
		{"charge for an ambiguous create that never provisioned", func(f *fx) {
			f.op("c3", create("i8", "small"), 60, 61, history.Info, 0, false)
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_8", Owner: "i8",
				Event: "provision:i8:g1", CreatedAt: at(62)})
		}, check.DoubleBilling, []string{"double-billing/charge-never-provisioned"}},
		{"never provisioned is not judged before convergence", func(f *fx) {
			f.in.Healed = false
			f.op("c3", create("i8", "small"), 60, 61, history.Info, 0, false)
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_8", Owner: "i8",
				Event: "provision:i8:g1", CreatedAt: at(62)})
		}, check.DoubleBilling, nil},
		{"resize took effect and was never charged", func(f *fx) {
			f.in.Ledger.Charges = f.in.Ledger.Charges[:2]
		}, check.DoubleBilling, []string{"double-billing/charge-missing"}},
		{"create shown done and its only charge was refunded", func(f *fx) {
			f.op("c1", get("i1"), 10.5, 11, history.OK, 1, false)
			f.in.Ledger.Charges[0].Refunded = true
		}, check.DoubleBilling, []string{"double-billing/charge-missing"}},
		{"a change superseded, never shown done, is not judged", func(f *fx) {
			// Nothing shows the create's work ran before the resize was
			// accepted (a race would explain it): no billing verdict.
			f.in.Ledger.Charges[0].Refunded = true
		}, check.DoubleBilling, nil},
		{"a get before the change completed proves nothing", func(f *fx) {
			f.op("c1", get("i1"), 1.5, 1.8, history.OK, 1, false)
			f.in.Ledger.Charges[0].Refunded = true
		}, check.DoubleBilling, nil},
		{"charge-missing is not judged before convergence", func(f *fx) {
			f.in.Healed = false
			f.in.Ledger.Charges = f.in.Ledger.Charges[:2]
		}, check.DoubleBilling, nil},
		{"a change that has not taken effect needs no charge yet", func(f *fx) {
			f.in.Ledger.Charges = f.in.Ledger.Charges[:2]
			f.instance("i1").ObservedGen = 1
		}, check.DoubleBilling, nil},
		{"a no-op resize answered without active work needs no charge", func(f *fx) {
			f.op("c1", resize("i1", "medium"), 22.5, 23, history.OK, 2, false)
			f.op("c1", create("i1", "medium"), 23.5, 24, history.Fail, 0, false)
		}, check.DoubleBilling, nil},
		{"a change later deleted is not judged", func(f *fx) {
			f.in.Ledger.Charges = f.in.Ledger.Charges[:1]
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_3", Owner: "i1", Event: "resize:i1:g2", CreatedAt: at(18.7)})
		}, check.DoubleBilling, nil},
		{"duplicates are judged before convergence", func(f *fx) {
			f.in.Healed = false
			f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i2",
				Event: "provision:i2:g1", CreatedAt: at(39)})
		}, check.DoubleBilling, []string{"double-billing/duplicate-charge"}},
	})
}

func TestRaces(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"two workers in one item", func(f *fx) {
			f.iv("w3.1", "1", "i1", 6, 12, "done")
		}, check.Races, []string{"race/same-item"}},
		{"two workers in one instance", func(f *fx) {
			f.iv("w3.1", "9", "i1", 8.5, 8.7, "done")
		}, check.Races, []string{"race/same-instance"}},
		{"second worker proves the overlap with its own request", func(f *fx) {
			// w3.1 claimed at 2.5, before w1.1's Begin at 3, and was still
			// waiting for its request at 4.5.
			f.iv("w3.1", "9", "i1", 2.5, 12, "done")
			f.rec("w3.1", "kube", "Get", "", "i1", 4.2, 4.8, func(r *fakes.Record) { r.Mutation, r.Effect = false, false })
		}, check.Races, []string{"race/same-instance"}},
		{"a claim begun on a cut session proves its span once it committed", func(f *fx) {
			f.in.History.Intervals[0].BegunCut = true
			f.iv("w3.1", "1", "i1", 4.2, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 4.3, 4.8, replayed)
		}, check.Races, []string{"race/concurrent-mutations", "race/same-item"}},
		{"a zero-length interval cut at its start still proves its start", func(f *fx) {
			// Cut by a lease loss the moment it began, not lost at its start
			// (history.Interval.LostAtStart unset): inside at 8.
			f.in.History.Intervals[0].End, f.in.History.Intervals[0].Outcome = at(6.5), history.IntervalLeaseLost
			f.event(history.EventLeaseLost, "w1.1", 6.5)
			f.iv("w3.1", "1", "i1", 7, 11, "done")
			f.rec("w3.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 7.5, 8.5, replayed)
			f.iv("w4.1", "1", "i1", 8, 8, history.IntervalLeaseLost)
		}, check.Races, []string{"race/same-item"}},
		{"open interval of a stuck worker overlapping a later claim", func(f *fx) {
			f.iv("w3.1", "9", "i1", 60, 0, "")
			f.rec("w3.1", "cloud", "ResizeVM", "", "i1", 61, 62)
			f.iv("w4.1", "10", "i1", 61.5, 63, "done")
		}, check.Races, []string{"race/same-instance"}},
		{"provider mutations of one owner by two workers overlap", func(f *fx) {
			f.iv("w3.1", "8", "i5", 4.2, 7, "done")
			f.rec("w3.1", "cloud", "ResizeVM", "", "i1", 4.5, 6)
		}, check.Races, []string{"race/concurrent-mutations"}},
		{"two accepted changes with one generation", func(f *fx) {
			f.op("c2", resize("i1", "large"), 12.5, 13.5, history.OK, 2, true)
		}, check.Races, []string{"race/same-generation"}},
		{"a repeated resize answered OK while work is active", func(f *fx) {
			f.op("c2", resize("i1", "medium"), 13.2, 13.5, history.OK, 2, true)
		}, check.Races, []string{"race/same-generation"}},
		{"a keyless item is no instance", func(f *fx) {
			f.iv("w3.1", "90", "", 4, 9, "done")
			f.iv("w4.1", "91", "", 5, 6, "done")
			f.iv("w5.1", "90", "", 5, 6, "done")
			f.rec("w3.1", "cloud", "ListVMs", "", "", 4.5, 8, func(r *fakes.Record) { r.Mutation, r.Effect = false, false })
		}, check.Races, []string{"race/same-item"}},
		{"change accepted right after another, before any worker started", func(f *fx) {
			f.op("c2", resize("i1", "large"), 13.2, 13.5, history.OK, 3, true)
		}, check.Races, []string{"race/accepted-while-active"}},
		{"two concurrent changes both accepted", func(f *fx) {
			f.op("c2", del("i1"), 12.1, 12.9, history.OK, 3, true)
		}, check.Races, []string{"race/accepted-while-active"}},
		{"a worker in the window may have completed it: no alarm", func(f *fx) {
			f.op("c2", resize("i1", "large"), 13.2, 14.5, history.OK, 3, true)
		}, check.Races, nil},
		{"a retry in the window cannot have completed it", func(f *fx) {
			f.iv("w3.1", "2", "i1", 13.3, 13.4, "retry")
			f.op("c2", resize("i1", "large"), 13.2, 13.5, history.OK, 3, true)
		}, check.Races, []string{"race/accepted-while-active"}},
		{"a get in the window saw no active work: no alarm", func(f *fx) {
			f.op("c3", get("i1"), 13.25, 13.3, history.OK, 2, false)
			f.op("c2", resize("i1", "large"), 13.4, 13.5, history.OK, 3, true)
		}, check.Races, nil},
	})
}

func TestLostWork(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"accepted resize never applied", func(f *fx) {
			f.instance("i1").ObservedGen = 1
		}, check.LostWork, []string{"lost-work/change-not-applied"}},
		{"accepted create lost", func(f *fx) {
			f.dropInstance("i1")
		}, check.LostWork, []string{"lost-work/change-not-applied", "lost-work/create-lost"}},
		{"instance of an unknown create lost after an accepted resize", func(f *fx) {
			f.in.History.Ops[0].Outcome, f.in.History.Ops[0].Response = history.Info, contract.Response{}
			f.dropInstance("i1")
		}, check.LostWork, []string{"lost-work/change-not-applied", "lost-work/unknown-create-lost"}},
		{"accepted delete not done", func(f *fx) {
			f.in.State.Instances = append(f.in.State.Instances, ready("i2", "small", 2, "vm-2"))
		}, check.LostWork, []string{"lost-work/delete-not-done"}},
		{"unknown create happened but the instance is gone", func(f *fx) {
			f.op("c3", create("i8", "small"), 60, 61, history.Info, 0, false)
			f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-8", Owner: "i8", Size: "small",
				ClientToken: "vm:i8:g1", State: "terminated", CreatedAt: at(62), TerminatedAt: at(63)})
		}, check.LostWork, []string{"lost-work/unknown-create-lost"}},
		{"unknown create then unknown delete: settled as deleted", func(f *fx) {
			f.op("c3", create("i8", "small"), 60, 61, history.Info, 0, false)
			f.op("c3", del("i8"), 70, 71, history.Info, 0, false)
			f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-8", Owner: "i8", Size: "small",
				ClientToken: "vm:i8:g1", State: "terminated", CreatedAt: at(62), TerminatedAt: at(73)})
		}, check.LostWork, nil},
		{"unknown delete did not happen, so the earlier resize must show", func(f *fx) {
			f.op("c3", del("i1"), 60, 61, history.Info, 0, false)
			f.instance("i1").ObservedGen = 1
		}, check.LostWork, []string{"lost-work/change-not-applied"}},
		{"not converged: skipped", func(f *fx) {
			f.in.Healed = false
			f.dropInstance("i1")
		}, check.LostWork, nil},
		{"active work dropped: judged before convergence", func(f *fx) {
			f.in.Healed = false
			f.instance("i1").HasActiveWork = true
		}, check.LostWork, []string{"lost-work/work-dropped"}},
		{"active work dropped after healing", func(f *fx) {
			f.op("c1", resize("i1", "large"), 60, 61, history.OK, 3, true)
			i := f.instance("i1")
			i.HasActiveWork, i.Generation, i.DesiredSize, i.State = true, 3, "large", "resizing"
		}, check.LostWork, []string{"lost-work/change-not-applied", "lost-work/work-dropped"}},
		{"active work with its item in flight is not dropped", func(f *fx) {
			f.in.Healed = false
			f.op("c1", resize("i1", "large"), 60, 61, history.OK, 3, true)
			i := f.instance("i1")
			i.HasActiveWork, i.Generation, i.DesiredSize, i.State = true, 3, "large", "resizing"
			f.in.State.Work = []contract.WorkItem{{ID: "7", Kind: "resize", Key: "i1"}}
		}, check.LostWork, nil},
		{"active work parked with a reason is not dropped", func(f *fx) {
			f.in.Healed = false
			f.instance("i1").HasActiveWork = true
			f.in.State.Work = []contract.WorkItem{{ID: "7", Kind: "resize", Key: "i1", Parked: true, Reason: "deployed_bug"}}
		}, check.LostWork, nil},
	})
}

func TestConvergence(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"observed differs from desired", func(f *fx) {
			i := f.instance("i1")
			i.ObservedSize, i.ObservedGen, i.State, i.HasActiveWork = "small", 1, "resizing", true
		}, check.Convergence, []string{"convergence/not-converged"}},
		{"still deleting", func(f *fx) {
			f.instance("i1").Deleting = true
		}, check.Convergence, []string{"convergence/not-converged"}},
		{"work left", func(f *fx) {
			f.in.State.Work = []contract.WorkItem{{ID: "9", Kind: "resize", Key: "i1", Attempts: 3, Reason: "timeout"}}
		}, check.Convergence, []string{"convergence/work-left"}},
		{"parked work left after the liveness phase", func(f *fx) {
			f.in.State.Work = []contract.WorkItem{{ID: "9", Kind: "audit", Key: "i7", Parked: true, Reason: "deployed_bug"}}
		}, check.Convergence, []string{"convergence/parked-after-fix"}},
		{"parked with no bug deployed", func(f *fx) {
			f.iv("w1.1", "9", "i1", 60, 61, "parked")
		}, check.Convergence, []string{"convergence/parked-without-bug"}},
		{"parked while a bug was deployed", func(f *fx) {
			f.bug(59, 70)
			f.iv("w1.1", "9", "i1", 60, 61, "parked")
		}, check.Convergence, nil},
		{"parked, recorded just after the fix of the bug it met", func(f *fx) {
			f.bug(59, 60.5)
			f.iv("w1.1", "9", "i1", 60, 61, "parked")
		}, check.Convergence, nil},
		{"parked long after a bug was fixed", func(f *fx) {
			f.bug(40, 45)
			f.iv("w1.1", "9", "i1", 60, 61, "parked")
		}, check.Convergence, []string{"convergence/parked-without-bug"}},
		{"parked without a reason", func(f *fx) {
			f.in.State.Work = []contract.WorkItem{{ID: "9", Kind: "resize", Key: "i1", Parked: true}}
		}, check.Convergence, []string{"convergence/parked-without-reason"}},
		{"not converged: skipped", func(f *fx) {
			f.in.Healed = false
			f.instance("i1").HasActiveWork = true
		}, check.Convergence, nil},
		{"retry storm against a deployed bug", func(f *fx) {
			f.bug(50, 80)
			f.rejections(check.HotRetryLimit+1, 51)
		}, check.Convergence, []string{"convergence/hot-retry"}},
		{"retry storm against a bug never fixed, judged before convergence", func(f *fx) {
			f.in.Healed = false
			f.bug(50, 0)
			f.rejections(check.HotRetryLimit+3, 51)
		}, check.Convergence, []string{"convergence/hot-retry"}},
		{"work parks: one rejection per operator resume", func(f *fx) {
			f.bug(50, 0)
			for i := range check.HotRetryLimit + 3 {
				t := 51 + 2*float64(i)
				f.rec("w3.1", "cloud", "CreateVM", "vm:i3:g1", "i3", t, t+0.1, rejected)
				f.op("op", contract.Request{Op: contract.OpResume}, t+0.5, t+0.6, history.OK, 0, false)
			}
		}, check.Convergence, nil},
		{"as many rejections as the limit allows", func(f *fx) {
			f.bug(50, 80)
			f.rejections(check.HotRetryLimit, 51)
		}, check.Convergence, nil},
		{"rejections outside the bug's window", func(f *fx) {
			f.bug(50, 51)
			f.rejections(check.HotRetryLimit+1, 52)
		}, check.Convergence, nil},
		{"rejections on a link that may lose their answers", func(f *fx) {
			f.bug(50, 0)
			on := f.event(history.EventFaultOn, "", 50.5)
			on.Target, on.Detail = "w3.1/cloud", "reset(down)"
			f.rejections(check.HotRetryLimit+3, 51)
		}, check.Convergence, nil},
		{"rejections after the link fault was lifted", func(f *fx) {
			f.bug(50, 0)
			on := f.event(history.EventFaultOn, "", 50.5)
			on.Target, on.Detail = "w3.1/cloud", "reset(down)"
			off := f.event(history.EventFaultOff, "", 50.7)
			off.Target, off.Detail = "w3.1/cloud", "reset(down) heal"
			f.rejections(check.HotRetryLimit+1, 51)
		}, check.Convergence, []string{"convergence/hot-retry"}},
		{"rejections split by a fault cleared in between", func(f *fx) {
			f.bug(50, 0)
			f.rejections(3, 51)
			f.event(history.EventFaultOff, "", 54.5)
			f.rejections(3, 55)
		}, check.Convergence, nil},
	})
}

func TestObserved(t *testing.T) {
	f := base()
	f.in.Healed = false
	obs := check.Violation{Invariant: check.InvConvergence, Rule: "no-takeover", Instance: "i1", Message: "no worker took over"}
	f.in.Observed = []check.Violation{obs}
	in := f.input()
	if d := cmp.Diff([]check.Violation{obs}, check.All(in)); d != "" {
		t.Errorf("All (-want +got):\n%s", d)
	}
	if r := check.Check(in); r.Verdict != check.Invalid {
		t.Errorf("verdict %q, want invalid", r.Verdict)
	}
}

func TestAtMostOnce(t *testing.T) {
	runViolationCases(t, []violationCase{
		{"email sent twice", func(f *fx) {
			f.rec("w2.1", "email", "Send", "", "i1", 21, 21.5, event("welcome:i1"))
		}, check.AtMostOnce, []string{"at-most-once/duplicate-effect"}},
		{"two emails for two events", func(f *fx) {
			f.rec("w2.1", "email", "Send", "", "i1", 21, 21.5, event("resized:i1:g2"))
		}, check.AtMostOnce, nil},
		{"a send that took no effect", func(f *fx) {
			f.rec("w2.1", "email", "Send", "", "i1", 21, 21.5, event("welcome:i1"), rejected)
		}, check.AtMostOnce, nil},
		{"a charge repeated on a service with idempotency is not at-most-once's", func(f *fx) {
			f.rec("w2.1", "billing", "CreateCharge", "charge:i1:g1", "i1", 21, 21.5, event("provision:i1:g1"))
		}, check.AtMostOnce, nil},
	})
}

func TestViolationLines(t *testing.T) {
	f := base()
	f.rec("w3.1", "billing", "CreateCharge", "charge:i1:g1:attempt2", "i1", 15.2, 15.4, event("provision:i1:g1"))
	f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i1", Event: "provision:i1:g1", CreatedAt: at(15.3)})
	f.op("c2", resize("i1", "large"), 12.5, 13.5, history.OK, 2, true)
	f.iv("w3.1", "1", "i1", 6, 12, "done")
	got := lines(check.All(f.input()))
	want := []string{
		"double-billing: instance i1: 2 charges for event provision:i1:g1 (ch_1 key=charge:i1:g1 by w1.1, ch_9 key=charge:i1:g1:attempt2 by w3.1); ops [0]",
		"race: instance i1: two accepted changes answered with generation 2 (op 1 resize medium, op 2 resize large): check-then-act; ops [1 2]",
		"race: instance i1: two workers inside item 1 at once: w1.1 in item 1 (interval #0, inside from 10:00:00.003000 until at least 10:00:00.009000, recorded end 10:00:00.010000 done) and w3.1 in item 1 (interval #4, inside from 10:00:00.006000 until at least 10:00:00.006000, recorded end 10:00:00.012000 done)",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
	vs := check.All(f.input())
	if d := cmp.Diff([]string{"charge:i1:g1", "charge:i1:g1:attempt2"}, vs[0].Keys); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	if got := (check.Violation{Invariant: check.InvConvergence, Rule: "work-left", Message: "m"}).String(); got != "convergence: m" {
		t.Errorf("line without instance or ops: %q", got)
	}
}

func TestVerdicts(t *testing.T) {
	f := base()
	f.in.Healed = false
	f.instance("i1").HasActiveWork = true // not judged: no convergence claimed
	f.in.State.Work = []contract.WorkItem{{ID: "9", Kind: "resize", Key: "i1"}}
	r := check.Check(f.input())
	if r.Verdict != check.Unknown || r.Verdict.ExitCode() != 2 || r.Reason == "" || len(r.Violations) != 0 {
		t.Errorf("not converged, clean: %+v", r)
	}
	f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i2", Event: "provision:i2:g1", CreatedAt: at(39)})
	if r := check.Check(f.input()); r.Verdict != check.Invalid || len(r.Violations) != 1 {
		t.Errorf("not converged, a safety violation: %+v", r)
	}
}

func TestReached(t *testing.T) {
	got := check.Reached(base().input())
	if d := cmp.Diff([]string{check.PathBusy, check.PathVMTerminated}, got); d != "" {
		t.Errorf("base reached (-want +got):\n%s", d)
	}
	f := base()
	f.in.History.Ops[2].Outcome = history.Info
	f.in.History.Intervals[0].Outcome = history.IntervalCrashed
	f.in.History.Intervals[1].Outcome = "retry"
	f.iv("w3.1", "1", "i1", 11, 11.5, "parked")
	f.event(history.EventCrash, "w1.1", 10)
	f.event(history.EventLeaseLost, "w2.1", 30)
	f.event(history.EventSessionLost, "w2.1", 30.5)
	f.event(history.EventFaultOn, "", 31)
	f.event(history.EventDeployBug, "", 32)
	f.event(history.EventDeployFix, "", 33)
	f.rec("w1.1", "cloud", "CreateVM", "vm:i1:g1", "i1", 5.2, 5.4, replayed)
	ambiguous(&f.in.Ledger.Requests[0])
	f.in.Ledger.Charges[0].Refunded = true
	resume := f.op("op", contract.Request{Op: contract.OpResume}, 80, 81, history.OK, 0, false)
	resume.Response.Resumed = 2
	f.op("c2", resize("i1", "large"), 12.5, 12.6, history.Fail, 0, false)
	got = check.Reached(f.input())
	if d := cmp.Diff(check.Paths(), got); d != "" {
		t.Errorf("every path reached (-want +got):\n%s", d)
	}
}

// TestDeterministic: the order of the inputs does not change the output,
// and a JSON round trip of the input does not either.
func TestDeterministic(t *testing.T) {
	f := base()
	f.vm("vm-2").State = "running"
	f.in.Ledger.Deployments = append(f.in.Ledger.Deployments, fakes.Deployment{Name: "kvx-i2", Owner: "i2"})
	f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch_9", Owner: "i2", Event: "provision:i2:g1", CreatedAt: at(39)})
	f.op("c2", resize("i1", "large"), 12.5, 13.5, history.OK, 2, true)
	f.iv("w3.1", "1", "i1", 6, 12, "done")
	f.iv("w3.1", "9", "i1", 15.5, 0, "")
	f.in.State.Work = []contract.WorkItem{{ID: "b", Key: "i1"}, {ID: "a", Key: "i1"}}
	in := f.input()
	want := check.All(in)
	if len(want) < 8 {
		t.Fatalf("fixture should break many rules, got %d", len(want))
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		s := in
		s.History.Ops = shuffled(rnd, in.History.Ops)
		s.History.Intervals = shuffled(rnd, in.History.Intervals)
		s.Ledger.Requests = shuffled(rnd, in.Ledger.Requests)
		s.Ledger.VMs = shuffled(rnd, in.Ledger.VMs)
		s.Ledger.Charges = shuffled(rnd, in.Ledger.Charges)
		s.Ledger.Deployments = shuffled(rnd, in.Ledger.Deployments)
		s.State.Instances = shuffled(rnd, in.State.Instances)
		s.State.Work = shuffled(rnd, in.State.Work)
		if d := cmp.Diff(want, check.All(s)); d != "" {
			t.Fatalf("shuffled input changed the output (-want +got):\n%s", d)
		}
	}

	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back check.Input
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, check.All(back)); d != "" {
		t.Errorf("JSON round trip changed the output (-want +got):\n%s", d)
	}
}

func shuffled[T any](r *rand.Rand, xs []T) []T {
	xs = slices.Clone(xs)
	r.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	return xs
}

// TestRecorderToChecker: a history recorded through the Recorder reads the
// same as a hand-made one.
func TestRecorderToChecker(t *testing.T) {
	clk := &stepClock{t: epoch}
	rec := history.New(history.Options{Clock: clk})
	i := rec.Invoke("c1", create("i1", "small"))
	rec.Complete(i, contract.Response{Instance: "i1", Generation: 1, HasActiveWork: true}, nil)
	end1 := rec.Observer("w1.1").Begin("1", "i1")
	rec.Crash("w1.1", "cloud:CreateVM")
	end1("done")
	end2 := rec.Observer("w2.1").Begin("1", "i1")
	end3 := rec.Observer("w3.1").Begin("2", "i1")
	end2("done")
	end3("done")
	in := check.Input{History: rec.Snapshot(), Healed: true,
		State: contract.Snapshot{Instances: []contract.Instance{ready("i1", "small", 1, "vm-1")}},
		Ledger: fakes.Snapshot{
			VMs:         []fakes.VM{{ID: "vm-1", Owner: "i1", Size: "small", State: "running"}},
			Deployments: []fakes.Deployment{{Name: "d", Owner: "i1", Size: "small"}},
			Charges:     []fakes.Charge{{ID: "ch_1", Owner: "i1", Event: "provision:i1:g1"}},
			Requests: []fakes.Record{
				// w2.1 waits on a request across w3.1's claim: a race.
				{Seq: 1, Service: "cloud", Endpoint: "CreateVM", Caller: "w2.1", Owner: "i1", Mutation: true,
					Status: 200, Effect: true, Start: at(6.5), End: at(7.5)},
			},
		}}
	if d := cmp.Diff([]string{"race/same-instance"}, rules(check.All(in))); d != "" {
		t.Errorf("rules (-want +got):\n%s\n%s", d, strings.Join(lines(check.All(in)), "\n"))
	}
	if !slices.Contains(check.Reached(in), check.PathWorkerCrash) || !slices.Contains(check.Reached(in), check.PathItemRedone) {
		t.Errorf("reached %v", check.Reached(in))
	}
}
