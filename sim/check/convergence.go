package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/history"
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
//     (parked work must say why, visibly);
//   - "parked-after-fix": a parked work item, with its reason: the liveness
//     phase deployed every fix and resumed parked work, so work parked now
//     is stuck.
//
// Ops of "not-converged" are the instance's OK or Info changes answered with
// a generation above ObservedGen.
//
// One rule runs whether or not the run was healed, since it is read from
// the ledger as it happened:
//
//   - "hot-retry": while a bug is deployed (from a deploy-bug event to the
//     deploy-fix event of the same name, or to the end of the history),
//     more than HotRetryLimit requests of one service endpoint for one owner
//     were rejected by an intransient fault (Record.Fault names mode
//     "intransient") in a row: with no operator resume (an OpResume op
//     invoked), no deploy-fix and no fault-off event between two of them,
//     since each of those may release parked work. A rejection made while
//     a link fault was on between its caller and the service (fault-on
//     target "<caller>/<service>") breaks the run instead of counting: the
//     answer may never have reached the worker, which then rightly took
//     the request as lost and retried (a chaos soak on the reference hit
//     this under reset(down)). Work that meets an
//     intransient error must park, visibly, until a fix is deployed; one
//     that keeps retrying is a retry storm against the bug, and its work
//     never shows as parked. Ops is the owner's latest change invoked
//     before the first of those requests.
//   - "parked-without-bug": a worker left a work item parked (its interval's
//     outcome) and no deployed bug was active at any moment of that
//     interval. Intransient means "a bug: wait for its fix"; with no bug
//     deployed, the system took a transient error (a serialization
//     failure, a timeout, a 503) for one, or parked on a bug of its own,
//     and the work waits for an operator although nothing is broken.
func Convergence(in Input) []Violation { return newView(in).convergence() }

// HotRetryLimit is how many requests rejected by a deployed bug, in a row,
// rule "hot-retry" allows for one owner and endpoint: a system that parks
// sends one per release of its parked work.
const HotRetryLimit = 5

func (v *view) convergence() []Violation {
	in := v.in
	out := append(v.hotRetries(), v.parkedWithoutBug()...)
	if !in.Healed {
		return sortViolations(out)
	}
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
		default:
			// Every fix was deployed and the parked work resumed in the
			// liveness phase: parked again, it is stuck.
			out = append(out, Violation{Invariant: InvConvergence, Rule: "parked-after-fix", Instance: w.Key,
				Message: fmt.Sprintf("work item %s (%s) still parked after every fix was deployed and its work resumed, after %d attempts: %s", w.ID, w.Kind, w.Attempts, w.Reason)})
		}
	}
	return sortViolations(out)
}

