package check

import (
	"slices"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim/history"
)

// Compaction says that an input carries only part of the history before a
// checkpoint that was proven valid at a quiescent point: every fault
// healed, the system settled with no active work, nothing in flight. What
// happened wholly before Since was decided then; the input keeps of it only
// the ops that later checks still judge against the state (see Compact).
type Compaction struct {
	// Since is when the proving check's history was taken.
	Since time.Time `json:"since"`
	// Intervals says the forgotten history had worker intervals: the system
	// reports its items, so rules that need them still apply to a window
	// that has none yet.
	Intervals bool `json:"intervals,omitempty"`
}

// Compact returns the carry of in, an input whose check was Valid and was
// taken at a quiescent point: the ops of in's history that a later check of
// the same run still needs once the rest of the history before in was
// forgotten. Its History holds those ops only, and Compacted says since
// when; the ledger's requests, the intervals and the events are left out,
// since every rule on them compares things that overlap in time, and
// nothing before a quiescent point overlaps anything after it.
//
// The ops kept are, per instance, those of its last lifetime: every op that
// may have happened (OK, Info, pending) or is an OK get, and did not
// complete before the last create that may have happened was invoked, nor
// before any op so kept was invoked. Lost work and missing charges judge
// these against the state, which later changes go on moving; a charge
// needs its owner's create; and an op that completed before a kept one was
// invoked cannot be what a later check needs to explain it (mayFollow).
// Ops of an instance with no create that may have happened are dropped:
// nothing of it can exist. Races between ops accepted before Since are not
// judged again (see acceptRaces).
func Compact(in Input) Input {
	byInst := map[string][]history.Op{}
	for _, o := range in.History.Ops {
		byInst[o.Request.Instance] = append(byInst[o.Request.Instance], o)
	}
	var kept []history.Op
	for _, id := range sortedKeys(byInst) {
		kept = append(kept, lastLifetime(byInst[id])...)
	}
	slices.SortFunc(kept, func(a, b history.Op) int { return a.Index - b.Index })
	c := Compaction{Since: in.History.Taken, Intervals: len(in.History.Intervals) > 0}
	if in.Compacted != nil {
		c.Intervals = c.Intervals || in.Compacted.Intervals
	}
	return Input{History: history.Snapshot{Ops: kept, Taken: in.History.Taken}, Compacted: &c}
}

// lastLifetime is Compact's choice among one instance's ops.
func lastLifetime(ops []history.Op) []history.Op {
	relevant := func(o history.Op) bool {
		if o.Request.Op == contract.OpGet {
			return o.Outcome == history.OK
		}
		return o.IsChange() && mayHaveHappened(o)
	}
	var cut time.Time
	for _, o := range ops {
		if o.Request.Op == contract.OpCreate && mayHaveHappened(o) && (cut.IsZero() || o.Invoke.After(cut)) {
			cut = o.Invoke
		}
	}
	if cut.IsZero() {
		return nil
	}
	for moved := true; moved; {
		moved = false
		for _, o := range ops {
			if relevant(o) && !completeOf(o).Before(cut) && o.Invoke.Before(cut) {
				cut, moved = o.Invoke, true
			}
		}
	}
	var out []history.Op
	for _, o := range ops {
		if relevant(o) && !completeOf(o).Before(cut) {
			out = append(out, o)
		}
	}
	return out
}

// Merge returns in with carry's ops before its own and carry's compaction:
// the input a check of a compacted run reads.
func (in Input) Merge(carry Input) Input {
	if carry.Compacted == nil {
		return in
	}
	c := *carry.Compacted
	in.Compacted = &c
	in.History.Ops = append(slices.Clone(carry.History.Ops), in.History.Ops...)
	return in
}
