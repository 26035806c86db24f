package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/history"
)

// DoubleBilling checks that every billable event is charged at most once and
// only for instances that were provisioned. Refunded charges are ignored:
// a refund is how a duplicate is put right. Rules:
//
//   - "duplicate-charge": two or more non-refunded charges with the same
//     (non-empty) Charge.Event;
//   - "charge-never-created": a non-refunded charge whose owner has no
//     create request in the history that may have happened (OK, Info or
//     pending);
//   - "charge-never-provisioned" (only when in.Healed): a non-refunded
//     charge whose owner never had a VM in the ledger, running or
//     terminated;
//   - "charge-missing" (only when in.Healed): a change that certainly took
//     effect was never charged. The change is an OK create, or an OK resize
//     answered with HasActiveWork (one that started work; a no-op repeat did
//     not), with generation g > 0 and no later delete that may have
//     happened, whose instance exists in State, and which took effect:
//     ObservedGen == g, or ObservedGen > g and an OK get invoked after the
//     change completed answered generation g without active work (a change
//     superseded by a later one may never have run, if the later one was
//     accepted too early: that is a race, not a billing question). Its
//     billable event, named as package contract requires
//     ("provision:<id>:g<g>" for a create, "resize:<id>:g<g>" for a
//     resize), has no non-refunded charge. With "duplicate-charge" this
//     makes every billable event charged exactly once.
//
// Each charge is shown with the idempotency key and caller of the ledger
// request that created it (an effectful billing request of the same owner
// and event in flight at the charge's CreatedAt; "?" when none matches).
// Ops are the owner's change requests that may have happened, narrowed to
// those answered with generation N when the event names "gN".
func DoubleBilling(in Input) []Violation { return newView(in).doubleBilling() }

func (v *view) doubleBilling() []Violation {
	in := v.in
	var live []fakes.Charge
	for _, ch := range in.Ledger.Charges {
		if !ch.Refunded {
			live = append(live, ch)
		}
	}
	slices.SortFunc(live, func(a, b fakes.Charge) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var out []Violation

	byEvent := map[string][]fakes.Charge{}
	for _, ch := range live {
		if ch.Event != "" {
			byEvent[ch.Event] = append(byEvent[ch.Event], ch)
		}
	}
	for _, ev := range sortedKeys(byEvent) {
		chs := byEvent[ev]
		if len(chs) < 2 {
			continue
		}
		var descs, keys []string
		var ops []int
		owners := map[string]bool{}
		for _, ch := range chs {
			d, k := v.describeCharge(ch)
			descs, keys = append(descs, d), append(keys, k...)
			owners[ch.Owner] = true
		}
		for _, o := range sortedKeys(owners) {
			ops = append(ops, v.opsForEvent(o, ev)...)
		}
		out = append(out, Violation{
			Invariant: InvDoubleBilling, Rule: "duplicate-charge", Instance: chs[0].Owner,
			Keys: keys, Ops: ops,
			Message: fmt.Sprintf("%d charges for event %s (%s)", len(chs), ev, strings.Join(descs, ", ")),
		})
	}

	everVM := map[string]bool{}
	for _, vm := range in.Ledger.VMs {
		everVM[vm.Owner] = true
	}
	for _, ch := range live {
		created := slices.ContainsFunc(v.ops[ch.Owner], func(o history.Op) bool {
			return o.Request.Op == contract.OpCreate && mayHaveHappened(o)
		})
		d, k := v.describeCharge(ch)
		switch {
		case !created:
			out = append(out, Violation{
				Invariant: InvDoubleBilling, Rule: "charge-never-created", Instance: ch.Owner, Keys: k,
				Message: fmt.Sprintf("charge %s for event %s, but no create of the instance may have happened", d, ch.Event),
			})
		case in.Healed && !everVM[ch.Owner]:
			out = append(out, Violation{
				Invariant: InvDoubleBilling, Rule: "charge-never-provisioned", Instance: ch.Owner, Keys: k,
				Ops:     v.opsForEvent(ch.Owner, ch.Event),
				Message: fmt.Sprintf("charge %s for event %s, but no VM ever existed for the instance", d, ch.Event),
			})
		}
	}
	if in.Healed {
		out = append(out, v.missingCharges(live)...)
	}
	return sortViolations(out)
}

// missingCharges is rule "charge-missing".
func (v *view) missingCharges(live []fakes.Charge) []Violation {
	charged := map[string]bool{}
	for _, ch := range live {
		charged[ch.Event] = true
	}
	var out []Violation
	for _, id := range sortedKeys(v.ops) {
		inst, exists := v.inst[id]
		if !exists {
			continue
		}
		for _, o := range v.ops[id] {
			g := o.Response.Generation
			switch {
			case o.Outcome != history.OK || g <= 0 || inst.ObservedGen < g:
				continue
			case o.Request.Op == contract.OpCreate:
			case o.Request.Op == contract.OpResize && o.Response.HasActiveWork:
			default:
				continue
			}
			ev := contract.BillableEvent(o.Request.Op, id, g)
			if charged[ev] || v.deletedAfter(id, o) || (inst.ObservedGen != g && !v.shownDone(id, o)) {
				continue
			}
			out = append(out, Violation{Invariant: InvDoubleBilling, Rule: "charge-missing", Instance: id, Ops: []int{o.Index},
				Message: fmt.Sprintf("%s (generation %d) took effect (observed generation %d) but event %s was never charged",
					describeOp(o), g, inst.ObservedGen, ev)})
		}
	}
	return out
}

// shownDone reports whether an OK get of instance, invoked after change o
// completed, answered o's generation without active work: the system
// itself showed o's work done.
func (v *view) shownDone(instance string, o history.Op) bool {
	return slices.ContainsFunc(v.ops[instance], func(g history.Op) bool {
		return g.Request.Op == contract.OpGet && g.Outcome == history.OK && g.Invoke.After(completeOf(o)) &&
			g.Response.Generation == o.Response.Generation && !g.Response.HasActiveWork
	})
}

// describeCharge is "ch_7 key=K by w1.1" with the creating request's key.
func (v *view) describeCharge(ch fakes.Charge) (string, []string) {
	r, ok := v.creator("billing", "CreateCharge", ch.Owner, ch.CreatedAt, func(r fakes.Record) bool {
		e := paramString(r, "event")
		return e == "" || e == ch.Event
	})
	if !ok {
		// Tolerate an endpoint named otherwise.
		r, ok = v.creator("billing", "", ch.Owner, ch.CreatedAt, func(r fakes.Record) bool {
			return paramString(r, "event") == ch.Event && ch.Event != ""
		})
	}
	if !ok {
		return ch.ID + " key=? by ?", nil
	}
	var keys []string
	if r.Key != "" {
		keys = []string{r.Key}
	}
	return fmt.Sprintf("%s key=%s by %s", ch.ID, orQ(r.Key), r.Caller), keys
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// opsForEvent: the owner's change ops that may have happened, narrowed to
// the generation the event names when one matches.
func (v *view) opsForEvent(owner, event string) []int {
	ops := v.changeOps(owner)
	if g := generationOf(event); g != 0 {
		var hit []history.Op
		for _, o := range ops {
			if o.Response.Generation == g {
				hit = append(hit, o)
			}
		}
		if len(hit) > 0 {
			ops = hit
		}
	}
	return indexes(ops)
}
