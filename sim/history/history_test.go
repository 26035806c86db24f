package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim/history"
)

// stepClock advances by one millisecond on every reading, so that every
// recorded time is distinct and predictable.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *stepClock {
	return &stepClock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// advance moves the clock on by d.
func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func ms(n int) time.Time { return time.Date(2026, 11, 29, 10, 0, 0, n*int(time.Millisecond), time.UTC) }

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		out  history.Outcome
		kind string
	}{
		{nil, history.OK, ""},
		{contract.ErrBusy, history.Fail, history.ErrKindBusy},
		{fmt.Errorf("serve: %w", contract.ErrBusy), history.Fail, history.ErrKindBusy},
		{fmt.Errorf("x: %w", contract.ErrNotFound), history.Fail, history.ErrKindNotFound},
		{contract.ErrExists, history.Fail, history.ErrKindExists},
		{contract.ErrInvalid, history.Fail, history.ErrKindInvalid},
		{context.DeadlineExceeded, history.Info, history.ErrKindUnknown},
		{errors.New("unexpected EOF"), history.Info, history.ErrKindUnknown},
	}
	for _, c := range cases {
		out, kind := history.Classify(c.err)
		if out != c.out || kind != c.kind {
			t.Errorf("Classify(%v) = %q, %q; want %q, %q", c.err, out, kind, c.out, c.kind)
		}
	}
}

func TestOps(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	create := contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}
	resize := contract.Request{Op: contract.OpResize, Instance: "i1", Size: "large"}
	i0 := r.Invoke("c1", create)                                                     // t1
	i1 := r.Invoke("c2", resize)                                                     // t2
	r.Complete(i1, contract.Response{Generation: 9}, contract.ErrBusy)               // t3
	r.Complete(i0, contract.Response{Instance: "i1", Generation: 1}, nil)            // t4
	r.Complete(i0, contract.Response{Generation: 7}, errors.New("late"))             // ignored
	r.Complete(42, contract.Response{}, nil)                                         // ignored
	_, err := r.Do("c3", resize, func(contract.Request) (contract.Response, error) { // t5, t6
		return contract.Response{Generation: 2}, context.DeadlineExceeded
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do returned %v", err)
	}
	i3 := r.Invoke("c4", contract.Request{Op: contract.OpGet, Instance: "i1"}) // t7, left pending

	got := r.Snapshot() // Taken t8
	want := history.Snapshot{
		Ops: []history.Op{
			{Index: 0, Client: "c1", Request: create, Invoke: ms(1), Complete: ms(4), Outcome: history.OK,
				Response: contract.Response{Instance: "i1", Generation: 1}},
			{Index: 1, Client: "c2", Request: resize, Invoke: ms(2), Complete: ms(3), Outcome: history.Fail,
				Response: contract.Response{Generation: 9}, ErrKind: history.ErrKindBusy, Error: contract.ErrBusy.Error()},
			{Index: 2, Client: "c3", Request: resize, Invoke: ms(5), Complete: ms(6), Outcome: history.Info,
				ErrKind: history.ErrKindUnknown, Error: context.DeadlineExceeded.Error()},
			{Index: i3, Client: "c4", Request: contract.Request{Op: contract.OpGet, Instance: "i1"}, Invoke: ms(7)},
		},
		Intervals: []history.Interval{},
		Events:    []history.Event{},
		Taken:     ms(8),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("snapshot (-want +got):\n%s", d)
	}
	if !got.Ops[0].IsChange() || got.Ops[3].IsChange() {
		t.Errorf("IsChange: create %t, get %t", got.Ops[0].IsChange(), got.Ops[3].IsChange())
	}
}

