package check

import (
	"fmt"
	"slices"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/history"
)

// Races checks that no two workers were inside one item or one instance at
// once, and that no change was accepted while another was in progress.
//
// What the recorded times prove. A worker's Begin is called after its claim
// and before its commit; its end func after the commit. So a recorded
// interval [Start, End] is not the claim: it starts late and ends late, and
// two recorded intervals can overlap by a hair although the first worker had
// committed before the second claimed. What is certain is: the worker was
// inside at Start, and while it waited for a provider request made inside
// the interval. The "proven span" of an interval is therefore
// [Start, max(Start, evidence)], where evidence is, over the worker's own
// ledger requests for the interval's key (Record.Owner == Key, not email)
// that arrived within the interval, the request's End when it was answered
// to a waiting client (else its Start), cut at the interval's End (End is
// already cut at a crash or lease loss, so nothing a worker does after it
// lost its lease counts). Two spans overlap when they share a moment strictly
// (equal clock readings do not order events). An interval begun on a
// session a fault was cutting (history.Interval.BegunCut) proves nothing
// while it is open or once it ended in error (LostAtStart): its claim may
// have died before the worker recorded its Begin, and another worker may
// have claimed the freed item since; it has no span, and no request is
// inside it. Rules:
//
//   - "same-item": proven spans of two different worker incarnations inside
//     the same item overlap;
//   - "same-instance": proven spans of two different worker incarnations in
//     different items of the same non-empty key overlap. The key is the
//     Observer's: the instance an item changes, or, for follow-up work that
//     runs beside the instance's next change, contract.FollowUpKey(kind,
//     instance) — compared only with items of that same key;
//   - "concurrent-mutations": two provider mutation requests (Mutation,
//     not email) for one owner by different callers overlap, each taken as
//     [Start, End if answered else Start] and cut at the end of the caller's
//     interval that contains its Start; requests outside every interval of
//     their caller (after a crash or lease loss, or outside any item) are
//     ignored: they are settled by idempotency, not a race;
//   - "same-generation": two OK changes (create, resize, delete) of one
//     instance answered with the same non-zero generation (check-then-act),
//     unless they are identical requests (same op and size) and either
//     creates (an idempotent replay of a create) or the later one answered
//     HasActiveWork=false (a no-op repeat on a quiet instance; a repeat
//     answered while work is active should have been busy);
//   - "accepted-while-active": two OK changes A (invoked first) and B of one
//     instance where the first accepted left active work (A's response has
//     HasActiveWork when A completed before B was invoked; both responses
//     have it when they overlapped) and that work cannot have completed
//     before B was accepted: no interval of the instance that could have
//     committed (outcome other than "retry" or "parked") touches
//     [A.Invoke, max(A.Complete, B.Complete)], and no OK get in that window
//     answered HasActiveWork=false at generation ≥ A's. Completion of a
//     change needs a worker's commit inside an interval, and a commit lies
//     in [Begin, End], so without such an interval it had certainly not
//     completed. Skipped when the history has no interval at all (the
//     system does not call its Observer).
//
// Changes are compared only within one lifetime of an instance id: an OK
// create starts a new lifetime unless it repeats the lifetime's create (same
// size) with no delete that may have happened in between.
func Races(in Input) []Violation { return newView(in).races() }

func (v *view) races() []Violation {
	var out []Violation
	out = append(out, v.intervalRaces()...)
	out = append(out, v.mutationRaces()...)
	out = append(out, v.acceptRaces()...)
	return sortViolations(out)
}

type proven struct {
	iv   history.Interval
	s    span
	keys []string
}

func (v *view) provenSpan(iv history.Interval) proven {
	end := endOf(iv)
	p := proven{iv: iv, s: span{iv.Start, iv.Start}}
	rs := v.byCaller[iv.Worker]
	first, _ := slices.BinarySearchFunc(rs, iv.Start, func(r fakes.Record, t time.Time) int { return r.Start.Compare(t) })
	for _, r := range rs[first:] {
		if r.Start.After(end) {
			break
		}
		if r.Owner != iv.Key || v.isAfterCommit(r.Service) {
			continue
		}
		e := evidenceEnd(r)
		if e.After(end) {
			e = end
		}
		if e.After(p.s.to) {
			p.s.to = e
		}
		if r.Key != "" {
			p.keys = append(p.keys, r.Key)
		}
	}
	return p
}

// unproven reports whether an interval proves no presence at all (see
// Races): lost at its start, or begun on a cut session and still open.
func unproven(iv history.Interval) bool { return iv.LostAtStart || (iv.BegunCut && iv.Open()) }

// evidenceEnd is the last moment a request proves its caller was waiting.
func evidenceEnd(r fakes.Record) time.Time {
	if answered(r) && !r.End.IsZero() && r.End.After(r.Start) {
		return r.End
	}
	return r.Start
}

