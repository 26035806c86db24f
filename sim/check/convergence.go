package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/workproof/workproof/contract"
)

// ReadyState is the Instance.State a converged instance must be in.
const ReadyState = "ready"

// Convergence checks the system's own state after the liveness phase (the
// run was healed); it returns nothing when in.Healed is false (Check then
// answers Unknown). Rules:
//
//   - "not-converged": one line per instance listing every mismatch among:
//     Deleting (a delete that never finished), ObservedSize != DesiredSize,
//     ObservedGen != Generation, State != "ready", HasActiveWork;
//   - "work-left": a work item that is not parked;
//   - "parked-without-reason": a parked work item with an empty Reason
//     (parked work must say why, visibly).
//
// Ops of "not-converged" are the instance's OK or Info changes answered with
// a generation above ObservedGen.
func Convergence(in Input) []Violation { return newView(in).convergence() }

func (v *view) convergence() []Violation {
	in := v.in
	if !in.Healed {
		return nil
	}
	var out []Violation
	insts := slices.Clone(in.State.Instances)
	slices.SortFunc(insts, func(a, b contract.Instance) int { return strings.Compare(a.ID, b.ID) })
	for _, i := range insts {
		var bad []string
		if i.Deleting {
			bad = append(bad, "still deleting")
		}
		if i.ObservedSize != i.DesiredSize {
			bad = append(bad, fmt.Sprintf("observed size %q != desired %q", i.ObservedSize, i.DesiredSize))
		}
		if i.ObservedGen != i.Generation {
			bad = append(bad, fmt.Sprintf("observed generation %d != generation %d", i.ObservedGen, i.Generation))
		}
		if i.State != ReadyState {
			bad = append(bad, fmt.Sprintf("state %q", i.State))
		}
		if i.HasActiveWork {
			bad = append(bad, "has_active_work set")
		}
		if len(bad) == 0 {
			continue
		}
		var ops []int
		for _, o := range v.changeOps(i.ID) {
			if o.Response.Generation > i.ObservedGen {
				ops = append(ops, o.Index)
			}
		}
		out = append(out, Violation{Invariant: InvConvergence, Rule: "not-converged", Instance: i.ID, Ops: ops,
			Message: "not converged: " + strings.Join(bad, "; ")})
	}
	work := slices.Clone(in.State.Work)
	slices.SortFunc(work, func(a, b contract.WorkItem) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.ID, b.ID))
	})
	for _, w := range work {
		switch {
		case !w.Parked:
			out = append(out, Violation{Invariant: InvConvergence, Rule: "work-left", Instance: w.Key,
				Message: fmt.Sprintf("work item %s (%s) left after %d attempts, not parked; last error %q", w.ID, w.Kind, w.Attempts, w.Reason)})
		case w.Reason == "":
			out = append(out, Violation{Invariant: InvConvergence, Rule: "parked-without-reason", Instance: w.Key,
				Message: fmt.Sprintf("work item %s (%s) parked without a reason", w.ID, w.Kind)})
		}
	}
	return sortViolations(out)
}
