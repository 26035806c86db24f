package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/reports"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/pgenv"
)

// ErrOptions is wrapped by every error about Options.
var ErrOptions = errors.New("soak: invalid options")

// Options configures Run. Every zero value but System and Server is
// usable.
type Options struct {
	// System is the system under test; required.
	System contract.System
	// SystemName names it in the report; zero: its Go type.
	SystemName string
	// Server holds the run's database (a fresh clone of the system's
	// migrated template); required.
	Server *pgenv.Server
	// Seed is the root of every random draw: the traffic, the nemesis and
	// the harness's own streams. Zero is a seed like any other.
	Seed uint64
	// Duration is how long traffic and faults run, checkpoint pauses not
	// counted; zero: 2m.
	Duration time.Duration
	// Workers is how many worker slots run; zero: 3.
	Workers int
	// Rate is the traffic in requests per second; zero: 20.
	Rate float64
	// Instances is the size of the set of instance ids the traffic works
	// on; zero: 8.
	Instances int
	// Clients is how many user clients send requests concurrently (each
	// one request at a time); zero: 8. A tick that finds every client busy
	// is skipped, so a slow system gets less than Rate.
	Clients int
	// Faults names the fault profile (see Profiles); zero: "mild".
	Faults string
	// CheckEvery is the traffic time between quiescent checkpoints; zero:
	// 30s; negative: only the final check.
	CheckEvery time.Duration
	// ConvergeTimeout bounds each checkpoint's liveness phase; zero: 30s.
	ConvergeTimeout time.Duration
	// KeepGoing goes on after a checkpoint found a violation; zero: the
	// run ends at that checkpoint.
	KeepGoing bool
	// WholeHistory keeps everything recorded, so that every checkpoint
	// checks the run from its start; zero: each valid checkpoint forgets
	// what it proved (sim.Env.Compact), and memory and the time to check
	// stay those of one window between checkpoints.
	WholeHistory bool
	// SampleEvery is the interval of the report's time series and of
	// Progress; zero: 1s.
	SampleEvery time.Duration
	// Progress, when set, is called with every sample, from the sampling
	// goroutine (never concurrently with itself). Zero: none.
	Progress func(reports.Sample)
	// OnCheckpoint, when set, is called after every checkpoint the run
	// goes on from (once a valid one forgot what it proved) and after the
	// final one, from the soak's goroutine: for a caller that profiles the
	// harness at quiescent points. Zero: none.
	OnCheckpoint func(reports.Checkpoint)
	// Logger receives the soak's own log (checkpoints, nemesis errors);
	// zero: discard.
	Logger *slog.Logger
	// EnvLogger is handed to the sim.Env, so it receives the workers' and
	// the fakes' logs; zero: discard.
	EnvLogger *slog.Logger
	// Process runs every worker as a child process with this command
	// (sim.Options.Process), so that a kill is a real SIGKILL of a process
	// with open sessions and requests in flight. Crashes at a point do not
	// exist there: the profile's crashes become kills. Zero: workers are
	// goroutines.
	Process []string
}