func TestIntervalsCrashAndLeaseLoss(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	obs1, obs2 := r.Observer("w1.1"), r.Observer("w2.1")
	end1 := obs1.Begin("7", "i1")                                                  // t1
	end2 := obs2.Begin("8", "i2")                                                  // t2
	end2("done")                                                                   // t3
	end2("retry")                                                                  // ignored: once
	end3 := obs2.Begin("9", "i2")                                                  // t4
	r.Crash("w1.1", "sql:COMMIT")                                                  // t5: ends interval 0
	end1("done")                                                                   // t6: too late, kept as Reported
	late := obs1.Begin("10", "i1")                                                 // t7: a crashed incarnation is inside nothing
	late("done")                                                                   // t8
	r.LeaseLost("w2.1", "blackhole w2.1/db")                                       // t9: ends interval 2
	end3("error")                                                                  // t10
	end4 := obs2.Begin("11", "i3")                                                 // t11: after the lease loss, a new claim
	r.FaultOn("w2.1/db", "blackhole")                                              // t12
	r.FaultOff("w2.1/db", "blackhole")                                             // t13
	r.DeployBug("bug-1")                                                           // t14
	r.DeployFix("bug-1")                                                           // t15
	r.Note(history.Event{Kind: "restart", Worker: "w1.2", Seq: 99, Time: ms(999)}) // t16
	got := r.Snapshot()                                                            // t17
	_ = end4

	wantIv := []history.Interval{
		{Seq: 0, Worker: "w1.1", Item: "7", Key: "i1", Start: ms(1), End: ms(5), Outcome: history.IntervalCrashed,
			Reported: ms(6), ReportedOutcome: "done"},
		{Seq: 1, Worker: "w2.1", Item: "8", Key: "i2", Start: ms(2), End: ms(3), Outcome: "done"},
		{Seq: 2, Worker: "w2.1", Item: "9", Key: "i2", Start: ms(4), End: ms(9), Outcome: history.IntervalLeaseLost,
			Reported: ms(10), ReportedOutcome: "error"},
		{Seq: 3, Worker: "w1.1", Item: "10", Key: "i1", Start: ms(7), End: ms(7), Outcome: history.IntervalCrashed,
			Reported: ms(8), ReportedOutcome: "done"},
		{Seq: 4, Worker: "w2.1", Item: "11", Key: "i3", Start: ms(11), BegunCut: true}, // the lease-cutting fault has not acted
	}
	wantEv := []history.Event{
		{Seq: 0, Time: ms(5), Kind: history.EventCrash, Worker: "w1.1", Detail: "sql:COMMIT"},
		{Seq: 1, Time: ms(9), Kind: history.EventLeaseLost, Worker: "w2.1", Detail: "blackhole w2.1/db"},
		{Seq: 2, Time: ms(12), Kind: history.EventFaultOn, Target: "w2.1/db", Detail: "blackhole"},
		{Seq: 3, Time: ms(13), Kind: history.EventFaultOff, Target: "w2.1/db", Detail: "blackhole"},
		{Seq: 4, Time: ms(14), Kind: history.EventDeployBug, Detail: "bug-1"},
		{Seq: 5, Time: ms(15), Kind: history.EventDeployFix, Detail: "bug-1"},
		{Seq: 6, Time: ms(16), Kind: "restart", Worker: "w1.2"},
	}
	if d := cmp.Diff(wantIv, got.Intervals); d != "" {
		t.Errorf("intervals (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantEv, got.Events); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if !got.Intervals[4].Open() || got.Intervals[0].Open() {
		t.Errorf("Open: %t %t", got.Intervals[4].Open(), got.Intervals[0].Open())
	}
}

func TestSnapshotIsACopyAndJSON(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	i := r.Invoke("c1", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"})
	end := r.Begin("w1.1", "1", "i1")
	r.Crash("w9.1", "cloud:CreateVM")
	before := r.Snapshot()
	r.Complete(i, contract.Response{Generation: 1}, nil)
	end("done")
	r.DeployFix("x")
	if before.Ops[0].Outcome != history.Pending || !before.Intervals[0].Open() || len(before.Events) != 1 {
		t.Fatalf("snapshot changed after later recording: %+v", before)
	}
	after := r.Snapshot()
	b, err := json.Marshal(after)
	if err != nil {
		t.Fatal(err)
	}
	var back history.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(after, back); d != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", d)
	}
}

// View sees what Snapshot would copy, as it is at the call.
func TestViewSeesTheHistoryNow(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	i := r.Invoke("c1", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"})
	end := r.Begin("w1.1", "1", "i1")
	r.Complete(i, contract.Response{Generation: 1}, nil)
	end("done")
	r.Crash("w9.1", "cloud:CreateVM")
	var seen history.Snapshot
	r.View(func(h history.Snapshot) {
		seen = history.Snapshot{Ops: slices.Clone(h.Ops), Intervals: slices.Clone(h.Intervals), Events: slices.Clone(h.Events), Taken: h.Taken}
	})
	want := r.Snapshot()
	if !seen.Taken.Before(want.Taken) {
		t.Errorf("View taken at %v, not before the later Snapshot's %v", seen.Taken, want.Taken)
	}
	seen.Taken = want.Taken // the test clock ticks on every read
	if d := cmp.Diff(want, seen); d != "" {
		t.Errorf("View differs from Snapshot (-snapshot +view):\n%s", d)
	}
}

func TestDefaultClock(t *testing.T) {
	r := history.New(history.Options{})
	r.Invoke("c", contract.Request{Op: contract.OpGet, Instance: "i"})
	if s := r.Snapshot(); s.Ops[0].Invoke.IsZero() || s.Taken.Before(s.Ops[0].Invoke) {
		t.Errorf("wall clock not used: %+v", s)
	}
}

func TestConcurrentRecording(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	const workers, n = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			name := fmt.Sprintf("w%d.1", w)
			obs := r.Observer(name)
			for k := range n {
				i := r.Invoke(name, contract.Request{Op: contract.OpResize, Instance: "i1", Size: "small"})
				end := obs.Begin(fmt.Sprint(k), "i1")
				if k == n/2 {
					r.LeaseLost(name, "reset")
				}
				end("done")
				r.Complete(i, contract.Response{}, nil)
				_ = r.Snapshot()
			}
		})
	}
	wg.Wait()
	s := r.Snapshot()
	if len(s.Ops) != workers*n || len(s.Intervals) != workers*n || len(s.Events) != workers {
		t.Fatalf("got %d ops, %d intervals, %d events", len(s.Ops), len(s.Intervals), len(s.Events))
	}
	for i, o := range s.Ops {
		if o.Index != i || o.Outcome != history.OK || !o.Invoke.Before(o.Complete) {
			t.Fatalf("op %d: %+v", i, o)
		}
	}
	lost := 0
	for i, iv := range s.Intervals {
		if iv.Seq != i || iv.Open() || iv.End.Before(iv.Start) {
			t.Fatalf("interval %d: %+v", i, iv)
		}
		if iv.Outcome == history.IntervalLeaseLost {
			lost++
		}
	}
	if lost != workers {
		t.Errorf("%d lease-lost intervals, want %d", lost, workers)
	}
}

