package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/workproof/workproof/fakes"
)

// AtMostOnce checks effects that have no idempotency: rule "duplicate-email",
// two or more emails with the same (non-empty) Email.Event. Each email is
// shown with the caller of the ledger request that sent it.
func AtMostOnce(in Input) []Violation { return newView(in).atMostOnce() }

func (v *view) atMostOnce() []Violation {
	in := v.in
	byEvent := map[string][]fakes.Email{}
	for _, e := range in.Ledger.Emails {
		if e.Event != "" {
			byEvent[e.Event] = append(byEvent[e.Event], e)
		}
	}
	var out []Violation
	for _, ev := range sortedKeys(byEvent) {
		es := byEvent[ev]
		if len(es) < 2 {
			continue
		}
		slices.SortFunc(es, func(a, b fakes.Email) int {
			if c := a.SentAt.Compare(b.SentAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		var descs []string
		for _, e := range es {
			by := "?"
			if r, ok := v.creator("email", "", e.Owner, e.SentAt, nil); ok {
				by = r.Caller
			}
			descs = append(descs, fmt.Sprintf("%s to %s by %s at %s", e.ID, e.To, by, clock(e.SentAt)))
		}
		out = append(out, Violation{Invariant: InvAtMostOnce, Rule: "duplicate-email", Instance: es[0].Owner,
			Ops:     v.opsForEvent(es[0].Owner, ev),
			Message: fmt.Sprintf("%d emails for event %s (%s)", len(es), ev, strings.Join(descs, ", "))})
	}
	return sortViolations(out)
}