func (o *Options) defaults() error {
	if o.System == nil {
		return fmt.Errorf("%w: System is required", ErrOptions)
	}
	if o.Server == nil {
		return fmt.Errorf("%w: Server is required", ErrOptions)
	}
	if o.SystemName == "" {
		o.SystemName = fmt.Sprintf("%T", o.System)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Duration, 2*time.Minute)
	def(&o.CheckEvery, 30*time.Second)
	def(&o.ConvergeTimeout, 30*time.Second)
	def(&o.SampleEvery, time.Second)
	if o.Workers == 0 {
		o.Workers = 3
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.Instances == 0 {
		o.Instances = 8
	}
	if o.Clients == 0 {
		o.Clients = 8
	}
	if o.Faults == "" {
		o.Faults = "mild"
	}
	switch {
	case o.Duration < 0 || o.ConvergeTimeout < 0 || o.SampleEvery < 0:
		return fmt.Errorf("%w: negative duration", ErrOptions)
	case o.Workers < 0 || o.Instances < 0 || o.Clients < 0:
		return fmt.Errorf("%w: workers, instances and clients must be positive", ErrOptions)
	case o.Rate < 0 || o.Rate != o.Rate:
		return fmt.Errorf("%w: rate %v must be positive", ErrOptions, o.Rate)
	}
	if o.CheckEvery < 0 {
		o.CheckEvery = o.Duration
	}
	if _, ok := ProfileNamed(o.Faults); !ok {
		return fmt.Errorf("%w: unknown fault profile %q (want one of %v)", ErrOptions, o.Faults, ProfileNames())
	}
	return nil
}

// Run soaks a system under steady traffic and a fault profile for a while,
// stopping at quiescent checkpoints to prove every invariant so far.
//
// One sim.Env runs Workers workers. Clients send creates, resizes, deletes
// and gets on a bounded set of instance ids at Rate (busy answers are
// normal), while the nemesis of the fault profile switches whole faults on
// and off. Every CheckEvery of traffic time, and at the end, traffic and
// faults pause and a checkpoint runs: sim.Env.Finish (heal everything,
// deploy fixes, restart crashed workers, wait for the queue to drain, then
// every check on the history so far). A violation
// ends the run at that checkpoint unless KeepGoing.
//
// Every random draw (requests, fault choices, hold times, crash rules)
// comes from streams of Seed. Real goroutines and Postgres still decide the
// interleaving, so a soak is not replayed exactly; the same seed repeats the
// same draws.
//
// A valid checkpoint is a quiescent point: everything before it was proven,
// and nothing before it overlaps anything after. So the soak forgets it
// (sim.Env.Compact) but for the ops a later check still judges against the
// state (check.Compact), and each checkpoint checks one window: memory and
// the time to check stay flat however long the run (Options.WholeHistory
// keeps everything instead). Report.Evidence then holds the deciding
// check's window, not the whole run; the counts and samples are the whole
// run's.
//
// Cancelling ctx (Ctrl-C) stops traffic and faults, runs a safety-only
// check of what was recorded (the liveness phase is skipped, so the verdict
// is at best unknown) and returns the report with a nil error. The error
// is non-nil only when the harness itself failed (bad options, no database,
// a checkpoint that could not run); the report then holds what was found
// before it.
func Run(ctx context.Context, opts Options) (reports.Report, error) {
	if err := opts.defaults(); err != nil {
		return reports.Report{}, err
	}
	prof, _ := ProfileNamed(opts.Faults)
	s := &soak{
		opts:  opts,
		prof:  prof,
		start: time.Now(),
		log:   opts.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.rep = reports.Report{
		Schema:  reports.Schema,
		Kind:    reports.KindSoak,
		System:  opts.SystemName,
		Seed:    opts.Seed,
		Started: s.start.UTC(),
		Settings: reports.Settings{
			Duration:        reports.Duration(opts.Duration),
			Workers:         opts.Workers,
			Rate:            opts.Rate,
			Instances:       opts.Instances,
			Clients:         opts.Clients,
			Faults:          opts.Faults,
			CheckEvery:      reports.Duration(opts.CheckEvery),
			ConvergeTimeout: reports.Duration(opts.ConvergeTimeout),
			KeepGoing:       opts.KeepGoing,
			WholeHistory:    opts.WholeHistory,
			ProcessWorkers:  opts.Process != nil,
		},
		Postgres: reports.Postgres{
			Kind:     opts.Server.Kind(),
			Version:  opts.Server.Version(),
			Settings: opts.Server.Settings(),
		},
	}
	err := s.run(ctx)
	return s.rep, err
}

// soak is one call of Run.
type soak struct {
	opts  Options
	prof  Profile
	start time.Time
	log   *slog.Logger
	env   *sim.Env

	mu         sync.Mutex // guards the fields below and rep.Samples
	rep        reports.Report
	traffic    time.Duration // traffic time of finished segments
	segStart   time.Time     // zero while paused
	faults     map[string]int
	violations int

	evidenceFixed bool // rep.Evidence is the first check that found a violation

	// forgot counts what compaction dropped from the recorder, so that
	// counts of the live history plus it are the whole run's.
	forgotRequests reports.Requests
	forgotWork     reports.Work
	// reached are the paths every check so far reached: a compacted check
	// sees only its window's.
	reached map[string]bool
}

func (s *soak) run(ctx context.Context) (err error) {
	defer func() {
		s.rep.Elapsed = reports.Duration(time.Since(s.start).Round(time.Millisecond))
	}()
	env, err := sim.New(ctx, sim.Options{
		System:  s.opts.System,
		Server:  s.opts.Server,
		Workers: s.opts.Workers,
		Seed:    s.opts.Seed,
		Logger:  s.opts.EnvLogger,
		Settle:  s.opts.ConvergeTimeout,
		// Traffic goes on after a checkpoint, so every checkpoint heals.
		AlwaysHeal: true,
		// Hours of crashes must not pile up frozen incarnations.
		ReleaseCrashed: true,
		// A profile that restarts Postgres gets a server of the soak's own,
		// where one can be had; elsewhere its restarts are skipped.
		PrivateServer: s.prof.restarts() && s.opts.Server.Kind() != "dsn",
		Process:       s.opts.Process,
	})
	if err != nil {
		s.rep.Ended, s.rep.Verdict = reports.EndError, check.Unknown
		s.rep.Error = err.Error()
		s.rep.Reason = "the environment could not start"
		return fmt.Errorf("soak: %w", err)
	}
	s.env = env
	defer func() {
		if cerr := env.Close(); cerr != nil {
			s.log.Warn("soak: closing the environment", "err", cerr)
		}
	}()
	s.faults = map[string]int{}

	sampleCtx, stopSampling := context.WithCancel(context.WithoutCancel(ctx))
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s.sampleLoop(sampleCtx)
	}()
	defer func() {
		stopSampling()
		<-sampled
		s.sample(context.Background()) // the last point: the run's end state
	}()

	tr := newTraffic(s.opts.Seed, s.opts.Instances)
	nem := newNemesis(s, rand.New(rand.NewPCG(s.opts.Seed, sim.Stream("soak/nemesis"))))
	for i := 0; ; i++ {
		seg := min(s.opts.CheckEvery, s.opts.Duration-s.trafficTime())
		s.segment(ctx, seg, tr, nem)
		if ctx.Err() != nil {
			s.interrupted()
			return nil
		}
		final := s.trafficTime() >= s.opts.Duration
		cp, res, cerr := s.checkpoint(ctx, i, final)
		if cerr != nil {
			if ctx.Err() != nil {
				s.interrupted()
				return nil
			}
			s.rep.Ended = reports.EndError
			s.rep.Error = cerr.Error()
			s.decide()
			return fmt.Errorf("soak: checkpoint %d: %w", i, cerr)
		}
		s.log.Info("soak: checkpoint", "index", i, "traffic", cp.At.D(), "settled", cp.Settled,
			"verdict", cp.Verdict, "violations", cp.Violations, "new", cp.New, "took", cp.Took.D(), "checked", cp.Checked.D())
		if cp.New > 0 && !s.opts.KeepGoing {
			s.rep.Ended = reports.EndViolation
			s.rep.Reason = fmt.Sprintf("stopped at checkpoint %d, which found a violation (Options.KeepGoing, -keep-going, runs on)", i)
			s.finish(res)
			return nil
		}
		if !final {
			s.compact(res)
		}
		if s.opts.OnCheckpoint != nil {
			s.opts.OnCheckpoint(cp)
		}
		if final {
			s.rep.Ended = reports.EndCompleted
			s.finish(res)
			return nil
		}
	}
}

// compact forgets what a valid checkpoint proved (Options.WholeHistory).
func (s *soak) compact(res sim.Result) {
	if s.opts.WholeHistory || res.Verdict != check.Valid {
		return
	}
	forgot, err := s.env.Compact(res)
	if err != nil {
		s.log.Warn("soak: compacting the history", "err", err)
		return
	}
	s.mu.Lock()
	s.forgotRequests = s.forgotRequests.Add(reports.CountRequests(forgot))
	s.forgotWork = s.forgotWork.Add(reports.CountWork(forgot))
	s.mu.Unlock()
}

// reach adds the paths a check reached to the run's.
func (s *soak) reach(paths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reached == nil {
		s.reached = map[string]bool{}
	}
	for _, p := range paths {
		s.reached[p] = true
	}
}

// countLocked counts the whole run's requests and work: what the recorder
// holds (counted in place, Recorder.View: a copy would cost a long soak its
// whole history) and what compaction forgot.
func (s *soak) countLocked() (reports.Requests, reports.Work) {
	var q reports.Requests
	var w reports.Work
	s.env.Recorder().View(func(h history.Snapshot) { q, w = reports.CountRequests(h), reports.CountWork(h) })
	return s.forgotRequests.Add(q), s.forgotWork.Add(w)
}

func (s *soak) trafficTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traffic
	if !s.segStart.IsZero() {
		t += time.Since(s.segStart)
	}
	return t
}

