package check

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/history"
)

// Input is everything the checkers read.
type Input struct {
	History history.Snapshot  `json:"history"`
	Ledger  fakes.Snapshot    `json:"ledger"`
	State   contract.Snapshot `json:"state"`
	// Healed says the liveness phase ran to its end: every fault healed,
	// every fix deployed, crashed workers restarted, and the harness waited
	// (bounded) for the system to settle. The state checks then apply, so a
	// system that did not settle is reported by them (lost work,
	// convergence): once nothing is broken any more, not settling is a bug.
	// Without it (a run cut short before its liveness phase) the state
	// checks are skipped and a clean result is Unknown, not Valid.
	Healed bool `json:"healed"`
	// Observed are violations the scenario itself saw while it ran and that
	// no ledger or state shows afterwards, such as a liveness bound missed
	// while a fault lasted (no other worker took over a stalled item). They
	// are reported as they are, with the checkers' own.
	Observed []Violation `json:"observed,omitempty"`
	// Compacted is set when the history before a valid quiescent
	// checkpoint was forgotten but for what later checks need (Compact);
	// nil: the history is whole.
	Compacted *Compaction `json:"compacted,omitempty"`
}

// Invariant names a property the checkers prove: the first word of every
// violation line.
type Invariant string

// The invariants, in rank order (see checkers).
const (
	InvOrphan        Invariant = "orphan"
	InvDoubleBilling Invariant = "double-billing"
	InvRace          Invariant = "race"
	InvLostWork      Invariant = "lost-work"
	InvConvergence   Invariant = "convergence"
	InvAtMostOnce    Invariant = "at-most-once"
)

// checker is one invariant's checker.
type checker struct {
	inv Invariant
	doc string
	run func(*view) []Violation
}

// checkers is the registry: every invariant with its checker, in rank order
// (violations sort by it, so the first line of a report is the most
// telling). A new invariant is a file with its checker and an entry here.
func checkers() []checker {
	return []checker{
		{InvOrphan, "no VM or deployment outlives its instance, and every live instance owns exactly what its desired state asks for", (*view).orphans},
		{InvDoubleBilling, "every billable event is charged exactly once, and never for a change that did not happen", (*view).doubleBilling},
		{InvRace, "never two workers in one work item or one instance at once, and no change accepted while the instance has active work", (*view).races},
		{InvLostWork, "every accepted change completes", (*view).lostWork},
		{InvConvergence, "once faults stop and fixes are deployed, no work is left, nothing is stuck, desired equals observed", (*view).convergence},
		{InvAtMostOnce, "an effect without idempotency happens at most once per event", (*view).atMostOnce},
	}
}

// InvariantInfo describes one invariant.
type InvariantInfo struct {
	Invariant Invariant `json:"invariant"`
	Doc       string    `json:"doc"`
}

// Invariants lists every invariant, in rank order, with what it proves.
func Invariants() []InvariantInfo {
	var out []InvariantInfo
	for _, c := range checkers() {
		out = append(out, InvariantInfo{Invariant: c.inv, Doc: c.doc})
	}
	return out
}

// ParseInvariant returns the invariant named s.
func ParseInvariant(s string) (Invariant, bool) {
	for _, c := range checkers() {
		if string(c.inv) == s {
			return c.inv, true
		}
	}
	return "", false
}

// Violation is one broken invariant.
type Violation struct {
	Invariant Invariant `json:"invariant"`          // one of the invariants of the registry
	Rule      string    `json:"rule"`               // the exact check, e.g. "duplicate-charge"
	Instance  string    `json:"instance,omitempty"` // owning instance, when there is one
	Keys      []string  `json:"keys,omitempty"`     // idempotency keys / client tokens involved, sorted
	Ops       []int     `json:"ops,omitempty"`      // history op indexes involved, sorted
	Message   string    `json:"message"`            // names the keys and resources involved
}

// String is the violation as one line, e.g.
//
//	double-billing: instance i3: 2 charges for event provision:i3:g1 (ch_7 key=… by w1.1, ch_9 key=… by w2.1); ops [4]
func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(string(v.Invariant))
	b.WriteString(": ")
	if v.Instance != "" {
		b.WriteString("instance ")
		b.WriteString(v.Instance)
		b.WriteString(": ")
	}
	b.WriteString(v.Message)
	if len(v.Ops) > 0 {
		fmt.Fprintf(&b, "; ops %v", v.Ops)
	}
	return b.String()
}

func compareViolations(a, b Violation) int {
	return cmp.Or(
		cmp.Compare(invariantRank(a.Invariant), invariantRank(b.Invariant)),
		cmp.Compare(a.Instance, b.Instance),
		cmp.Compare(a.Rule, b.Rule),
		cmp.Compare(a.Message, b.Message),
		slices.Compare(a.Ops, b.Ops),
		slices.Compare(a.Keys, b.Keys),
	)
}