// A worker can claim on a session a fault is cutting, and record its Begin
// after the lease loss was recorded (seen in a network gate on the
// reference: terminate-backend, then a claim on the dying session, then
// another worker claiming the freed item). Such an interval ends in error
// and counts as lost from its start; one whose commit succeeded, or one
// begun after the window, keeps its outcome.
func TestIntervalBegunOnACutSession(t *testing.T) {
	c := newClock()
	r := history.New(history.Options{Clock: c})
	obs := r.Observer("w1.1")
	acted := r.LeaseLost("w1.1", "terminate-backend") // t1
	doomed := obs.Begin("1", "i1")                    // t2
	doomed("error")                                   // t3
	committed := obs.Begin("2", "i1")                 // t4
	committed("done")                                 // t5
	acted()                                           // t6: the window closes LeaseGrace later
	late := obs.Begin("3", "i1")                      // t7
	late("error")                                     // t8
	c.advance(history.LeaseGrace)
	after := obs.Begin("4", "i1") // t9 + grace
	after("error")                // t10 + grace
	other := r.Observer("w2.1").Begin("5", "i2")
	other("error")

	got := r.Snapshot().Intervals
	g := history.LeaseGrace
	want := []history.Interval{
		{Seq: 0, Worker: "w1.1", Item: "1", Key: "i1", Start: ms(2), End: ms(2), Outcome: history.IntervalLeaseLost,
			Reported: ms(3), ReportedOutcome: "error", BegunCut: true, LostAtStart: true},
		{Seq: 1, Worker: "w1.1", Item: "2", Key: "i1", Start: ms(4), End: ms(5), Outcome: "done", BegunCut: true},
		{Seq: 2, Worker: "w1.1", Item: "3", Key: "i1", Start: ms(7), End: ms(7), Outcome: history.IntervalLeaseLost,
			Reported: ms(8), ReportedOutcome: "error", BegunCut: true, LostAtStart: true},
		{Seq: 3, Worker: "w1.1", Item: "4", Key: "i1", Start: ms(9).Add(g), End: ms(10).Add(g), Outcome: "error"},
		{Seq: 4, Worker: "w2.1", Item: "5", Key: "i2", Start: ms(11).Add(g), End: ms(12).Add(g), Outcome: "error"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("intervals (-want +got):\n%s", d)
	}
}

func TestForgetDropsEndedPrefix(t *testing.T) {
	r := history.New(history.Options{Clock: newClock()})
	a := r.Invoke("c1", contract.Request{Op: contract.OpCreate, Instance: "i1"})
	b := r.Invoke("c1", contract.Request{Op: contract.OpGet, Instance: "i1"})
	c := r.Invoke("c1", contract.Request{Op: contract.OpGet, Instance: "i1"})
	r.Complete(a, contract.Response{Generation: 1}, nil)
	r.Complete(c, contract.Response{Generation: 1}, nil)
	r.Begin("w1.1", "1", "i1")("done")
	open := r.Begin("w1.1", "2", "i1")
	r.DeployBug("b1")
	mark := history.MarkOf(r.Snapshot())
	late := r.Invoke("c2", contract.Request{Op: contract.OpGet, Instance: "i1"})

	forgot := r.Forget(mark)
	if len(forgot.Ops) != 1 || forgot.Ops[0].Index != a || len(forgot.Intervals) != 1 || len(forgot.Events) != 1 {
		t.Fatalf("forgot %+v: want op %d (the first, up to the pending one), interval 0 and the event", forgot, a)
	}
	r.Complete(b, contract.Response{Generation: 1}, nil)
	r.Complete(a, contract.Response{Generation: 9}, nil) // forgotten: ignored
	open("done")
	r.Complete(late, contract.Response{}, nil)
	s := r.Snapshot()
	var idx []int
	for _, o := range s.Ops {
		if o.Outcome != history.OK {
			t.Errorf("op %d: %s after Forget, want ok", o.Index, o.Outcome)
		}
		idx = append(idx, o.Index)
	}
	if want := []int{b, c, late}; !slices.Equal(idx, want) {
		t.Errorf("ops kept %v, want %v", idx, want)
	}
	if len(s.Intervals) != 1 || s.Intervals[0].Seq != 1 || s.Intervals[0].Outcome != "done" {
		t.Errorf("intervals kept %+v, want #1 ended done", s.Intervals)
	}
	if i := r.Invoke("c1", contract.Request{Op: contract.OpGet}); i != late+1 {
		t.Errorf("next index %d, want %d", i, late+1)
	}
	r.Note(history.Event{Kind: history.EventDeployFix})
	if ev := r.Snapshot().Events; len(ev) != 1 || ev[0].Seq != 1 {
		t.Errorf("events after Forget %+v, want seq 1", ev)
	}
}
