package reports

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// SeriesApproximation says how DeriveSeries reconstructs the control error
// signal, which no component records directly; reports print it beside the
// plot.
const SeriesApproximation = "Desired state at time t: the accepted (ok) change of the instance with the highest generation " +
	"answered by t (create and resize: that size; delete: nothing); changes with an unknown outcome are not counted. " +
	"Observed state: the instance's running VMs in the cloud ledger at t, each at the size of its CreateVM or of its last " +
	"effectful ResizeVM by t (deployments are not replayed over time). An instance is off when it should have nothing and " +
	"has a VM, or should have one VM of size s and has not exactly that. In flight: worker intervals open at t. Parked: " +
	"instances whose last interval by t ended parked. Queued: instances off at t with no worker inside their items and not " +
	"parked. Throughput and latency: the ops and intervals that ended in a trailing window of a fiftieth of the run."

// maxPoints bounds a series, so a long soak's report stays small.
const maxPoints = 300

// Series is a run's derived time series: the control loop's view of it.
// Times are seconds since Start.
type Series struct {
	Start time.Time `json:"start"`
	// Span is the length of the series in seconds; Step the bucket width.
	Span float64 `json:"span_s"`
	Step float64 `json:"step_s"`
	// Window is the trailing window rates and latency are measured over.
	Window float64       `json:"window_s"`
	Points []SeriesPoint `json:"points"`
	// Windows are the stretches during which a fault was on, and the
	// deployed bugs until their fix.
	Windows []Window `json:"fault_windows"`
	// Approximation is SeriesApproximation: how the signal was derived.
	Approximation string `json:"approximation"`
}