func invariantRank(inv Invariant) int {
	cs := checkers()
	for i, c := range cs {
		if c.inv == inv {
			return i
		}
	}
	return len(cs)
}

func sortViolations(vs []Violation) []Violation {
	for i := range vs {
		vs[i].Keys = sortedUnique(vs[i].Keys)
		vs[i].Ops = sortedUnique(vs[i].Ops)
	}
	slices.SortFunc(vs, compareViolations)
	return vs
}

// All runs every checker and returns their violations, with the scenario's
// own (Input.Observed), sorted by invariant (in registry order), instance,
// rule and message.
func All(in Input) []Violation {
	return newView(in).all()
}

func (v *view) all() []Violation {
	var vs []Violation
	for _, c := range checkers() {
		vs = append(vs, c.run(v)...)
	}
	for _, o := range v.in.Observed {
		o.Keys, o.Ops = slices.Clone(o.Keys), slices.Clone(o.Ops)
		vs = append(vs, o)
	}
	return sortViolations(vs)
}

// Verdict is the tri-state outcome of a check.
type Verdict string

const (
	Valid   Verdict = "valid"   // healed, settled, and no violation
	Invalid Verdict = "invalid" // at least one violation
	Unknown Verdict = "unknown" // no violation, but the liveness phase did not run: liveness unproven
)

// ExitCode is the Maelstrom-style process exit code: 0 valid, 1 invalid, 2 unknown.
func (v Verdict) ExitCode() int {
	switch v {
	case Valid:
		return 0
	case Invalid:
		return 1
	}
	return 2
}

// Result is the verdict on one run.
type Result struct {
	Verdict    Verdict     `json:"verdict"`
	Violations []Violation `json:"violations,omitempty"`
	// Reached lists the interesting paths the run exercised, in Paths order.
	Reached []string `json:"reached,omitempty"`
	// Reason explains an Unknown verdict.
	Reason string `json:"reason,omitempty"`
}

// Check runs every checker and decides the verdict.
func Check(in Input) Result {
	v := newView(in)
	r := Result{Violations: v.all(), Reached: v.reached()}
	switch {
	case len(r.Violations) > 0:
		r.Verdict = Invalid
	case !in.Healed:
		r.Verdict = Unknown
		r.Reason = "the run ended before its liveness phase: no safety violation found, but lost work and convergence were not checked"
	default:
		r.Verdict = Valid
	}
	return r
}

// HasInvariant reports whether some violation in vs is of invariant: how a
// replay decides it reproduced a failure.
func HasInvariant(vs []Violation, invariant Invariant) bool {
	for _, v := range vs {
		if v.Invariant == invariant {
			return true
		}
	}
	return false
}

// ---- shared view of the input ---------------------------------------------

// forever stands for the end of an open interval or a pending op.
func forever() time.Time { return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }

type view struct {
	in        Input
	inst      map[string]contract.Instance
	ops       map[string][]history.Op // change, get and resume ops by instance, by index
	intervals map[string][]history.Interval
	byWorker  map[string][]history.Interval // by Start
	maxEnd    map[string][]time.Time        // per worker: latest end among byWorker[w][:i+1]
	records   []fakes.Record                // by Seq
	byCaller  map[string][]fakes.Record     // by Start
	byOwner   map[[2]string][]fakes.Record  // by {service, owner}, by Seq
}

func newView(in Input) *view {
	v := &view{
		in:        in,
		inst:      map[string]contract.Instance{},
		ops:       map[string][]history.Op{},
		intervals: map[string][]history.Interval{},
		byWorker:  map[string][]history.Interval{},
		byCaller:  map[string][]fakes.Record{},
		maxEnd:    map[string][]time.Time{},
		byOwner:   map[[2]string][]fakes.Record{},
	}
	for _, i := range in.State.Instances {
		v.inst[i.ID] = i
	}
	ops := slices.Clone(in.History.Ops)
	slices.SortFunc(ops, func(a, b history.Op) int { return cmp.Compare(a.Index, b.Index) })
	for _, o := range ops {
		v.ops[o.Request.Instance] = append(v.ops[o.Request.Instance], o)
	}
	ivs := slices.Clone(in.History.Intervals)
	slices.SortFunc(ivs, func(a, b history.Interval) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, iv := range ivs {
		v.intervals[iv.Key] = append(v.intervals[iv.Key], iv)
		v.byWorker[iv.Worker] = append(v.byWorker[iv.Worker], iv)
	}
	v.records = slices.Clone(in.Ledger.Requests)
	slices.SortFunc(v.records, func(a, b fakes.Record) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Start.Compare(b.Start), strings.Compare(a.Service, b.Service))
	})
	for _, r := range v.records {
		v.byCaller[r.Caller] = append(v.byCaller[r.Caller], r)
		k := [2]string{r.Service, r.Owner}
		v.byOwner[k] = append(v.byOwner[k], r)
	}
	for _, rs := range v.byCaller {
		slices.SortStableFunc(rs, func(a, b fakes.Record) int { return a.Start.Compare(b.Start) })
	}
	for w, ivs := range v.byWorker {
		slices.SortStableFunc(ivs, func(a, b history.Interval) int { return a.Start.Compare(b.Start) })
		maxEnd := make([]time.Time, len(ivs))
		for i, iv := range ivs {
			maxEnd[i] = endOf(iv)
			if i > 0 && maxEnd[i-1].After(maxEnd[i]) {
				maxEnd[i] = maxEnd[i-1]
			}
		}
		v.maxEnd[w] = maxEnd
	}
	return v
}