func (v *view) intervalRaces() []Violation {
	var out []Violation
	for _, key := range sortedKeys(v.intervals) {
		ivs := v.intervals[key]
		// Items without a key are about no instance: only the same item
		// twice is a race among them.
		ps := make([]proven, 0, len(ivs))
		for _, iv := range ivs {
			if !unproven(iv) {
				ps = append(ps, v.provenSpan(iv))
			}
		}
		slices.SortStableFunc(ps, func(a, b proven) int { return a.s.from.Compare(b.s.from) })
		for i := range ps {
			// Sorted by start: once a span starts after ps[i] ends, no later one overlaps it.
			for j := i + 1; j < len(ps) && !ps[j].s.from.After(ps[i].s.to); j++ {
				a, b := ps[i], ps[j]
				if a.iv.Worker == b.iv.Worker || (key == "" && a.iv.Item != b.iv.Item) || !overlaps(a.s, b.s) {
					continue
				}
				rule, what := "same-instance", "items of one instance"
				if a.iv.Item == b.iv.Item {
					rule, what = "same-item", "item "+a.iv.Item
				}
				out = append(out, Violation{
					Invariant: InvRace, Rule: rule, Instance: key,
					Keys: append(append([]string{}, a.keys...), b.keys...),
					Message: fmt.Sprintf("two workers inside %s at once: %s and %s",
						what, describeProven(a), describeProven(b)),
				})
			}
		}
	}
	return out
}

func describeProven(p proven) string {
	return fmt.Sprintf("%s in item %s (interval #%d, inside from %s until at least %s, recorded end %s %s)",
		p.iv.Worker, p.iv.Item, p.iv.Seq, clock(p.s.from), clock(p.s.to), clock(endOf(p.iv)), orQ(p.iv.Outcome))
}

type mutation struct {
	r fakes.Record
	s span
}

func (v *view) mutationRaces() []Violation {
	byOwner := map[string][]mutation{}
	for _, r := range v.records {
		if !r.Mutation || r.Owner == "" || v.isAfterCommit(r.Service) {
			continue
		}
		end, ok := v.insideEnd(r)
		if !ok {
			continue
		}
		e := evidenceEnd(r)
		if e.After(end) {
			e = end
		}
		byOwner[r.Owner] = append(byOwner[r.Owner], mutation{r: r, s: span{r.Start, e}})
	}
	var out []Violation
	for _, owner := range sortedKeys(byOwner) {
		ms := byOwner[owner]
		slices.SortStableFunc(ms, func(a, b mutation) int { return a.s.from.Compare(b.s.from) })
		for i := range ms {
			for j := i + 1; j < len(ms) && !ms[j].s.from.After(ms[i].s.to); j++ {
				a, b := ms[i], ms[j]
				if a.r.Caller == b.r.Caller || !overlaps(a.s, b.s) {
					continue
				}
				var keys []string
				for _, k := range []string{a.r.Key, b.r.Key} {
					if k != "" {
						keys = append(keys, k)
					}
				}
				out = append(out, Violation{
					Invariant: InvRace, Rule: "concurrent-mutations", Instance: owner, Keys: keys,
					Message: fmt.Sprintf("provider mutations by two workers overlap: %s and %s",
						describeMutation(a), describeMutation(b)),
				})
			}
		}
	}
	return out
}

// insideEnd returns the latest end of the caller's intervals that contain
// the request's arrival, and whether there is one.
func (v *view) insideEnd(r fakes.Record) (time.Time, bool) {
	var end time.Time
	found := false
	ivs, maxEnd := v.byWorker[r.Caller], v.maxEnd[r.Caller]
	// The intervals that started at or before the request, latest first,
	// until none of the earlier ones ends late enough to contain it.
	n, _ := slices.BinarySearchFunc(ivs, r.Start, func(iv history.Interval, t time.Time) int {
		if iv.Start.After(t) {
			return 1
		}
		return -1
	})
	for k := n - 1; k >= 0 && !maxEnd[k].Before(r.Start); k-- {
		iv := ivs[k]
		e := endOf(iv)
		if r.Start.After(e) || unproven(iv) {
			continue
		}
		if !found || e.After(end) {
			end, found = e, true
		}
	}
	return end, found
}

func describeMutation(m mutation) string {
	return fmt.Sprintf("%s %s %s key=%s (#%d, %s to %s)",
		m.r.Caller, m.r.Service, m.r.Endpoint, orQ(m.r.Key), m.r.Seq, clock(m.s.from), clock(m.s.to))
}

type lived struct {
	op   history.Op
	life int
}

