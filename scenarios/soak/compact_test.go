package soak_test

import (
	"context"
	"testing"
	"time"

	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/scenarios/soak"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// On a real history, forgetting at a checkpoint changes no verdict: a
// chaos soak of the reference keeps its whole history; then, for every
// checkpoint, its final check's input is cut at that checkpoint the way
// sim.Env.Compact cuts it (check.Compact's carry of the part before, the
// part after whole), and the checkers must find it valid like the whole.
func TestCompactionAgreesWithWholeHistory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	rep, err := soak.Run(ctx, soak.Options{
		System:     kvx.New(kvx.Options{}),
		SystemName: "kvx",
		Server:     pgenvtest.Server(t),
		Seed:       11,
		Duration:   24 * time.Second,
		CheckEvery: 6 * time.Second,
		Rate:       30,
		// Many instances, so that some live through a window untouched
		// and the carry is what their later checks rest on.
		Instances:    40,
		Faults:       "chaos",
		WholeHistory: true,
	})
	if err != nil {
		t.Fatalf("soak: %v", err)
	}
	if rep.Verdict != check.Valid || rep.Evidence == nil {
		t.Fatalf("verdict %s (%v), want valid with the final check's input", rep.Verdict, rep.Violations)
	}
	whole := *rep.Evidence
	if whole.Compacted != nil {
		t.Fatal("-whole-history run was compacted")
	}
	cut := 0
	for _, cp := range rep.Checkpoints[:len(rep.Checkpoints)-1] {
		// The check ran at the end of the checkpoint's pause, after the
		// system settled: nothing may straddle that moment.
		at := rep.Started.Add(cp.Elapsed.D() + cp.Took.D() - cp.Checked.D())
		before, after, ok := split(whole, at)
		if !ok {
			t.Logf("checkpoint %d: something straddles %s, not quiescent there; skipped", cp.Index, at.Format(time.StampMicro))
			continue
		}
		cut++
		merged := after.Merge(check.Compact(before))
		t.Logf("checkpoint %d at %s: %d ops before, %d carried, %d after", cp.Index, at.Format(time.StampMicro), len(before.History.Ops), len(merged.History.Ops)-len(after.History.Ops), len(after.History.Ops))
		if res := check.Check(merged); res.Verdict != check.Valid {
			t.Errorf("cut at checkpoint %d (%d ops before, %d carried): %s\n%v", cp.Index,
				len(before.History.Ops), len(merged.History.Ops)-len(after.History.Ops), res.Verdict, res.Violations)
		}
	}
	if cut == 0 {
		t.Fatalf("no checkpoint to cut at among %+v", rep.Checkpoints)
	}
}

// split cuts a final input at t into the history before (with the state as
// it was checked then unknown: only its history is needed) and the rest,
// with the ledger's requests after t and the final ledger and state. ok is
// false if an op, an interval or a request straddles t.
func split(in check.Input, t time.Time) (before, after check.Input, ok bool) {
	before.History.Taken = t
	after = in
	after.History = history.Snapshot{Taken: in.History.Taken}
	after.Ledger.Requests = nil
	for _, o := range in.History.Ops {
		switch {
		case !o.Invoke.Before(t):
			after.History.Ops = append(after.History.Ops, o)
		case o.Complete.IsZero() || o.Complete.After(t):
			return before, after, false
		default:
			before.History.Ops = append(before.History.Ops, o)
		}
	}
	for _, iv := range in.History.Intervals {
		switch {
		case !iv.Start.Before(t):
			after.History.Intervals = append(after.History.Intervals, iv)
		case iv.End.IsZero() || iv.End.After(t):
			return before, after, false
		default:
			before.History.Intervals = append(before.History.Intervals, iv)
		}
	}
	for _, e := range in.History.Events {
		if !e.Time.Before(t) {
			after.History.Events = append(after.History.Events, e)
		}
	}
	for _, r := range in.Ledger.Requests {
		switch {
		case !r.Start.Before(t):
			after.Ledger.Requests = append(after.Ledger.Requests, r)
		case r.End.IsZero() || r.End.After(t):
			return before, after, false
		}
	}
	return before, after, true
}