// SeriesPoint is the state at At and the rates over the bucket ending there.
type SeriesPoint struct {
	At float64 `json:"at_s"`
	// OffDesired is the error signal: instances whose observed state
	// differs from their desired state.
	OffDesired int `json:"off_desired"`
	Queued     int `json:"queued"`    // off, no worker on them, not parked
	Parked     int `json:"parked"`    // last item parked
	InFlight   int `json:"in_flight"` // worker intervals open
	// ChangesPerS are accepted changes answered, WorkPerS work items done,
	// per second, over the trailing window of the point (Series.Window).
	ChangesPerS float64 `json:"changes_per_s"`
	WorkPerS    float64 `json:"work_per_s"`
	// Latency percentiles of the requests answered in the trailing window;
	// zero when none was.
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP95 float64 `json:"latency_p95_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
}

// Kinds of fault window.
const (
	WindowLink     = "link"     // a worker incarnation's link to an upstream
	WindowProvider = "provider" // a provider fault rule
	WindowPostgres = "postgres" // the server itself (restart, injected SQL errors)
	WindowBug      = "bug"      // a deployed intransient bug, until its fix
)

// Window is a stretch of time a fault was on.
type Window struct {
	From   float64 `json:"from_s"`
	To     float64 `json:"to_s"`
	Kind   string  `json:"kind"`
	Target string  `json:"target,omitempty"` // "w1.2/postgres", "cloud/CreateVM", …
	Detail string  `json:"detail,omitempty"`
}

// Worker returns the worker incarnation a link window is on ("" for others).
func (w Window) Worker() string {
	if w.Kind != WindowLink {
		return ""
	}
	worker, _, _ := strings.Cut(w.Target, "/")
	return worker
}

// Derive fills r.Series from r.Evidence (no-op without evidence), so that
// the derived plots survive when the caller drops the evidence itself.
func (r *Report) Derive() {
	if r.Evidence != nil {
		r.Series = DeriveSeries(*r.Evidence)
	}
}

// span of the input: the earliest and latest times it holds.
func spanOf(in check.Input) (time.Time, time.Time) {
	var lo, hi time.Time
	see := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	h := in.History
	for _, o := range h.Ops {
		see(o.Invoke)
		see(o.Complete)
	}
	for _, iv := range h.Intervals {
		see(iv.Start)
		see(iv.End)
	}
	for _, e := range h.Events {
		see(e.Time)
	}
	for _, rec := range in.Ledger.Requests {
		see(rec.Start)
		see(rec.End)
	}
	see(h.Taken)
	return lo, hi
}

// DeriveSeries reconstructs the control error signal, the work queued,
// parked and in flight, throughput, latency and the fault windows from a
// check's input (see SeriesApproximation). Nil when the input is empty.
func DeriveSeries(in check.Input) *Series {
	t0, t1 := spanOf(in)
	if t0.IsZero() {
		return nil
	}
	span := t1.Sub(t0).Seconds()
	// A point per 10 ms, between 20 and maxPoints: a short example stays
	// small in report.json, a long soak bounded.
	n := min(max(int(span/0.01), 20), maxPoints)
	if span <= 0 {
		span, n = 0.001, 1
	}
	s := &Series{Start: t0, Span: span, Step: span / float64(n), Approximation: SeriesApproximation}
	s.Windows = windows(in.History, t0, t1)
	at := func(k int) time.Time {
		return t0.Add(time.Duration(float64(k) * s.Step * float64(time.Second)))
	}
	st := newStateIndex(in)
	h := in.History
	// Rates and percentiles over a trailing window of about a fiftieth of
	// the run (at least one bucket): a bucket of a long run holds too few
	// requests for a rate to mean anything.
	win := time.Duration(max(s.Step, span/50) * float64(time.Second))
	s.Window = win.Seconds()
	for k := 1; k <= n; k++ {
		t := at(k)
		from := t.Add(-win)
		p := SeriesPoint{At: float64(k) * s.Step}
		p.OffDesired, p.Queued, p.Parked, p.InFlight = st.at(t)
		var lat []float64
		for _, o := range h.Ops {
			if o.Complete.IsZero() || !o.Complete.After(from) || o.Complete.After(t) {
				continue
			}
			lat = append(lat, float64(o.Complete.Sub(o.Invoke))/float64(time.Millisecond))
			if o.IsChange() && o.Outcome == history.OK {
				p.ChangesPerS++
			}
		}
		for _, iv := range h.Intervals {
			if iv.Outcome == "done" && iv.End.After(from) && !iv.End.After(t) {
				p.WorkPerS++
			}
		}
		p.ChangesPerS /= win.Seconds()
		p.WorkPerS /= win.Seconds()
		p.LatencyP50, p.LatencyP95, p.LatencyP99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
		s.Points = append(s.Points, p)
	}
	return s
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return math.Round(xs[max(i, 0)]*1000) / 1000
}

// windows pairs the history's fault-on and fault-off events (and each
// deployed bug with its fix). A link fault is healed as "<target> <fault>"
// with detail "heal", a provider fault by its own target and detail; an
// off event that matches no open window by name closes the oldest open one
// on its target. A window still open at the end lasts until t1.
func windows(h history.Snapshot, t0, t1 time.Time) []Window {
	type open struct {
		key   string
		w     Window
		since time.Time
	}
	var opened []open
	var out []Window
	sec := func(t time.Time) float64 { return t.Sub(t0).Seconds() }
	closeAt := func(i int, t time.Time) {
		w := opened[i].w
		w.To = sec(t)
		out = append(out, w)
		opened = slices.Delete(opened, i, i+1)
	}
	events := slices.Clone(h.Events)
	slices.SortStableFunc(events, func(a, b history.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, e := range events {
		switch e.Kind {
		case history.EventFaultOn:
			opened = append(opened, open{key: e.Target + " " + e.Detail, since: e.Time,
				w: Window{From: sec(e.Time), Kind: windowKind(e.Target), Target: e.Target, Detail: e.Detail}})
		case history.EventDeployBug:
			opened = append(opened, open{key: "bug " + e.Detail, since: e.Time,
				w: Window{From: sec(e.Time), Kind: WindowBug, Target: "deploy", Detail: e.Detail}})
		case history.EventFaultOff, history.EventDeployFix:
			keys := []string{e.Target + " " + e.Detail, e.Target}
			if e.Kind == history.EventDeployFix {
				keys = []string{"bug " + e.Detail}
			}
			i := slices.IndexFunc(opened, func(o open) bool { return slices.Contains(keys, o.key) })
			if i < 0 && e.Kind == history.EventFaultOff {
				i = slices.IndexFunc(opened, func(o open) bool { return o.w.Target == e.Target })
			}
			if i >= 0 {
				closeAt(i, e.Time)
			}
		}
	}
	for len(opened) > 0 {
		closeAt(0, t1)
	}
	slices.SortStableFunc(out, func(a, b Window) int { return cmp.Compare(a.From, b.From) })
	return out
}

func windowKind(target string) string {
	if target == "postgres" {
		return WindowPostgres
	}
	if w, _, ok := strings.Cut(target, "/"); ok && isIncarnation(w) {
		return WindowLink
	}
	return WindowProvider
}

// isIncarnation reports whether s looks like a worker incarnation name
// ("w1.2"): the harness's own naming.
func isIncarnation(s string) bool {
	if len(s) < 2 || s[0] != 'w' {
		return false
	}
	for _, c := range s[1:] {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// stateIndex answers, for any t, how many instances are off their desired
// state, queued, parked, and how many intervals are open.
type stateIndex struct {
	instances []string
	desired   map[string][]desiredAt // by answer time
	vms       map[string][]vmLife
	intervals []history.Interval
	byKey     map[string][]history.Interval // by End
}

type desiredAt struct {
	at      time.Time
	gen     int64
	present bool
	size    string
}

type vmLife struct {
	from, to time.Time // to zero: still running
	sizes    []sizeAt  // by time, the first at creation
}

type sizeAt struct {
	at   time.Time
	size string
}

func newStateIndex(in check.Input) *stateIndex {
	x := &stateIndex{desired: map[string][]desiredAt{}, vms: map[string][]vmLife{}, byKey: map[string][]history.Interval{}}
	seen := map[string]bool{}
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			x.instances = append(x.instances, id)
		}
	}
	for _, o := range in.History.Ops {
		if !o.IsChange() || o.Outcome != history.OK {
			continue
		}
		id := o.Request.Instance
		add(id)
		x.desired[id] = append(x.desired[id], desiredAt{at: o.Complete, gen: o.Response.Generation,
			present: o.Request.Op != contract.OpDelete, size: o.Request.Size})
	}
	for id, ds := range x.desired {
		slices.SortStableFunc(ds, func(a, b desiredAt) int { return a.at.Compare(b.at) })
		x.desired[id] = ds
	}
	type params struct {
		ID   string `json:"id"`
		Size string `json:"size"`
	}
	created := map[string]string{} // client token → size asked
	resized := map[string][]sizeAt{}
	for _, r := range in.Ledger.Requests {
		if !r.Effect || r.Service != fakes.ServiceCloud {
			continue
		}
		var p params
		_ = json.Unmarshal(r.Params, &p)
		switch r.Endpoint {
		case fakes.CreateVM:
			if r.Key != "" && p.Size != "" {
				created[r.Key] = p.Size
			}
		case fakes.ResizeVM:
			if p.ID != "" && p.Size != "" {
				resized[p.ID] = append(resized[p.ID], sizeAt{at: r.End, size: p.Size})
			}
		}
	}
	for _, vm := range in.Ledger.VMs {
		add(vm.Owner)
		first := vm.Size
		if s, ok := created[vm.ClientToken]; ok && vm.ClientToken != "" {
			first = s
		}
		sizes := append([]sizeAt{{at: vm.CreatedAt, size: first}}, resized[vm.ID]...)
		slices.SortStableFunc(sizes, func(a, b sizeAt) int { return a.at.Compare(b.at) })
		x.vms[vm.Owner] = append(x.vms[vm.Owner], vmLife{from: vm.CreatedAt, to: vm.TerminatedAt, sizes: sizes})
	}
	slices.Sort(x.instances)
	x.intervals = in.History.Intervals
	for _, iv := range x.intervals {
		x.byKey[iv.Key] = append(x.byKey[iv.Key], iv)
	}
	return x
}

func (x *stateIndex) at(t time.Time) (off, queued, parked, inFlight int) {
	busy := map[string]bool{}
	for _, iv := range x.intervals {
		if !iv.Start.After(t) && (iv.End.IsZero() || iv.End.After(t)) {
			inFlight++
			busy[iv.Key] = true
		}
	}
	for _, id := range x.instances {
		isParked := x.parkedAt(id, t)
		if isParked {
			parked++
		}
		if !x.offAt(id, t) {
			continue
		}
		off++
		if !busy[id] && !isParked {
			queued++
		}
	}
	return off, queued, parked, inFlight
}

func (x *stateIndex) parkedAt(id string, t time.Time) bool {
	var last *history.Interval
	for i, iv := range x.byKey[id] {
		if iv.Start.After(t) {
			continue
		}
		if last == nil || iv.Start.After(last.Start) {
			last = &x.byKey[id][i]
		}
	}
	return last != nil && !last.End.IsZero() && !last.End.After(t) && last.Outcome == "parked"
}

func (x *stateIndex) offAt(id string, t time.Time) bool {
	var want *desiredAt
	for i, d := range x.desired[id] {
		if d.at.After(t) {
			break
		}
		if want == nil || d.gen >= want.gen {
			want = &x.desired[id][i]
		}
	}
	var sizes []string
	for _, vm := range x.vms[id] {
		if vm.from.After(t) || (!vm.to.IsZero() && !vm.to.After(t)) {
			continue
		}
		size := ""
		for _, s := range vm.sizes {
			if !s.at.After(t) {
				size = s.size
			}
		}
		sizes = append(sizes, size)
	}
	if want == nil || !want.present {
		return len(sizes) > 0
	}
	return len(sizes) != 1 || sizes[0] != want.size
}

// merged is ws with the overlapping windows of one kind (and, for link
// faults, one worker, when byWorker) joined, so that shading does not pile
// up where faults overlap.
func merged(ws []Window, byWorker bool) []Window {
	type key struct{ kind, worker string }
	groups := map[key][]Window{}
	var order []key
	for _, w := range ws {
		k := key{kind: w.Kind}
		if byWorker {
			k.worker = w.Worker()
		}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], w)
	}
	var out []Window
	for _, k := range order {
		g := groups[k]
		slices.SortStableFunc(g, func(a, b Window) int { return cmp.Compare(a.From, b.From) })
		cur := g[0]
		for _, w := range g[1:] {
			if w.From <= cur.To {
				cur.To = max(cur.To, w.To)
				if cur.Detail != w.Detail {
					cur.Detail = "several"
				}
				continue
			}
			out = append(out, cur)
			cur = w
		}
		out = append(out, cur)
	}
	return out
}
