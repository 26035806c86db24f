package crash

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrCrashed is returned from a point of a crashed worker once the Gate is
// closed and the frozen goroutine is let go: everything after it must fail.
var ErrCrashed = errors.New("crash: worker crashed")

// Options configures a Gate. Every zero value is usable.
type Options struct {
	// OnCrash is called once per worker, synchronously, when it crashes and
	// before its goroutine freezes: sever the worker's links here. Zero:
	// nothing is severed (the worker only freezes).
	OnCrash func(worker string, point string)
	// Scheduled starts the gate in scheduled mode; zero: free-running.
	Scheduled bool
}

// Rule arms a crash: the worker crashes at the first point matching At that
// comes after it passed a point matching After. Matching is by prefix, so
// "sql:" matches every statement and "cloud:CreateVM" matches the call and
// its ":done" point. An empty After is already satisfied; an empty At
// matches any point.
type Rule struct {
	After string `json:"after,omitempty"`
	At    string `json:"at,omitempty"`
	// Nth fires at the Nth point matching At (once After was passed), so a
	// rule can aim at one occurrence of a point a worker passes several
	// times; zero: the first.
	Nth int `json:"nth,omitempty"`
	// Item limits the rule to points passed inside the work item of that id
	// (as the system names it to its Observer; see Gate.Enter), and Entry to
	// the Entry-th time any worker entered it (1 is the first attempt; zero:
	// any). Nth is then the occurrence of this very point name within the
	// item entry (as TracePoint.Nth counts it), however late the rule was
	// armed. Zero Item: anywhere.
	Item  string `json:"item,omitempty"`
	Entry int    `json:"entry,omitempty"`
}

func (r Rule) String() string {
	at := r.At
	if at == "" {
		at = "any point"
	}
	if r.Nth > 1 {
		at = fmt.Sprintf("%s (#%d)", at, r.Nth)
	}
	if r.Item != "" {
		at += " in item " + r.Item
		if r.Entry > 0 {
			at += fmt.Sprintf(" (entry %d)", r.Entry)
		}
	}
	if r.After == "" {
		return "at " + at
	}
	return "at " + at + " after " + r.After
}

// Hit is one crash that happened.
type Hit struct {
	Worker string    `json:"worker"`
	Point  string    `json:"point"`
	Rule   string    `json:"rule"`
	At     time.Time `json:"at"`
}

// Parked is a worker waiting at a point in scheduled mode.
type Parked struct {
	Worker string
	Point  string
}

type arm struct {
	rule      Rule
	seen      int    // points matching At passed so far (once After was)
	counted   string // the point, and its occurrence, seen last: an action re-runs
	countedAt int    // the match loop at the same point, which must not count it twice
	passed    bool   // After has been seen
	action    func() // nil: crash; else run it and go on
}

type worker struct {
	arms    []*arm
	crashed bool
	buried  chan struct{}  // closed by Bury: the crashed goroutine may go before Close
	parked  string         // point it waits at in scheduled mode; "" when running
	release chan struct{}  // closed to let a parked worker go
	item    string         // the work item it is inside (Enter); "" outside any
	key     string         // the instance that item works on
	entry   int            // which entry of item
	nth     map[string]int // points passed since it entered or left an item, by name
}

// TracePoint is one point a worker (or an API actor) passed, as Trace
// records it: enough to aim a fault at the same point of another run of the
// same workload, whichever worker gets there.
type TracePoint struct {
	Seq    int    `json:"seq"`
	Worker string `json:"worker"`          // the incarnation or actor that passed it
	Point  string `json:"point"`           // its name
	Item   string `json:"item,omitempty"`  // the work item it was inside; "" outside any
	Key    string `json:"key,omitempty"`   // the instance that item works on
	Entry  int    `json:"entry,omitempty"` // which entry of Item
	Nth    int    `json:"nth"`             // occurrence of Point within the item entry (or since the worker last left an item)
	// Batch marks a statement of a pipelined batch after its first: it goes
	// out with the first, so a fault before it is a fault before the batch.
	Batch bool `json:"batch,omitempty"`
}

// Gate decides, at every point of every worker, whether it crashes, waits or
// goes on. It is safe for concurrent use.
type Gate struct {
	opts   Options
	now    func() time.Time
	mu     sync.Mutex
	w      map[string]*worker
	sched  bool
	counts map[string]int // points passed, by name: what a run reached
	hits   []Hit
	// entries counts how often each work item was entered (Enter).
	entries map[string]int
	tracing bool
	trace   []TracePoint
	change  chan struct{} // closed and replaced when the parked set changes
	closed  chan struct{}
	once    sync.Once
}

// New returns a Gate. now stamps crashes (pass the run's clock).
func New(now func() time.Time, opts Options) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{
		opts:    opts,
		now:     now,
		w:       map[string]*worker{},
		sched:   opts.Scheduled,
		counts:  map[string]int{},
		entries: map[string]int{},
		change:  make(chan struct{}),
		closed:  make(chan struct{}),
	}
}