// parkedWithoutBug is rule "parked-without-bug".
func (v *view) parkedWithoutBug() []Violation {
	events := slices.Clone(v.in.History.Events)
	slices.SortFunc(events, func(a, b history.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	var windows []span
	open := map[string]time.Time{}
	for _, e := range events {
		switch e.Kind {
		case history.EventDeployBug:
			if _, on := open[e.Detail]; !on {
				open[e.Detail] = e.Time
			}
		case history.EventDeployFix:
			if from, on := open[e.Detail]; on {
				windows = append(windows, span{from, e.Time})
				delete(open, e.Detail)
			}
		}
	}
	for _, from := range open {
		windows = append(windows, span{from, forever()})
	}
	var out []Violation
	for _, key := range sortedKeys(v.intervals) {
		for _, iv := range v.intervals[key] {
			if iv.Outcome != "parked" && iv.ReportedOutcome != "parked" {
				continue
			}
			end := endOf(iv)
			if iv.Reported.After(end) {
				end = iv.Reported
			}
			if slices.ContainsFunc(windows, func(w span) bool { return !w.to.Before(iv.Start) && !w.from.After(end) }) {
				continue
			}
			out = append(out, Violation{Invariant: InvConvergence, Rule: "parked-without-bug", Instance: key,
				Message: fmt.Sprintf("worker %s parked item %s (interval #%d, %s to %s) while no bug was deployed: a transient error taken for an intransient one, or a bug of the system's own; the work waits for an operator although nothing is broken",
					iv.Worker, iv.Item, iv.Seq, clock(iv.Start), clock(end))})
		}
	}
	return out
}

// hotRetries is rule "hot-retry".
func (v *view) hotRetries() []Violation {
	events := slices.Clone(v.in.History.Events)
	slices.SortFunc(events, func(a, b history.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	type window struct {
		bug      string
		from, to time.Time
	}
	var windows []window
	var releases []time.Time // moments parked work may have been released
	for i, e := range events {
		switch e.Kind {
		case history.EventDeployBug:
			w := window{bug: e.Detail, from: e.Time, to: forever()}
			for _, f := range events[i+1:] {
				if f.Kind == history.EventDeployFix && f.Detail == e.Detail {
					w.to = f.Time
					break
				}
			}
			windows = append(windows, w)
		case history.EventDeployFix, history.EventFaultOff:
			releases = append(releases, e.Time)
		}
	}
	if len(windows) == 0 {
		return nil
	}
	// Link faults per "<caller>/<service>" target, from each fault-on to
	// the fault-off of the same fault (its detail, maybe followed by
	// " heal"), or to the end of the history.
	links := map[string][]span{}
	for i, e := range events {
		if e.Kind != history.EventFaultOn || !strings.Contains(e.Target, "/") {
			continue
		}
		sp := span{e.Time, forever()}
		for _, f := range events[i+1:] {
			if f.Kind == history.EventFaultOff && f.Target == e.Target && strings.HasPrefix(f.Detail, e.Detail) {
				sp.to = f.Time
				break
			}
		}
		links[e.Target] = append(links[e.Target], sp)
	}
	lossy := func(r fakes.Record) bool {
		end := r.End
		if end.IsZero() || end.Before(r.Start) {
			end = r.Start
		}
		for _, sp := range links[r.Caller+"/"+r.Service] {
			if !sp.from.After(end) && !sp.to.Before(r.Start) {
				return true
			}
		}
		return false
	}
	for _, o := range v.in.History.Ops {
		if o.Request.Op == contract.OpResume {
			releases = append(releases, o.Invoke)
		}
	}
	slices.SortFunc(releases, time.Time.Compare)
	releasedBetween := func(a, b time.Time) bool {
		i, _ := slices.BinarySearchFunc(releases, a, time.Time.Compare)
		for ; i < len(releases) && !releases[i].After(b); i++ {
			if releases[i].After(a) {
				return true
			}
		}
		return false
	}
	var out []Violation
	for _, w := range windows {
		groups := map[string][]fakes.Record{}
		for _, r := range v.records {
			if !rejectedByBug(r) || r.Start.Before(w.from) || !r.Start.Before(w.to) {
				continue
			}
			k := r.Service + " " + r.Endpoint + "\x00" + r.Owner
			groups[k] = append(groups[k], r)
		}
		for _, k := range sortedKeys(groups) {
			rs := groups[k]
			slices.SortStableFunc(rs, func(a, b fakes.Record) int { return a.Start.Compare(b.Start) })
			best, run := []fakes.Record(nil), []fakes.Record(nil)
			for i, r := range rs {
				if i > 0 && releasedBetween(rs[i-1].Start, r.Start) {
					run = nil
				}
				if lossy(r) {
					run = nil
					continue
				}
				run = append(run, r)
				if len(run) > len(best) {
					best = run
				}
			}
			if len(best) <= HotRetryLimit {
				continue
			}
			first, last := best[0], best[len(best)-1]
			var keys []string
			for _, r := range best {
				if r.Key != "" {
					keys = append(keys, r.Key)
				}
			}
			// The change being carried out: the owner's latest one invoked
			// before the storm began.
			var ops []int
			for _, o := range v.changeOps(first.Owner) {
				if !o.Invoke.After(first.Start) {
					ops = []int{o.Index}
				}
			}
			out = append(out, Violation{Invariant: InvConvergence, Rule: "hot-retry", Instance: first.Owner, Keys: keys,
				Ops: ops,
				Message: fmt.Sprintf("%d requests of %s %s rejected by deployed bug %s in a row from %s to %s (by %s), with no resume or fix between them: the work retried an intransient error instead of parking (limit %d)",
					len(best), first.Service, first.Endpoint, w.bug, clock(first.Start), clock(last.Start), callers(best), HotRetryLimit)})
		}
	}
	return out
}

// rejectedByBug reports whether an intransient fault answered the request.
func rejectedByBug(r fakes.Record) bool {
	for m := range strings.SplitSeq(r.Fault, "+") {
		if m == string(fakes.ModeIntransient) {
			return true
		}
	}
	return false
}

func callers(rs []fakes.Record) string {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.Caller] = true
	}
	return strings.Join(sortedKeys(seen), " ")
}