// lifetimes returns the instance's OK changes, each with its lifetime number.
func (v *view) lifetimes(instance string) []lived {
	var out []lived
	life := 0
	var lifeCreate *history.Op
	deleteSince := false
	for _, o := range v.ops[instance] {
		if !o.IsChange() || !mayHaveHappened(o) {
			continue
		}
		if o.Request.Op == contract.OpDelete {
			deleteSince = true
		}
		if o.Outcome != history.OK {
			continue
		}
		if o.Request.Op == contract.OpCreate {
			replay := lifeCreate != nil && !deleteSince && lifeCreate.Request.Size == o.Request.Size
			first := lifeCreate == nil && !deleteSince
			if !replay && !first {
				life++
			}
			if !replay {
				c := o
				lifeCreate = &c
			}
			deleteSince = false
		}
		out = append(out, lived{op: o, life: life})
	}
	return out
}

func identical(a, b history.Op) bool {
	return a.Request.Op == b.Request.Op && a.Request.Size == b.Request.Size
}

func (v *view) acceptRaces() []Violation {
	var out []Violation
	for _, inst := range sortedKeys(v.ops) {
		ls := v.lifetimes(inst)
		exempt := func(a, b history.Op) bool {
			return a.Response.Generation == b.Response.Generation && identical(a, b) &&
				(a.Request.Op == contract.OpCreate || !b.Response.HasActiveWork)
		}
		// Same generation: compare within groups of one lifetime and generation.
		groups := map[[2]int64][]history.Op{}
		for _, l := range ls {
			if l.op.Response.Generation == 0 {
				continue
			}
			k := [2]int64{int64(l.life), l.op.Response.Generation}
			for _, a := range groups[k] {
				if exempt(a, l.op) {
					continue // an idempotent replay, or a no-op repeat on a quiet instance
				}
				out = append(out, Violation{
					Invariant: InvRace, Rule: "same-generation", Instance: inst, Ops: []int{a.Index, l.op.Index},
					Message: fmt.Sprintf("two accepted changes answered with generation %d (%s, %s): check-then-act",
						a.Response.Generation, describeOp(a), describeOp(l.op)),
				})
			}
			groups[k] = append(groups[k], l.op)
		}
		// Accepted while active: each change against the changes that
		// overlapped it and the first later one that itself left work (if the
		// first change's work outlived a later acceptance, it outlived that
		// one's too).
		for i := range ls {
			a := ls[i].op
			for j := i + 1; j < len(ls) && ls[j].life == ls[i].life; j++ {
				b := ls[j].op
				concurrent := b.Invoke.Before(completeOf(a))
				replayOrSameGen := a.Response.Generation == b.Response.Generation &&
					(exempt(a, b) || a.Response.Generation != 0)
				if msg, ok := v.acceptedWhileActive(inst, a, b); ok && !replayOrSameGen {
					out = append(out, Violation{
						Invariant: InvRace, Rule: "accepted-while-active", Instance: inst, Ops: []int{a.Index, b.Index},
						Message: msg,
					})
				}
				if !concurrent && b.Response.HasActiveWork {
					break
				}
			}
		}
	}
	return out
}

func (v *view) acceptedWhileActive(inst string, a, b history.Op) (string, bool) {
	if len(v.in.History.Intervals) == 0 && (v.in.Compacted == nil || !v.in.Compacted.Intervals) {
		return "", false // the system does not report its items: completion cannot be judged
	}
	if c := v.in.Compacted; c != nil && a.Invoke.Before(c.Since) {
		// Accepted before a quiescent point, where its work was complete:
		// a b accepted before it too was judged then, one after it came
		// after the work. The intervals that showed it are forgotten.
		return "", false
	}
	sequential := completeOf(a).Before(b.Invoke)
	if !a.Response.HasActiveWork || (!sequential && !b.Response.HasActiveWork) {
		return "", false
	}
	t0, t1 := a.Invoke, completeOf(a)
	if completeOf(b).After(t1) {
		t1 = completeOf(b)
	}
	for _, iv := range v.intervals[inst] {
		if iv.Outcome == "retry" || iv.Outcome == "parked" {
			continue
		}
		if !endOf(iv).Before(t0) && !iv.Start.After(t1) {
			return "", false // a worker may have completed the first change in time
		}
	}
	for _, g := range v.ops[inst] {
		if g.Request.Op != contract.OpGet || g.Outcome != history.OK || g.Response.HasActiveWork {
			continue
		}
		if g.Response.Generation >= a.Response.Generation && !completeOf(g).Before(t0) && !g.Invoke.After(t1) {
			return "", false // the system itself showed no active work in the window
		}
	}
	if sequential {
		return fmt.Sprintf("%s accepted (generation %d) while the work of %s (generation %d) had not completed: no worker was in an item of the instance from %s to %s",
			describeOp(b), b.Response.Generation, describeOp(a), a.Response.Generation, clock(t0), clock(t1)), true
	}
	return fmt.Sprintf("%s (generation %d) and %s (generation %d) both accepted, each leaving active work, and no worker was in an item of the instance from %s to %s",
		describeOp(a), a.Response.Generation, describeOp(b), b.Response.Generation, clock(t0), clock(t1)), true
}
