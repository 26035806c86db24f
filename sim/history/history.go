package history

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
)

// Outcome is how a user request ended, in Jepsen's three values.
type Outcome string

const (
	// Pending: invoked and not (yet) completed. Checkers treat it like Info.
	Pending Outcome = ""
	// OK: the request happened.
	OK Outcome = "ok"
	// Fail: the request definitely did not happen (busy, invalid, not found, exists).
	Fail Outcome = "fail"
	// Info: unknown; the request may or may not have happened (timeout, lost connection).
	Info Outcome = "info"
)

// Error kinds recorded in Op.ErrKind.
const (
	ErrKindBusy     = "busy"
	ErrKindNotFound = "not-found"
	ErrKindExists   = "exists"
	ErrKindInvalid  = "invalid"
	ErrKindUnknown  = "unknown" // any other error: the outcome is Info
)

// Classify maps the error Serve returned to an outcome and an error kind.
// Only the contract's sentinels are definite failures; every other error
// (deadline, lost connection, an unanswered COMMIT) leaves the request's
// fate unknown.
func Classify(err error) (Outcome, string) {
	switch {
	case err == nil:
		return OK, ""
	case contract.IsBusy(err):
		return Fail, ErrKindBusy
	case errors.Is(err, contract.ErrNotFound):
		return Fail, ErrKindNotFound
	case errors.Is(err, contract.ErrExists):
		return Fail, ErrKindExists
	case errors.Is(err, contract.ErrInvalid):
		return Fail, ErrKindInvalid
	default:
		return Info, ErrKindUnknown
	}
}

// Op is one user (or operator) request.
type Op struct {
	Index    int               `json:"index"` // position in invoke order, from 0
	Client   string            `json:"client"`
	Request  contract.Request  `json:"request"`
	Invoke   time.Time         `json:"invoke"`
	Complete time.Time         `json:"complete,omitzero"` // zero while pending
	Outcome  Outcome           `json:"outcome,omitempty"` // Pending while pending
	Response contract.Response `json:"response,omitzero"` // meaningful for OK only
	ErrKind  string            `json:"err_kind,omitempty"`
	Error    string            `json:"error,omitempty"`
}

// IsChange reports whether the op asks for a change of an instance
// (create, resize or delete), as opposed to a read or an operator resume.
func (o Op) IsChange() bool {
	switch o.Request.Op {
	case contract.OpCreate, contract.OpResize, contract.OpDelete:
		return true
	}
	return false
}

// Interval outcomes added by the recorder to the contract's
// "done", "retry", "parked" and "error".
const (
	IntervalCrashed   = "crashed"    // the worker incarnation crashed inside the item
	IntervalLeaseLost = "lease-lost" // the worker's database session was cut inside the item
)

