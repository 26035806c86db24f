package check

import (
	"fmt"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/history"
)

// LostWork checks, once the run was healed, that every accepted change took
// effect. It runs only when in.Healed. "Later" is the order in which the
// changes took effect, never the order they were invoked in: between two OK
// changes, the higher generation (the system's own order); otherwise, one
// may come after another unless it completed before the other was invoked
// (concurrent requests may take effect in either order). A delete "may have
// happened" when it is OK, or Info or pending and the instance is absent or
// a create may have come after it (a re-created instance does not prove an
// Info delete away, but does not prove it happened either, so it is given
// the benefit of the doubt).
// Rules:
//
//   - "change-not-applied": an OK create or resize with generation g and no
//     later delete that may have happened, whose instance exists with
//     ObservedGen < g, or an OK resize whose instance is missing;
//   - "create-lost": an OK create with no later delete that may have
//     happened, whose instance is missing;
//   - "delete-not-done": an OK delete with no later create that may have
//     happened (OK, Info or pending), whose instance still exists;
//   - "unknown-create-lost": an Info (or pending) create whose instance is
//     missing although the ledger shows it happened (a VM created for it at
//     or after the request's invoke), with no later delete that may have
//     happened.
//
// One rule runs whether or not the run was healed, since no quiescence is
// needed to see it:
//
//   - "work-dropped": an instance in State with HasActiveWork and no work
//     item at all (parked or not) whose Key is the instance. The pattern sets
//     the flag in the transaction that enqueues the work and clears it in
//     the one that completes it, and Inspect reads both in one snapshot
//     (see contract.System), so the flag without work means the work was
//     dropped: nothing will ever clear it, and the instance refuses every
//     change from now on.
//
// An Info create whose instance exists must be complete like any other;
// that is checked by Convergence and Orphans, which see every instance in
// State. An Info create that did not happen must have left nothing behind,
// which Orphans and DoubleBilling check.
func LostWork(in Input) []Violation { return newView(in).lostWork() }

func (v *view) lostWork() []Violation {
	in := v.in
	out := v.droppedWork()
	if !in.Healed {
		return sortViolations(out)
	}
	for _, id := range sortedKeys(v.ops) {
		ops := v.ops[id]
		inst, exists := v.inst[id]
		for _, o := range ops {
			add := func(rule, format string, args ...any) {
				out = append(out, Violation{Invariant: InvLostWork, Rule: rule, Instance: id,
					Ops: []int{o.Index}, Message: fmt.Sprintf(format, args...)})
			}
			switch {
			case o.Outcome == history.OK && (o.Request.Op == contract.OpCreate || o.Request.Op == contract.OpResize):
				if v.deletedAfter(id, o) {
					continue
				}
				if !exists {
					rule := "create-lost"
					if o.Request.Op == contract.OpResize {
						rule = "change-not-applied"
					}
					add(rule, "accepted %s (generation %d) but the instance does not exist", describeOp(o), o.Response.Generation)
					continue
				}
				if inst.ObservedGen < o.Response.Generation {
					add("change-not-applied", "accepted %s (generation %d) never took effect: observed generation %d",
						describeOp(o), o.Response.Generation, inst.ObservedGen)
				}
			case o.Outcome == history.OK && o.Request.Op == contract.OpDelete:
				if exists && !v.createAfter(id, o) {
					add("delete-not-done", "accepted %s but the instance still exists (state %s, deleting=%t)",
						describeOp(o), inst.State, inst.Deleting)
				}
			case o.Request.Op == contract.OpCreate && outcome(o) == history.Info:
				if exists || v.deletedAfter(id, o) {
					continue
				}
				if vm, ok := v.vmSince(id, o); ok {
					add("unknown-create-lost", "%s had an unknown outcome and happened (VM %s created at %s) but the instance does not exist",
						describeOp(o), vmName(vm), clock(vm.CreatedAt))
					out[len(out)-1].Keys = tokens(vm)
				}
			}
		}
	}
	return sortViolations(out)
}

// droppedWork is rule "work-dropped".
func (v *view) droppedWork() []Violation {
	keyed := map[string]bool{}
	for _, w := range v.in.State.Work {
		keyed[w.Key] = true
	}
	var out []Violation
	for _, id := range sortedKeys(v.inst) {
		inst := v.inst[id]
		if !inst.HasActiveWork || keyed[id] {
			continue
		}
		var ops []int
		for _, o := range v.changeOps(id) {
			if o.Response.Generation > inst.ObservedGen {
				ops = append(ops, o.Index)
			}
		}
		out = append(out, Violation{Invariant: InvLostWork, Rule: "work-dropped", Instance: id, Ops: ops,
			Message: fmt.Sprintf("has_active_work is set (generation %d, observed %d, state %s) but no work item exists for the instance: the work was dropped, and nothing will clear the flag",
				inst.Generation, inst.ObservedGen, inst.State)})
	}
	return out
}

// mayFollow reports whether op b may have taken effect after op a: between
// two OK resizes or deletes (changes of one lifetime of the instance) the
// generations they were answered with order them — the invoke order does
// not: two concurrent requests commit in either order; otherwise (a create
// may start a lifetime whose generations start again) b may follow a
// unless b completed before a was invoked.
func mayFollow(a, b history.Op) bool {
	if a.Index == b.Index {
		return false
	}
	ga, gb := a.Response.Generation, b.Response.Generation
	sameLife := a.Request.Op != contract.OpCreate && b.Request.Op != contract.OpCreate
	if sameLife && a.Outcome == history.OK && b.Outcome == history.OK && ga > 0 && gb > 0 {
		return gb > ga
	}
	return !completeOf(b).Before(a.Invoke)
}

// deletedAfter reports whether a delete of instance that may have happened
// may have taken effect after op o. An Info or pending delete counts when
// the instance is absent or a create may have come after it.
func (v *view) deletedAfter(instance string, o history.Op) bool {
	_, exists := v.inst[instance]
	for _, d := range v.ops[instance] {
		if d.Request.Op != contract.OpDelete || !mayHaveHappened(d) || !mayFollow(o, d) {
			continue
		}
		if d.Outcome == history.OK || !exists || v.createAfter(instance, d) {
			return true
		}
	}
	return false
}

// createAfter reports whether a create of instance that may have happened
// may have taken effect after op o.
func (v *view) createAfter(instance string, o history.Op) bool {
	for _, c := range v.ops[instance] {
		if c.Request.Op == contract.OpCreate && mayHaveHappened(c) && mayFollow(o, c) {
			return true
		}
	}
	return false
}

// vmSince returns the first VM (by creation) of instance created at or after
// the op was invoked.
func (v *view) vmSince(instance string, o history.Op) (fakes.VM, bool) {
	var best fakes.VM
	found := false
	for _, vm := range v.in.Ledger.VMs {
		if vm.Owner != instance || vm.CreatedAt.Before(o.Invoke) {
			continue
		}
		if !found || vm.CreatedAt.Before(best.CreatedAt) || (vm.CreatedAt.Equal(best.CreatedAt) && vm.ID < best.ID) {
			best, found = vm, true
		}
	}
	return best, found
}