func (g *Gate) worker(name string) *worker {
	w := g.w[name]
	if w == nil {
		w = &worker{nth: map[string]int{}, buried: make(chan struct{})}
		g.w[name] = w
	}
	return w
}

// Enter tells the gate worker entered work item (a system reports it to its
// Observer right after the claim): rules with an Item match from now on,
// and points are counted within the item.
func (g *Gate) Enter(worker, item, key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	g.entries[item]++
	w.item, w.key, w.entry = item, key, g.entries[item]
	clear(w.nth)
}

// ForgetEntries drops the entry counts of every item no worker is inside
// now: at a quiescent point no item is left to be entered again, and a
// run of hours would otherwise keep one count per item it ever ran.
func (g *Gate) ForgetEntries() {
	g.mu.Lock()
	defer g.mu.Unlock()
	inside := map[string]bool{}
	for _, w := range g.w {
		inside[w.item] = true
	}
	maps.DeleteFunc(g.entries, func(item string, _ int) bool { return !inside[item] })
}

// Inside returns the work item worker is inside and the instance it works
// on ("" outside any).
func (g *Gate) Inside(worker string) (item, key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	return w.item, w.key
}

// Leave tells the gate worker left the item it was inside.
func (g *Gate) Leave(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	w.item, w.key, w.entry = "", "", 0
	clear(w.nth)
}

// SetTracing starts (or stops) recording every point passed, for Trace.
func (g *Gate) SetTracing(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tracing = on
}

// Trace returns the points passed while tracing was on, in order.
func (g *Gate) Trace() []TracePoint {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]TracePoint(nil), g.trace...)
}

// Arm adds a crash rule for worker; rules fire once each, in any order.
func (g *Gate) Arm(worker string, r Rule) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	w.arms = append(w.arms, &arm{rule: r, passed: r.After == ""})
}

// OnPoint runs f once, on worker's goroutine, when it reaches the first
// point matching r, before the point proceeds. A scenario uses it to inject
// a fault at a precise place: cut the database link right before COMMIT.
func (g *Gate) OnPoint(worker string, r Rule, f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	w.arms = append(w.arms, &arm{rule: r, passed: r.After == "", action: f})
}

// Disarm removes every rule of worker that has not fired.
func (g *Gate) Disarm(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.worker(worker).arms = nil
}

// Crashed reports whether worker has crashed.
func (g *Gate) Crashed(worker string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.worker(worker).crashed
}

// Hits returns the crashes so far, in order.
func (g *Gate) Hits() []Hit {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Hit(nil), g.hits...)
}

// Reached returns how often each point was passed, by name.
func (g *Gate) Reached() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]int, len(g.counts))
	for k, v := range g.counts {
		m[k] = v
	}
	return m
}

// Point is called by a worker at a crash point. It returns at once in free
// mode, waits for Release in scheduled mode, and never returns before Close
// for a worker that crashed (then with ErrCrashed). ctx ending lets a
// parked (not crashed) worker go with ctx's error.
func (g *Gate) Point(ctx context.Context, worker, point string) error {
	return g.point(ctx, worker, point, true, false)
}

func (g *Gate) point(ctx context.Context, worker, point string, park, batch bool) error {
	g.mu.Lock()
	w := g.worker(worker)
	if w.crashed {
		g.mu.Unlock()
		g.frozen(w)
		return ErrCrashed
	}
	g.counts[point]++
	w.nth[point]++
	if g.tracing {
		g.trace = append(g.trace, TracePoint{Seq: len(g.trace), Worker: worker, Point: point, Item: w.item, Key: w.key, Entry: w.entry,
			Nth: w.nth[point], Batch: batch})
	}
	for a := g.matchLocked(w, point); a != nil; a = g.matchLocked(w, point) {
		if a.action != nil {
			g.mu.Unlock()
			a.action()
			g.mu.Lock()
			if w.crashed { // the action crashed or killed this very worker
				g.mu.Unlock()
				g.frozen(w)
				return ErrCrashed
			}
			continue
		}
		w.crashed = true
		g.hits = append(g.hits, Hit{Worker: worker, Point: point, Rule: a.rule.String(), At: g.now()})
		g.mu.Unlock()
		if g.opts.OnCrash != nil {
			g.opts.OnCrash(worker, point)
		}
		g.notify()
		g.frozen(w)
		return ErrCrashed
	}
	if !g.sched || !park {
		g.mu.Unlock()
		return nil
	}
	rel := make(chan struct{})
	w.parked, w.release = point, rel
	g.notifyLocked()
	g.mu.Unlock()
	select {
	case <-rel:
	case <-ctx.Done():
		g.mu.Lock()
		if w.release == rel {
			w.parked, w.release = "", nil
			g.notifyLocked()
		}
		g.mu.Unlock()
		return ctx.Err()
	case <-g.closed:
	}
	g.mu.Lock()
	crashed := w.crashed
	g.mu.Unlock()
	if crashed { // killed while parked
		g.frozen(w)
		return ErrCrashed
	}
	return nil
}

