package check

import (
	"fmt"
	"strings"

	"github.com/workproof/workproof/fakes"
)

// AtMostOnce checks effects that have no idempotency (the services named in
// Ledger.AtMostOnce, such as email): rule "duplicate-effect", two or more
// effectful requests of one such service for the same (non-empty)
// Record.Event. Each is shown with its caller and time.
func AtMostOnce(in Input) []Violation { return newView(in).atMostOnce() }

func (v *view) atMostOnce() []Violation {
	type key struct{ service, event string }
	groups := map[key][]fakes.Record{}
	var order []key
	for _, r := range v.records { // by Seq
		if !r.Effect || !r.Mutation || r.Event == "" || !v.isAfterCommit(r.Service) {
			continue
		}
		k := key{r.Service, r.Event}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []Violation
	for _, k := range order {
		rs := groups[k]
		if len(rs) < 2 {
			continue
		}
		var descs []string
		for _, r := range rs {
			descs = append(descs, fmt.Sprintf("#%d by %s at %s", r.Seq, r.Caller, clock(r.Start)))
		}
		out = append(out, Violation{Invariant: InvAtMostOnce, Rule: "duplicate-effect", Instance: rs[0].Owner,
			Ops:     v.opsForEvent(rs[0].Owner, k.event),
			Message: fmt.Sprintf("%d %s %s requests took effect for event %s (%s)", len(rs), k.service, rs[0].Endpoint, k.event, strings.Join(descs, ", "))})
	}
	return sortViolations(out)
}