func (s *soak) elapsed() reports.Duration {
	return reports.Duration(time.Since(s.start).Round(time.Millisecond))
}

// segment runs traffic and faults for d (or until ctx ends), then stops
// both and waits for every request in flight and the nemesis to finish.
func (s *soak) segment(ctx context.Context, d time.Duration, tr *traffic, nem *nemesisLoop) {
	segCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	s.mu.Lock()
	s.segStart = time.Now()
	s.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tr.run(segCtx, ctx, s.env, s.opts.Rate, s.opts.Clients)
	}()
	go func() {
		defer wg.Done()
		nem.run(segCtx)
	}()
	<-segCtx.Done()
	wg.Wait()
	s.mu.Lock()
	s.traffic += time.Since(s.segStart)
	s.segStart = time.Time{}
	s.mu.Unlock()
}

// checkpoint converges and checks every invariant on the history so far.
func (s *soak) checkpoint(ctx context.Context, i int, final bool) (reports.Checkpoint, sim.Result, error) {
	began := time.Now()
	cp := reports.Checkpoint{Index: i, At: reports.Duration(s.trafficTime().Round(time.Millisecond)), Elapsed: s.elapsed(), Final: final}
	record := func() {
		cp.Took = reports.Duration(time.Since(began).Round(time.Millisecond))
		s.rep.Checkpoints = append(s.rep.Checkpoints, cp)
	}
	res, err := s.env.Finish(ctx)
	if err != nil {
		cp.Error = err.Error()
		record()
		return cp, sim.Result{}, err
	}
	cp.Settled, cp.Verdict, cp.Violations = res.Settled, res.Verdict, len(res.Violations)
	cp.Checked = reports.Duration(res.Checked.Round(time.Millisecond))
	s.reach(res.Reached)
	s.mu.Lock()
	cp.New = s.rep.Merge(cp, res.Violations)
	s.violations = len(s.rep.Violations)
	s.mu.Unlock()
	s.keepEvidence(res, cp.New, final)
	record()
	return cp, res, nil
}