// Interval is the time one worker incarnation spent inside one work item.
type Interval struct {
	Seq     int       `json:"seq"` // Begin order, from 0
	Worker  string    `json:"worker"`
	Item    string    `json:"item"`
	Key     string    `json:"key"` // the instance the item works on
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`     // zero while open
	Outcome string    `json:"outcome,omitzero"` // "" while open
	// Reported is when the worker itself said it left the item, when that
	// came after a crash or lease loss had already ended the interval.
	Reported        time.Time `json:"reported,omitzero"`
	ReportedOutcome string    `json:"reported_outcome,omitempty"`
	// BegunCut marks an interval begun on a session a fault was cutting
	// (see Recorder.LeaseLost): its claim may have died before the worker
	// recorded its Begin. Ended in error, it is LostAtStart; its commit
	// succeeded, it is an interval like any other; open, it is undecided.
	BegunCut bool `json:"begun_cut,omitempty"`
	// LostAtStart marks a BegunCut interval that ended in error: it proves
	// the worker was inside nothing, not even at Start.
	LostAtStart bool `json:"lost_at_start,omitempty"`
}

// Open reports whether the interval has not ended.
func (iv Interval) Open() bool { return iv.End.IsZero() }

// EventKind names a harness event.
type EventKind string

const (
	EventCrash     EventKind = "crash"      // Worker crashed at Detail (a crash point)
	EventLeaseLost EventKind = "lease-lost" // a fault (Detail) cut Worker's database session, and with it its claim
	// EventSessionLost: a fault (Detail) cut Worker's database session, and
	// the system's claims outlive sessions (contract.ClaimRow): the worker
	// stays inside its item until it says it left.
	EventSessionLost EventKind = "session-lost"
	EventFaultOn     EventKind = "fault-on"   // fault Detail applied to Target (a link or a provider)
	EventFaultOff    EventKind = "fault-off"  // fault Detail removed from Target
	EventDeployBug   EventKind = "deploy-bug" // an intransient bug Detail was deployed
	EventDeployFix   EventKind = "deploy-fix" // the fix for Detail was deployed
)

// Event is one thing the harness did.
type Event struct {
	Seq    int       `json:"seq"` // from 0
	Time   time.Time `json:"time"`
	Kind   EventKind `json:"kind"`
	Worker string    `json:"worker,omitempty"` // worker incarnation, when the event concerns one
	Target string    `json:"target,omitempty"` // link or provider a fault applies to
	Detail string    `json:"detail,omitempty"`
}

// Snapshot is the whole history as plain data.
type Snapshot struct {
	Ops       []Op       `json:"ops"`
	Intervals []Interval `json:"intervals"`
	Events    []Event    `json:"events"`
	Taken     time.Time  `json:"taken"` // when the snapshot was taken
}

// Clock is the recorder's time source.
type Clock interface {
	Now() time.Time
}

// Options configures a Recorder.
type Options struct {
	// Clock stamps every entry; it should be the clock the fakes use, so that
	// history and ledger times compare. Zero: time.Now.
	Clock Clock
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Recorder records a run. It is safe for concurrent use.
type Recorder struct {
	clock Clock

	mu        sync.Mutex
	ops       []Op
	intervals []Interval
	events    []Event
	// Forget drops a prefix of each slice; the base is the Index or Seq of
	// its first entry, so that numbering goes on where it was.
	opBase, ivBase, evBase int

	crashed map[string]bool // worker incarnations that crashed
	// Per worker incarnation, cutting counts the lease losses whose fault
	// has not acted yet and doomedUntil is when the window of the last one
	// that has closes (see LeaseLost); doomed holds the Seq of the
	// intervals begun inside a window.
	cutting     map[string]int
	doomedUntil map[string]time.Time
	doomed      map[int]bool
}

// LeaseGrace is how long after a lease-cutting fault has acted an interval
// the worker begins still counts as begun on the cut session, if it ends in
// error: the worker records Begin after its claim returned, which can be
// well after the claim ran on the server.
const LeaseGrace = 2 * time.Second

// New returns an empty Recorder.
func New(opts Options) *Recorder {
	c := opts.Clock
	if c == nil {
		c = wallClock{}
	}
	return &Recorder{clock: c, crashed: map[string]bool{}, cutting: map[string]int{}, doomedUntil: map[string]time.Time{}, doomed: map[int]bool{}}
}

// Invoke records that client sent req and returns the op's index for Complete.
func (r *Recorder) Invoke(client string, req contract.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.opBase + len(r.ops)
	r.ops = append(r.ops, Op{Index: i, Client: client, Request: req, Invoke: r.clock.Now()})
	return i
}

// Complete records how op index ended; the outcome comes from Classify(err).
// A second Complete of the same op, or an unknown index, is ignored.
func (r *Recorder) Complete(index int, resp contract.Response, err error) {
	out, kind := Classify(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	index -= r.opBase
	if index < 0 || index >= len(r.ops) || r.ops[index].Outcome != Pending {
		return
	}
	op := &r.ops[index]
	op.Complete = r.clock.Now()
	op.Outcome = out
	op.ErrKind = kind
	if err != nil {
		op.Error = err.Error()
	}
	if out == OK || out == Fail {
		op.Response = resp
	}
}

// Do records one request around serve and returns what serve returned.
func (r *Recorder) Do(client string, req contract.Request, serve func(contract.Request) (contract.Response, error)) (contract.Response, error) {
	i := r.Invoke(client, req)
	resp, err := serve(req)
	r.Complete(i, resp, err)
	return resp, err
}

// Begin records that worker entered item (of instance key) and returns the
// func to call with the outcome when it leaves. Calling the func again, or
// after a crash or lease loss already ended the interval, does not move End.
func (r *Recorder) Begin(worker, item, key string) (end func(outcome string)) {
	endAt := r.BeginAt(worker, item, key, time.Time{})
	return func(outcome string) { endAt(outcome, time.Time{}) }
}

// BeginAt is Begin for a worker that stamps its own times (a worker process,
// whose reports arrive a little after the fact): at is when worker entered
// item, and endAt takes when it left. A zero time is the recorder's now.
// Times are clamped so that an interval never starts after the recorder's
// now nor ends before it started.
func (r *Recorder) BeginAt(worker, item, key string, at time.Time) (endAt func(outcome string, at time.Time)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	seq := r.ivBase + len(r.intervals)
	iv := Interval{Seq: seq, Worker: worker, Item: item, Key: key, Start: at}
	if r.crashed[worker] {
		// A frozen incarnation should not get here; if it does, it is not
		// really inside anything.
		iv.End, iv.Outcome = at, IntervalCrashed
	}
	if until, ok := r.doomedUntil[worker]; r.cutting[worker] > 0 || ok && !at.After(until) {
		r.doomed[seq] = true
		iv.BegunCut = true
	}
	r.intervals = append(r.intervals, iv)
	var once sync.Once
	return func(outcome string, at time.Time) {
		once.Do(func() { r.end(seq, outcome, at) })
	}
}

func (r *Recorder) end(seq int, outcome string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	if seq < r.ivBase {
		return // forgotten: it had ended
	}
	iv := &r.intervals[seq-r.ivBase]
	if at.Before(iv.Start) {
		at = iv.Start
	}
	if !iv.Open() {
		iv.Reported, iv.ReportedOutcome = at, outcome
		return
	}
	if r.doomed[seq] && outcome == "error" {
		// Begun on a session a fault was cutting (see LeaseLost): the
		// worker was inside nothing it could commit.
		iv.End, iv.Outcome, iv.LostAtStart = iv.Start, IntervalLeaseLost, true
		iv.Reported, iv.ReportedOutcome = at, outcome
		return
	}
	iv.End, iv.Outcome = at, outcome
}

// Observer returns the contract.Observer for one worker incarnation.
func (r *Recorder) Observer(worker string) contract.Observer {
	return observer{r: r, worker: worker}
}

type observer struct {
	r      *Recorder
	worker string
}

func (o observer) Begin(item, key string) func(outcome string) { return o.r.Begin(o.worker, item, key) }

// Crash records that worker crashed at point and ends its open intervals.
func (r *Recorder) Crash(worker, point string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.addEvent(Event{Kind: EventCrash, Worker: worker, Detail: point})
	r.crashed[worker] = true
	r.cutLocked(worker, now, IntervalCrashed)
}

// LeaseLost records that fault is cutting worker's database session
// (blackhole, partition, reset, terminated backend, …), before the fault
// acts, and ends its open intervals: the worker's later actions there are
// not "inside" anything, since another worker may claim its items as soon as
// the session is gone. It returns acted, to be called once the fault has
// acted. An interval the worker begins between LeaseLost and LeaseGrace
// after acted may have been claimed on the session being cut; if it ends in
// "error" (its commit failed), it is taken as lost from its start, so that
// the worker's actions in it are not mistaken for a race with the worker
// that claimed the freed item (a chaos gate on the reference hit this).
func (r *Recorder) LeaseLost(worker, fault string) (acted func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.addEvent(Event{Kind: EventLeaseLost, Worker: worker, Detail: fault})
	r.cutLocked(worker, now, IntervalLeaseLost)
	r.cutting[worker]++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.cutting[worker]--
			if until := r.clock.Now().Add(LeaseGrace); until.After(r.doomedUntil[worker]) {
				r.doomedUntil[worker] = until
			}
		})
	}
}

// SessionLost records that fault is cutting worker's database session of a
// system whose claims are committed rows (contract.ClaimRow): unlike
// LeaseLost it ends no interval, since the worker keeps its claim and is
// still inside its item, however long it takes to notice.
func (r *Recorder) SessionLost(worker, fault string) {
	r.Note(Event{Kind: EventSessionLost, Worker: worker, Detail: fault})
}

// FaultOn records that fault was applied to target (a link or a provider).
func (r *Recorder) FaultOn(target, fault string) {
	r.Note(Event{Kind: EventFaultOn, Target: target, Detail: fault})
}

// FaultOff records that fault was removed from target.
func (r *Recorder) FaultOff(target, fault string) {
	r.Note(Event{Kind: EventFaultOff, Target: target, Detail: fault})
}

// DeployBug records that an intransient bug was deployed.
func (r *Recorder) DeployBug(name string) { r.Note(Event{Kind: EventDeployBug, Detail: name}) }

// DeployFix records that the fix for bug name was deployed.
func (r *Recorder) DeployFix(name string) { r.Note(Event{Kind: EventDeployFix, Detail: name}) }

// Note records any event; Seq and Time are set by the recorder. Crash and
// lease-loss events recorded through Note do not end intervals: use Crash
// and LeaseLost for those.
func (r *Recorder) Note(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addEvent(e)
}

func (r *Recorder) addEvent(e Event) time.Time {
	e.Seq = r.evBase + len(r.events)
	e.Time = r.clock.Now()
	r.events = append(r.events, e)
	return e.Time
}

func (r *Recorder) cutLocked(worker string, at time.Time, outcome string) {
	for i := range r.intervals {
		iv := &r.intervals[i]
		if iv.Worker == worker && iv.Open() {
			iv.End, iv.Outcome = at, outcome
		}
	}
}

// Pending counts the requests invoked and not completed yet.
func (r *Recorder) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.ops {
		if o.Outcome == Pending {
			n++
		}
	}
	return n
}

// Snapshot returns a copy of everything recorded so far.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Snapshot{
		Ops:       append([]Op{}, r.ops...),
		Intervals: append([]Interval{}, r.intervals...),
		Events:    append([]Event{}, r.events...),
		Taken:     r.clock.Now(),
	}
}

// Mark is where a snapshot ends: the Index or Seq its next op, interval and
// event would have.
type Mark struct {
	Ops, Intervals, Events int
}

// MarkOf is the mark just past the last entry of s.
func MarkOf(s Snapshot) Mark {
	var m Mark
	for _, o := range s.Ops {
		m.Ops = max(m.Ops, o.Index+1)
	}
	for _, iv := range s.Intervals {
		m.Intervals = max(m.Intervals, iv.Seq+1)
	}
	for _, e := range s.Events {
		m.Events = max(m.Events, e.Seq+1)
	}
	return m
}

// Forget drops the oldest entries up to mark, as far as they have ended:
// completed ops, ended intervals, and events. Each kind stops at its first
// entry that has not ended, so nothing in progress is lost. It returns what
// it dropped; Index and Seq numbering goes on unchanged.
//
// It is for runs of hours (a soak), which forget what a valid quiescent
// checkpoint proved, so that memory and the cost of each check stay those
// of one checkpoint's window instead of growing with the run
// (sim.Env.Compact keeps what later checks still need).
func (r *Recorder) Forget(mark Mark) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out Snapshot
	n := 0
	for n < len(r.ops) && r.ops[n].Index < mark.Ops && r.ops[n].Outcome != Pending {
		n++
	}
	out.Ops, r.ops = r.ops[:n:n], slices.Clone(r.ops[n:])
	r.opBase += n
	n = 0
	for n < len(r.intervals) && r.intervals[n].Seq < mark.Intervals && !r.intervals[n].Open() {
		delete(r.doomed, r.intervals[n].Seq)
		n++
	}
	out.Intervals, r.intervals = r.intervals[:n:n], slices.Clone(r.intervals[n:])
	r.ivBase += n
	n = 0
	for n < len(r.events) && r.events[n].Seq < mark.Events {
		n++
	}
	out.Events, r.events = r.events[:n:n], slices.Clone(r.events[n:])
	r.evBase += n
	out.Taken = r.clock.Now()
	return out
}

// View calls fn with the history as it is now, without copying it: for a
// reader that only counts (a long soak's once-a-second sample), where a copy
// would cost as much as the whole history every time. fn runs under the
// recorder's lock: it must not keep the slices, write to them, or call the
// recorder.
func (r *Recorder) View(fn func(Snapshot)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(Snapshot{Ops: r.ops, Intervals: r.intervals, Events: r.events, Taken: r.clock.Now()})
}
