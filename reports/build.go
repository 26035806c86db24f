package reports

import (
	"slices"
	"sort"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
)

// CountRequests counts the user requests of a history by how they ended.
// Operator requests (resume) are not user requests and are not counted.
func CountRequests(h history.Snapshot) Requests {
	var r Requests
	for _, o := range h.Ops {
		if o.Request.Op == contract.OpResume {
			continue
		}
		r.Sent++
		if !o.IsChange() {
			r.Gets++
			continue
		}
		r.Changes++
		switch o.Outcome {
		case history.OK:
			r.Accepted++
		case history.Fail:
			if o.ErrKind == history.ErrKindBusy {
				r.Busy++
			} else {
				r.Rejected++
			}
		default:
			r.Unknown++
		}
	}
	return r
}

// CountWork counts a history's item intervals by how they ended.
func CountWork(h history.Snapshot) Work {
	var w Work
	for _, iv := range h.Intervals {
		w.Entered++
		switch iv.Outcome {
		case "done":
			w.Done++
		case "retry":
			w.Retried++
		case "parked":
			w.Parked++
		case history.IntervalCrashed, history.IntervalLeaseLost:
			w.Cut++
		case "":
			// still open
		default:
			w.Errored++
		}
	}
	return w
}

// CrashPoints counts the crashes that fired by point, sorted by point.
// Kills (crash.Gate.Freeze) have no point and are left out.
func CrashPoints(hits []crash.Hit) []Count {
	m := map[string]int{}
	for _, h := range hits {
		if h.Rule == "kill" {
			continue
		}
		m[h.Point]++
	}
	return Counts(m)
}

// Counts turns a map of counts into a list sorted by name (nil when empty).
func Counts(m map[string]int) []Count {
	if len(m) == 0 {
		return nil
	}
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Name: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Unreached returns the paths of check.Paths that are not in reached, in
// check.Paths order.
func Unreached(reached []string) []string {
	var out []string
	for _, p := range check.Paths() {
		if !slices.Contains(reached, p) {
			out = append(out, p)
		}
	}
	return out
}

// ThroughputOf divides the counts by the traffic time (zero when it is).
func ThroughputOf(r Requests, w Work, traffic time.Duration) Throughput {
	s := traffic.Seconds()
	if s <= 0 {
		return Throughput{}
	}
	return Throughput{
		RequestsPerS: float64(r.Sent) / s,
		ChangesPerS:  float64(r.Accepted) / s,
		WorkPerS:     float64(w.Done) / s,
	}
}

// Merge adds the violations a checkpoint found to the report, each once:
// a violation already found by an earlier checkpoint (the checks read the
// whole history, so they find it again) keeps its first checkpoint. It
// returns how many were new.
func (r *Report) Merge(cp Checkpoint, vs []check.Violation) int {
	seen := make(map[string]bool, len(r.Violations))
	for _, v := range r.Violations {
		seen[v.Line] = true
	}
	n := 0
	for _, v := range vs {
		line := v.String()
		if seen[line] {
			continue
		}
		seen[line] = true
		r.Violations = append(r.Violations, Violation{Violation: v, Line: line, Checkpoint: cp.Index, At: cp.At})
		n++
	}
	return n
}

// Observe fills the parts of the report that come from what a check read:
// request and work counts, crash points, points passed and the paths
// reached (check.Result.Reached), and throughput over the traffic time.
func (r *Report) Observe(res sim.Result) {
	r.Requests = CountRequests(res.Input.History)
	r.Work = CountWork(res.Input.History)
	r.CrashPoints = CrashPoints(res.Crashes)
	r.PointsPassed = len(res.Points)
	r.Reached = slices.Clone(res.Reached)
	r.Unreached = Unreached(res.Reached)
	r.Throughput = ThroughputOf(r.Requests, r.Work, r.TrafficTime.D())
}