// keepEvidence keeps the input of the first check that found a violation,
// else of the latest one that was final or not valid. An intermediate valid
// check's input is dropped: it is a copy of the whole history and ledgers,
// and holding it until the next checkpoint would double a long soak's
// memory; the final check's input is kept for the report's plots.
func (s *soak) keepEvidence(res sim.Result, found int, final bool) {
	if s.evidenceFixed {
		return
	}
	if res.Verdict == check.Valid && !final {
		s.rep.Evidence = nil
		return
	}
	in := res.Input
	s.rep.Evidence = &in
	s.evidenceFixed = found > 0
}

// interrupted ends a cancelled run: a safety-only check (no liveness
// phase) of what was recorded, with a fresh bound since ctx is gone.
func (s *soak) interrupted() {
	s.rep.Ended = reports.EndInterrupted
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := s.env.CheckSafety(ctx)
	cp := reports.Checkpoint{Index: len(s.rep.Checkpoints), At: reports.Duration(s.trafficTime().Round(time.Millisecond)), Elapsed: s.elapsed(), Final: true}
	if err != nil {
		cp.Error = err.Error()
		s.rep.Checkpoints = append(s.rep.Checkpoints, cp)
		s.rep.Reason = "interrupted; the final check could not run: " + err.Error()
		s.finish(sim.Result{Input: check.Input{History: s.env.Recorder().Snapshot()}, Crashes: s.env.Gate().Hits(), Points: s.env.Gate().Reached()})
		return
	}
	cp.Verdict, cp.Violations = res.Verdict, len(res.Violations)
	s.mu.Lock()
	cp.New = s.rep.Merge(cp, res.Violations)
	s.violations = len(s.rep.Violations)
	s.mu.Unlock()
	s.keepEvidence(res, cp.New, true)
	s.rep.Checkpoints = append(s.rep.Checkpoints, cp)
	s.rep.Reason = "interrupted before the final checkpoint: safety was checked on what was recorded, liveness (lost work, convergence) was not"
	s.finish(res)
}