// outcome treats a pending op as Info: it may or may not have happened.
func outcome(o history.Op) history.Outcome {
	if o.Outcome == history.Pending {
		return history.Info
	}
	return o.Outcome
}

// mayHaveHappened: OK, Info or pending.
func mayHaveHappened(o history.Op) bool { return outcome(o) != history.Fail }

func completeOf(o history.Op) time.Time {
	if o.Complete.IsZero() {
		return forever()
	}
	return o.Complete
}

func endOf(iv history.Interval) time.Time {
	if iv.End.IsZero() {
		return forever()
	}
	return iv.End
}

// changeOps returns the instance's change ops that may have happened.
func (v *view) changeOps(instance string) []history.Op {
	var out []history.Op
	for _, o := range v.ops[instance] {
		if o.IsChange() && mayHaveHappened(o) {
			out = append(out, o)
		}
	}
	return out
}

func indexes(ops []history.Op) []int {
	out := make([]int, 0, len(ops))
	for _, o := range ops {
		out = append(out, o.Index)
	}
	return out
}

// creator finds the ledger record that made an effect at t for owner: an
// effectful request of service (and endpoint, when not empty) that was in
// flight at t. match may narrow further. The first by Seq wins.
func (v *view) creator(service, endpoint, owner string, t time.Time, match func(fakes.Record) bool) (fakes.Record, bool) {
	for _, r := range v.byOwner[[2]string{service, owner}] {
		if !r.Effect {
			continue
		}
		if endpoint != "" && r.Endpoint != endpoint {
			continue
		}
		if t.Before(r.Start) || (!r.End.IsZero() && t.After(r.End)) {
			continue
		}
		if match != nil && !match(r) {
			continue
		}
		return r, true
	}
	return fakes.Record{}, false
}

// paramString reads one string field of a record's JSON params ("" when absent).
func paramString(r fakes.Record, field string) string {
	var m map[string]any
	if json.Unmarshal(r.Params, &m) != nil {
		return ""
	}
	s, _ := m[field].(string)
	return s
}

// isAfterCommit reports whether a service's requests are made after the
// claiming transaction committed (at-most-once effects, fakes.Spec.AtMostOnce),
// so that they are no evidence of the caller being inside a work item.
func (v *view) isAfterCommit(service string) bool {
	return slices.Contains(v.in.Ledger.AtMostOnce, service)
}

// answered reports whether the caller certainly waited for the whole request:
// it got an answer. A dropped connection or a client that left early only
// proves the caller was there when the request arrived.
func answered(r fakes.Record) bool {
	return r.Status != 0 && !strings.Contains(r.Error, "client gone")
}

// span is a stretch of time [from, to]; from == to is a single instant.
type span struct{ from, to time.Time }

// overlaps reports whether two spans certainly share a moment. Equal clock
// readings do not order events, so touching spans, and two instants at the
// same reading, do not overlap; an instant strictly inside a span does.
func overlaps(a, b span) bool {
	lo, hi := a.from, a.to
	if b.from.After(lo) {
		lo = b.from
	}
	if b.to.Before(hi) {
		hi = b.to
	}
	if lo.Before(hi) {
		return true
	}
	if !lo.Equal(hi) {
		return false
	}
	inside := func(p time.Time, s span) bool { return s.from.Before(p) && p.Before(s.to) }
	aPoint, bPoint := a.from.Equal(a.to), b.from.Equal(b.to)
	switch {
	case aPoint && !bPoint:
		return inside(a.from, b)
	case bPoint && !aPoint:
		return inside(b.from, a)
	}
	return false
}

func clock(t time.Time) string {
	if t.Equal(forever()) {
		return "open"
	}
	return t.UTC().Format("15:04:05.000000")
}

func sortedUnique[T cmp.Ordered](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return slices.Compact(xs)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// generationOf reads a "g<N>" part of a colon-separated event name
// ("provision:i3:g1" → 1), or 0.
func generationOf(event string) int64 {
	for part := range strings.SplitSeq(event, ":") {
		if len(part) > 1 && part[0] == 'g' {
			if n, err := strconv.ParseInt(part[1:], 10, 64); err == nil {
				return n
			}
		}
	}
	return 0
}

func describeOp(o history.Op) string {
	s := fmt.Sprintf("op %d %s", o.Index, o.Request.Op)
	if o.Request.Size != "" {
		s += " " + o.Request.Size
	}
	return s
}
