package crash

import (
	"context"
	"errors"
	"fmt"
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
}

func (r Rule) String() string {
	at := r.At
	if at == "" {
		at = "any point"
	}
	if r.Nth > 1 {
		at = fmt.Sprintf("%s (#%d)", at, r.Nth)
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
	rule   Rule
	seen   int    // points matching At passed so far (once After was)
	passed bool   // After has been seen
	action func() // nil: crash; else run it and go on
}

type worker struct {
	arms    []*arm
	crashed bool
	parked  string        // point it waits at in scheduled mode; "" when running
	release chan struct{} // closed to let a parked worker go
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
	change chan struct{} // closed and replaced when the parked set changes
	closed chan struct{}
	once   sync.Once
}

// New returns a Gate. now stamps crashes (pass the run's clock).
func New(now func() time.Time, opts Options) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{
		opts:   opts,
		now:    now,
		w:      map[string]*worker{},
		sched:  opts.Scheduled,
		counts: map[string]int{},
		change: make(chan struct{}),
		closed: make(chan struct{}),
	}
}

func (g *Gate) worker(name string) *worker {
	w := g.w[name]
	if w == nil {
		w = &worker{}
		g.w[name] = w
	}
	return w
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
	return g.point(ctx, worker, point, true)
}

func (g *Gate) point(ctx context.Context, worker, point string, park bool) error {
	g.mu.Lock()
	w := g.worker(worker)
	if w.crashed {
		g.mu.Unlock()
		<-g.closed
		return ErrCrashed
	}
	g.counts[point]++
	for i, a := range w.arms {
		if !a.passed {
			if strings.HasPrefix(point, a.rule.After) {
				a.passed = true
			}
			continue
		}
		if strings.HasPrefix(point, a.rule.At) {
			if a.seen++; a.seen < a.rule.Nth {
				continue
			}
			w.arms = append(w.arms[:i:i], w.arms[i+1:]...)
			if a.action != nil {
				g.counts[point]-- // counted again below
				g.mu.Unlock()
				a.action()
				return g.point(ctx, worker, point, park)
			}
			w.crashed = true
			g.hits = append(g.hits, Hit{Worker: worker, Point: point, Rule: a.rule.String(), At: g.now()})
			g.mu.Unlock()
			if g.opts.OnCrash != nil {
				g.opts.OnCrash(worker, point)
			}
			g.notify()
			<-g.closed
			return ErrCrashed
		}
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
		<-g.closed
		return ErrCrashed
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

// Close lets every frozen and parked goroutine go. Crashed workers' points
// then return ErrCrashed; their links are dead, so nothing they do lands.
func (g *Gate) Close() {
	g.once.Do(func() { close(g.closed) })
}