// finish fills the counts from the last check's input and decides.
func (s *soak) finish(res sim.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.TrafficTime = reports.Duration(s.traffic.Round(time.Millisecond))
	s.rep.Observe(res)
	// The check's history holds carried ops twice over and misses the forgotten.
	s.rep.Requests, s.rep.Work = s.countLocked()
	s.rep.Throughput = reports.ThroughputOf(s.rep.Requests, s.rep.Work, s.rep.TrafficTime.D())
	s.rep.Reached = nil
	for _, p := range check.Paths() {
		if s.reached[p] || slices.Contains(res.Reached, p) {
			s.rep.Reached = append(s.rep.Reached, p)
		}
	}
	s.rep.Unreached = reports.Unreached(s.rep.Reached)
	s.rep.Faults = reports.Counts(s.faults)
	s.decideLocked()
}

func (s *soak) decide() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.TrafficTime = reports.Duration(s.traffic.Round(time.Millisecond))
	s.rep.Faults = reports.Counts(s.faults)
	if s.env != nil {
		s.rep.Requests, s.rep.Work = s.countLocked()
		s.rep.CrashPoints = reports.CrashPoints(s.env.Gate().Hits())
	}
	s.decideLocked()
}

func (s *soak) decideLocked() {
	r := &s.rep
	n := len(r.Checkpoints)
	switch {
	case len(r.Violations) > 0:
		r.Verdict = check.Invalid
	case r.Ended == reports.EndCompleted && n > 0 && r.Checkpoints[n-1].Final && r.Checkpoints[n-1].Verdict == check.Valid:
		r.Verdict = check.Valid
	default:
		r.Verdict = check.Unknown
		if r.Reason == "" {
			r.Reason = "the final checkpoint did not run to its end"
		}
	}
}

// ---- sampling -------------------------------------------------------------

func (s *soak) sampleLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx)
		}
	}
}

// sample records one point of the time series.
func (s *soak) sample(ctx context.Context) {
	s.mu.Lock()
	q, w := s.countLocked()
	s.mu.Unlock()
	depth := -1
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	if snap, err := s.env.Inspect(ictx); err == nil {
		depth = len(snap.Work)
	}
	cancel()
	active := len(s.env.ActiveFaults()) + len(s.env.Providers().Faults().Faults)
	s.mu.Lock()
	phase := reports.PhaseCheckpoint
	traffic := s.traffic
	if !s.segStart.IsZero() {
		phase = reports.PhaseTraffic
		traffic += time.Since(s.segStart)
	}
	smp := reports.Sample{
		Elapsed:      s.elapsed(),
		Traffic:      reports.Duration(traffic.Round(time.Millisecond)),
		Phase:        phase,
		Requests:     q.Sent,
		Changes:      q.Accepted,
		Busy:         q.Busy,
		WorkDone:     w.Done,
		QueueDepth:   depth,
		ActiveFaults: active,
		Crashes:      len(s.env.Gate().Hits()),
		Violations:   s.violations,
	}
	footprint(&smp)
	s.rep.Samples = append(s.rep.Samples, smp)
	s.mu.Unlock()
	if s.opts.Progress != nil {
		s.opts.Progress(smp)
	}
}