// matchLocked removes and returns the first arm of w that fires at point,
// or nil; arms that only advance (their After passed, an occurrence
// counted) stay.
func (g *Gate) matchLocked(w *worker, point string) *arm {
	for i, a := range w.arms {
		if a.counted == point && a.countedAt == w.nth[point] {
			continue // already looked at this very occurrence (after an action ran)
		}
		if !a.passed {
			if strings.HasPrefix(point, a.rule.After) {
				a.passed = true
			}
			continue
		}
		if a.rule.Item != "" && (w.item != a.rule.Item || (a.rule.Entry > 0 && w.entry != a.rule.Entry)) {
			continue
		}
		if !strings.HasPrefix(point, a.rule.At) {
			continue
		}
		a.counted, a.countedAt = point, w.nth[point]
		if a.rule.Item != "" {
			// Inside an item the occurrence is the item's own count of
			// this point, whenever the rule was armed.
			if w.nth[point] != max(a.rule.Nth, 1) {
				continue
			}
		} else if a.seen++; a.seen < a.rule.Nth {
			continue
		}
		w.arms = append(w.arms[:i:i], w.arms[i+1:]...)
		return a
	}
	return nil
}

func (g *Gate) notify() {
	g.mu.Lock()
	g.notifyLocked()
	g.mu.Unlock()
}

func (g *Gate) notifyLocked() {
	close(g.change)
	g.change = make(chan struct{})
}

// Crash makes worker crash at its next point, whatever it is.
func (g *Gate) Crash(worker string) { g.Arm(worker, Rule{}) }

// Freeze marks worker crashed now, as a SIGKILL does: OnCrash is not called
// (the caller severs the links itself) and the worker freezes at its next
// point, wherever it is busy now.
func (g *Gate) Freeze(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	if w.crashed {
		return
	}
	w.crashed = true
	w.arms = nil
	g.hits = append(g.hits, Hit{Worker: worker, Point: "(killed)", Rule: "kill", At: g.now()})
	// A parked worker stays blocked until Close: Release no longer finds it.
	w.parked, w.release = "", nil
	g.notifyLocked()
}

// SetScheduled switches scheduled mode on or off. Switching it off lets
// every parked worker go.
func (g *Gate) SetScheduled(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched = on
	if on {
		return
	}
	for _, w := range g.w {
		if w.release != nil {
			close(w.release)
			w.parked, w.release = "", nil
		}
	}
	g.notifyLocked()
}

// Parked waits until the set of workers parked at a point has not changed
// for quiet (or ctx ends) and returns it, sorted by worker. Workers that are
// busy elsewhere (sleeping in a backoff, waiting for a notification) do not
// arrive; quiet is how long the scheduler waits for them.
func (g *Gate) Parked(ctx context.Context, quiet time.Duration) []Parked {
	for {
		g.mu.Lock()
		ch := g.change
		g.mu.Unlock()
		t := time.NewTimer(quiet)
		select {
		case <-ch:
			t.Stop()
			continue
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		return g.parked()
	}
}

func (g *Gate) parked() []Parked {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ps []Parked
	for name, w := range g.w {
		if w.parked != "" && !w.crashed {
			ps = append(ps, Parked{Worker: name, Point: w.parked})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Worker < ps[j].Worker })
	return ps
}

// Release lets a parked worker go on to its next point. It reports whether
// the worker was parked.
func (g *Gate) Release(worker string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	if w.release == nil {
		return false
	}
	close(w.release)
	w.parked, w.release = "", nil
	g.notifyLocked()
	return true
}

// frozen holds a crashed worker's goroutine until Close or Bury.
func (g *Gate) frozen(w *worker) {
	select {
	case <-g.closed:
	case <-w.buried:
	}
}

// Bury lets a crashed worker's frozen goroutine go before Close: its points
// return ErrCrashed from now on. Only for a worker whose links are severed
// (nothing it does can land) and whose slot was restarted, so that a long
// run holds no goroutines, sockets or pools of incarnations long dead. A
// worker that has not crashed is not affected. Bury is idempotent.
func (g *Gate) Bury(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.worker(worker)
	if !w.crashed {
		return
	}
	select {
	case <-w.buried:
	default:
		close(w.buried)
	}
}

// Close lets every frozen and parked goroutine go. Crashed workers' points
// then return ErrCrashed; their links are dead, so nothing they do lands.
func (g *Gate) Close() {
	g.once.Do(func() { close(g.closed) })
}