// note records one nemesis action: counted by kind, and kept as an event.
func (s *soak) note(kind, target, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[kind]++
	s.rep.Events = append(s.rep.Events, reports.Event{Elapsed: s.elapsed(), Kind: kind, Target: target, Detail: detail})
}

// ---- traffic --------------------------------------------------------------

// traffic draws user requests on a bounded set of instance ids. It keeps a
// belief of which ids exist (from the answers) so that most requests make
// sense, while a few ask for what is not there.
type traffic struct {
	rng *rand.Rand // drawn by the ticking goroutine only
	ids []string

	mu     sync.Mutex
	exists map[string]bool
}

var sizes = []string{"small", "medium", "large"}

func newTraffic(seed uint64, instances int) *traffic {
	t := &traffic{rng: rand.New(rand.NewPCG(seed, sim.Stream("soak/traffic"))), exists: map[string]bool{}}
	for i := 1; i <= instances; i++ {
		t.ids = append(t.ids, fmt.Sprintf("i%d", i))
	}
	return t
}

func (t *traffic) draw() contract.Request {
	id := t.ids[t.rng.IntN(len(t.ids))]
	size := sizes[t.rng.IntN(len(sizes))]
	p := t.rng.IntN(100)
	t.mu.Lock()
	exists := t.exists[id]
	t.mu.Unlock()
	req := contract.Request{Instance: id}
	if !exists {
		switch {
		case p < 85:
			req.Op, req.Size = contract.OpCreate, size
		case p < 92:
			req.Op, req.Size = contract.OpResize, size // not found, mostly
		default:
			req.Op = contract.OpGet
		}
		return req
	}
	switch {
	case p < 4:
		req.Op, req.Size = contract.OpCreate, size // exists, mostly
	case p < 59:
		req.Op, req.Size = contract.OpResize, size
	case p < 84:
		req.Op = contract.OpGet
	default:
		req.Op = contract.OpDelete
	}
	return req
}

// learn updates the belief from an answer.
func (t *traffic) learn(req contract.Request, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil && req.Op == contract.OpCreate:
		t.exists[req.Instance] = true
	case err == nil && req.Op == contract.OpDelete:
		t.exists[req.Instance] = false
	case errors.Is(err, contract.ErrExists):
		t.exists[req.Instance] = true
	case errors.Is(err, contract.ErrNotFound):
		t.exists[req.Instance] = false
	}
}

// run sends requests at rate until segCtx ends, through clients that each
// have one request in flight at most. Requests run with ctx (the run's),
// not segCtx: at the end of a segment the ones in flight finish normally
// rather than being cut, so a checkpoint never starts with a request
// pending.
func (t *traffic) run(segCtx, ctx context.Context, e *sim.Env, rate float64, clients int) {
	reqs := make(chan contract.Request, clients)
	var wg sync.WaitGroup
	for i := 1; i <= clients; i++ {
		name := fmt.Sprintf("c%d", i) // the same names every segment: one request in flight each
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range reqs {
				_, err := e.Serve(ctx, name, req)
				t.learn(req, err)
			}
		}()
	}
	defer func() {
		close(reqs)
		wg.Wait()
	}()
	if rate <= 0 {
		<-segCtx.Done()
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for {
		select {
		case <-segCtx.Done():
			return
		case <-tick.C:
			req := t.draw()
			select {
			case reqs <- req:
			default: // every client busy: the system is slower than the rate
			}
		}
	}
}
