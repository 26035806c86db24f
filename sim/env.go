package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/netfault"
	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/proc"
)

// Postgres is the upstream name of the database; every other upstream is a
// provider, named by its fakes.Spec.
const Postgres = "postgres"

// Upstreams lists every upstream a worker reaches through its own link, in a
// fixed order: Postgres, then the providers of fakes.Specs.
func Upstreams() []string { return append([]string{Postgres}, fakes.ServiceNames()...) }

// Options configures an Env.
type Options struct {
	// System is the system under test; required.
	System contract.System
	// Server holds the run's database; required (see pgenv.Start).
	Server *pgenv.Server
	// Template names the system's migrated template on Server, shared by
	// runs of systems with the same schema; zero: the System's Go type.
	Template string
	// Workers is how many worker slots run; zero: 2.
	Workers int
	// Seed is the root of every seeded stream of the run (per-incarnation
	// rand, the scheduler's picks). Zero is a seed like any other.
	Seed uint64
	// Logger receives the run's log; zero: discard.
	Logger *slog.Logger
	// Scheduled starts in scheduled mode: workers park at every crash point
	// until Step lets one go. Zero: free-running.
	Scheduled bool
	// Lag is the fake cloud's read-after-write lag; zero: none.
	Lag time.Duration
	// PoolSize caps each worker's connections; zero: 4.
	PoolSize int32
	// ServeTimeout bounds each Serve; zero: 5s.
	ServeTimeout time.Duration
	// ProviderTimeout is how long the system under test waits for a
	// provider call, so that latency faults can aim just under and just
	// over it; zero: 2s.
	ProviderTimeout time.Duration
	// Liveness overrides, field by field, the promises the system declares
	// (contract.LivenessOf): the bounds of a takeover, of the liveness
	// phase and of parking, what holds a claim, the listener's name. Zero:
	// what the system declares, else the contract's defaults.
	Liveness contract.Liveness
	// Settle, when set, overrides Liveness.Settle: how long the system may
	// take to settle once every fault is healed (the liveness phase of
	// Finish). Zero: the system's promise.
	Settle time.Duration
	// AlwaysHeal makes Finish run its liveness phase even when a safety
	// violation is already recorded, for a run that goes on after Finish (a
	// soak's checkpoints); zero: Finish returns at the first proof.
	AlwaysHeal bool
	// PrivateServer runs the run's database on a Postgres server of its own
	// (an ephemeral cluster started from Server's binaries, ~0.2s), so that
	// a Postgres restart fault (RestartPostgres) hits this run alone. On a
	// DSN server it is unavailable: New fails with an error matching
	// ErrUnavailable. Zero: the database lives on Server.
	PrivateServer bool
	// ReleaseCrashed lets a crashed incarnation go as soon as its slot has
	// a new one: its frozen goroutine returns (every point then fails with
	// crash.ErrCrashed, its links being dead), and its pool, links and
	// transports are closed. A long run (a soak) then holds no goroutines
	// or sockets of incarnations long dead. Zero: crashed incarnations stay
	// frozen until Close, as after a SIGKILL nothing of theirs runs again.
	ReleaseCrashed bool
	// Process, when set, runs every worker incarnation as a child process
	// (package sim/proc): Process is its command, a binary whose worker
	// mode serves the same system with proc.Serve (such as "simrun worker
	// -system kvx"), started with the incarnation's proc.Spec. Kill is
	// then a real SIGKILL. A child has no crash points: Crash, OnPoint and
	// scheduled mode fail with ErrUnavailable, and the clock offset does
	// not reach it. Zero: every worker is a goroutine of this process.
	Process []string
}

// ErrUnavailable is wrapped by every error that says a fault cannot run on
// this environment (a Postgres restart on a shared server): the caller
// reports it as not run, never as passed.
var ErrUnavailable = errors.New("sim: fault unavailable here")

// Env is one run of a system under test. Its methods are safe for
// concurrent use, but a scenario normally drives it from one goroutine.
type Env struct {
	opts    Options
	sys     contract.System
	log     *slog.Logger
	clock   *fakes.OffsetClock
	db      *pgenv.Database
	private *pgenv.Server   // the run's own server (Options.PrivateServer); nil: none
	admin   *pgxpool.Pool   // the harness's own: Inspect, resume, terminate
	apiTr   pgx.QueryTracer // on every API pool: its statements are points of actor "api:<client>"
	net     *netfault.Network
	world   *fakes.World
	gate    *crash.Gate
	rec     *history.Recorder

	mu    sync.Mutex
	apis  map[string]*apiClient // by client name
	napis int                   // API links made, for unique names
	// apiFaulted are the API links with a fault on (APILinkFault), for
	// HealLinks.
	apiFaulted []*netfault.Link
	slots      map[string]*slot
	incs       map[string]*incarnation // by incarnation name
	sched      *rand.Rand
	faults     map[string]bool // active link faults "w1.2/postgres latency(…)"; for reporting
	wg         sync.WaitGroup
	closing    bool
	bugs       map[string]fakes.Fault // deployed bugs by name
	// observed are the violations the scenario saw itself (Violate).
	observed []check.Violation
	// carry is what Compact kept of the history it forgot, and forgotOps
	// the Index of the first op the recorder still holds.
	carry     check.Input
	forgotOps int
	nfaults   int      // provider faults so far, for unique IDs
	lagged    bool     // SetProviderLag changed the cloud's lag
	sqlFaults int      // injected SQL errors so far, for unique names
	sqlIDs    []string // the sequences of injected SQL errors still on
}

type slot struct {
	name string
	n    int // incarnations started
	cur  *incarnation
}

type incarnation struct {
	name       string
	slot       string
	links      map[string]*netfault.Link
	pool       *pgxpool.Pool
	transports []*http.Transport
	cancel     context.CancelFunc
	done       chan struct{}
	err        error // Work's return, once done is closed
	severed    bool
	child      *proc.Child // Options.Process: the worker process; else nil
}

// New starts a run: a fresh database cloned from the system's migrated
// template, the four fakes, the network and the workers.
func New(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.System == nil {
		return nil, errors.New("sim: Options.System is required")
	}
	if opts.Server == nil {
		return nil, errors.New("sim: Options.Server is required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Template == "" {
		opts.Template = templateName(opts.System)
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 4
	}
	if opts.ServeTimeout <= 0 {
		opts.ServeTimeout = 5 * time.Second
	}
	if opts.ProviderTimeout <= 0 {
		opts.ProviderTimeout = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Liveness = LivenessOf(opts.System, opts.Liveness)
	if opts.Settle > 0 {
		opts.Liveness.Settle = opts.Settle
	}
	opts.Settle = opts.Liveness.Settle
	if opts.Process != nil && opts.Scheduled {
		return nil, errNoPoints("scheduled mode")
	}
	e := &Env{
		opts:   opts,
		sys:    opts.System,
		log:    log,
		clock:  fakes.NewOffsetClock(),
		slots:  map[string]*slot{},
		apis:   map[string]*apiClient{},
		incs:   map[string]*incarnation{},
		sched:  rand.New(rand.NewPCG(opts.Seed, Stream("scheduler"))),
		faults: map[string]bool{},
		bugs:   map[string]fakes.Fault{},
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.rec = history.New(history.Options{Clock: e.clock})
	e.gate = crash.New(e.clock.Now, crash.Options{OnCrash: e.onCrash, Scheduled: opts.Scheduled})

	if opts.PrivateServer {
		if e.private, err = startPrivate(ctx, opts.Server); err != nil {
			return nil, err
		}
		e.opts.Server = e.private
	}
	migrate := func(ctx context.Context, db *pgxpool.Pool) error {
		if err := opts.System.Migrate(ctx, db); err != nil {
			return err
		}
		return installSQLFaults(ctx, db)
	}
	tpl, err := e.opts.Server.Template(ctx, opts.Template, migrate)
	if err != nil {
		return nil, fmt.Errorf("sim: template %q: %w", opts.Template, err)
	}
	if e.db, err = e.opts.Server.CreateDatabase(ctx, tpl); err != nil {
		return nil, fmt.Errorf("sim: database: %w", err)
	}
	if e.admin, err = e.newPool(ctx, e.db.DSN(), "workproof-harness", nil); err != nil {
		return nil, fmt.Errorf("sim: connect: %w", err)
	}
	e.apiTr = e.gate.ActorTracer("api")
	if e.world, err = fakes.Start(fakes.Options{Clock: e.clock, Logger: log, Lag: opts.Lag}); err != nil {
		return nil, fmt.Errorf("sim: fakes: %w", err)
	}
	if e.net, err = netfault.New(netfault.Options{Logger: log}); err != nil {
		return nil, fmt.Errorf("sim: network: %w", err)
	}
	for i := 1; i <= opts.Workers; i++ {
		name := fmt.Sprintf("w%d", i)
		e.slots[name] = &slot{name: name}
		if err := e.start(ctx, name); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// LivenessOf is the promises sys declares (contract.LivenessOf) with
// override's non-zero fields in their place.
func LivenessOf(sys contract.System, override contract.Liveness) contract.Liveness {
	l := contract.LivenessOf(sys)
	if override.Takeover > 0 {
		l.Takeover = override.Takeover
	}
	if override.Settle > 0 {
		l.Settle = override.Settle
	}
	if override.ParkVisibleWithin > 0 {
		l.ParkVisibleWithin = override.ParkVisibleWithin
	}
	if override.Claim != "" {
		l.Claim = override.Claim
	}
	if override.ListenerApplicationName != "" {
		l.ListenerApplicationName = override.ListenerApplicationName
	}
	return l
}

// Liveness returns the run's promises: the system's, with Options'
// overrides, every field set.
func (e *Env) Liveness() contract.Liveness { return e.opts.Liveness }

// sessionLost records, before fault acts, that it is cutting worker's
// database session, and returns the func to call once it has acted. Whether
// that ends the worker's claim is the system's (Liveness.Claim): a session's
// lock goes with the session, and the worker's interval ends there (see
// history.Recorder.LeaseLost); a committed row outlives it, and the
// worker stays inside its item until it says it left.
func (e *Env) sessionLost(worker, fault string) (acted func()) {
	if e.opts.Liveness.Claim == contract.ClaimRow {
		e.rec.SessionLost(worker, fault)
		return func() {}
	}
	return e.rec.LeaseLost(worker, fault)
}

func templateName(sys contract.System) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%T", sys)
	return fmt.Sprintf("sut_%08x", h.Sum32())
}

// Stream derives a seeded stream's second PCG word from its name, so every
// component draws from its own stream of the one root seed.
func Stream(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func (e *Env) newPool(ctx context.Context, dsn, app string, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = e.opts.PoolSize
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.ConnConfig.Tracer = tracer
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := pgxpool.NewWithConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	if tracer == nil { // a worker's pool may start behind a fault; the harness's must work
		if err := p.Ping(cctx); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// start begins a new incarnation of slot: new links, a new pool, new clients.
func (e *Env) start(ctx context.Context, slotName string) error {
	e.mu.Lock()
	s := e.slots[slotName]
	if s == nil {
		e.mu.Unlock()
		return fmt.Errorf("sim: no worker %q", slotName)
	}
	if e.closing {
		e.mu.Unlock()
		return errors.New("sim: closing")
	}
	s.n++
	inc := &incarnation{name: fmt.Sprintf("%s.%d", slotName, s.n), slot: slotName, links: map[string]*netfault.Link{}, done: make(chan struct{})}
	e.mu.Unlock()

	upstream := map[string]string{Postgres: e.opts.Server.HostPort()}
	for _, srv := range e.world.Servers() {
		upstream[srv.Service()] = srv.Addr()
	}
	for _, up := range Upstreams() {
		l, err := e.net.Link(inc.name+"/"+up, upstream[up])
		if err != nil {
			e.closeLinks(inc)
			return fmt.Errorf("sim: link %s/%s: %w", inc.name, up, err)
		}
		inc.links[up] = l
	}
	if e.opts.Process != nil {
		return e.spawn(inc, s)
	}
	pool, err := e.newPool(ctx, e.db.DSNVia(inc.links[Postgres].Addr()), inc.name, e.gate.Tracer(inc.name))
	if err != nil {
		e.closeLinks(inc)
		return fmt.Errorf("sim: worker %s pool: %w", inc.name, err)
	}
	inc.pool = pool
	services := map[string]contract.Service{}
	for _, spec := range fakes.Specs() {
		tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
		inc.transports = append(inc.transports, tr)
		services[spec.Name] = contract.Service{
			URL: "http://" + inc.links[spec.Name].Addr(),
			HTTPClient: &http.Client{Transport: proc.CallerTransport{Caller: inc.name,
				Base: e.gate.Transport(inc.name, callPoint(spec), tr)}},
		}
	}
	deps := contract.Deps{
		Worker:   inc.name,
		Services: services,
		Logger:   e.log.With("worker", inc.name),
		Clock:    e.clock,
		Rand:     rand.New(rand.NewPCG(e.opts.Seed, Stream("worker/"+inc.name))),
		Observer: gateObserver{o: e.rec.Observer(inc.name), g: e.gate, worker: inc.name},
	}
	// The worker's ctx outlives a crash on purpose: a crashed worker must not
	// observe anything (no ctx.Done, no deferred code) until Close.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inc.cancel = cancel
	if !e.adopt(inc, s) {
		cancel()
		pool.Close()
		e.closeLinks(inc)
		return errors.New("sim: closing")
	}
	go func() {
		defer e.wg.Done()
		defer close(inc.done)
		inc.err = e.sys.Work(wctx, pool, deps)
		if inc.err != nil && wctx.Err() == nil && !e.gate.Crashed(inc.name) {
			e.log.Warn("sim: worker returned early", "worker", inc.name, "err", inc.err)
		}
	}()
	return nil
}

// adopt makes inc its slot's current incarnation and counts its goroutine
// in e.wg, unless the Env is closing; a crashed predecessor is released
// (Options.ReleaseCrashed).
func (e *Env) adopt(inc *incarnation, s *slot) bool {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return false
	}
	prev := s.cur
	s.cur = inc
	e.incs[inc.name] = inc
	e.wg.Add(1)
	bury := e.opts.ReleaseCrashed && prev != nil && e.gate.Crashed(prev.name)
	if bury {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if bury {
		go e.release(prev)
	}
	return true
}

// spawn starts inc as a worker process (Options.Process) on its links. The
// intervals it reports are recorded at the times it stamped, shifted by the
// harness clock's offset.
func (e *Env) spawn(inc *incarnation, s *slot) error {
	spec := proc.Spec{
		Worker:   inc.name,
		DSN:      e.db.DSNVia(inc.links[Postgres].Addr()),
		Services: map[string]string{},
		Seed:     rand.New(rand.NewPCG(e.opts.Seed, Stream("worker/"+inc.name))).Uint64(),
		PoolSize: e.opts.PoolSize,
	}
	for _, name := range fakes.ServiceNames() {
		spec.Services[name] = "http://" + inc.links[name].Addr()
	}
	var mu sync.Mutex
	open := map[int]func(string, time.Time){}
	on := func(ev proc.Event) {
		at := ev.Time().Add(e.clock.Offset())
		mu.Lock()
		defer mu.Unlock()
		if ev.Begin {
			open[ev.Seq] = e.rec.BeginAt(inc.name, ev.Item, ev.Key, at)
			return
		}
		if end := open[ev.Seq]; end != nil {
			delete(open, ev.Seq)
			end(ev.Outcome, at)
		}
	}
	child, err := proc.Start(e.opts.Process, spec, on, e.log)
	if err != nil {
		e.closeLinks(inc)
		return fmt.Errorf("sim: worker %s: %w", inc.name, err)
	}
	inc.child, inc.cancel = child, func() {}
	if !e.adopt(inc, s) {
		child.Kill()
		e.closeLinks(inc)
		return errors.New("sim: closing")
	}
	go func() {
		defer e.wg.Done()
		defer close(inc.done)
		inc.err = child.Err()
		if !e.gate.Crashed(inc.name) && !e.isClosing() {
			e.log.Warn("sim: worker process exited on its own", "worker", inc.name, "err", inc.err)
		}
	}()
	return nil
}

func (e *Env) isClosing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closing
}

// release lets crashed incarnation inc go (Options.ReleaseCrashed) and frees
// what it held. Its links were severed when it crashed, so what its
// goroutine does on the way out reaches nothing.
func (e *Env) release(inc *incarnation) {
	defer e.wg.Done()
	inc.cancel()
	e.gate.Bury(inc.name)
	<-inc.done
	e.closeLinks(inc)
	if inc.pool != nil {
		inc.pool.Close()
	}
	for _, tr := range inc.transports {
		tr.CloseIdleConnections()
	}
	e.mu.Lock()
	delete(e.incs, inc.name)
	e.mu.Unlock()
}

// callPoint names a provider call's crash point by the endpoint the fake
// will record it under ("cloud:CreateVM"); a call no endpoint takes is
// named by its method and path.
func callPoint(spec fakes.Spec) func(*http.Request) string {
	return func(r *http.Request) string {
		if e, ok := spec.Classify(r); ok {
			return e.Point()
		}
		return spec.Name + ":" + r.Method + " " + r.URL.Path
	}
}

// gateObserver tells the crash gate which work item a worker is inside, so
// that faults can aim at a point of one item (crash.Rule.Item) and traces
// name points by item.
type gateObserver struct {
	o      contract.Observer
	g      *crash.Gate
	worker string
}

func (o gateObserver) Begin(item, key string) func(string) {
	o.g.Enter(o.worker, item, key)
	end := o.o.Begin(item, key)
	return func(outcome string) {
		o.g.Leave(o.worker)
		end(outcome)
	}
}

func (e *Env) closeLinks(inc *incarnation) {
	for _, l := range inc.links {
		_ = l.Close()
	}
}

// onCrash runs on the crashing worker's goroutine, before it freezes.
func (e *Env) onCrash(worker, point string) {
	e.sever(worker, point)
}

func (e *Env) sever(worker, point string) {
	e.mu.Lock()
	inc := e.incs[worker]
	already := inc == nil || inc.severed
	if inc != nil {
		inc.severed = true
	}
	e.mu.Unlock()
	if already {
		return
	}
	e.rec.Crash(worker, point)
	for _, up := range Upstreams() {
		if err := inc.links[up].Sever(); err != nil {
			e.log.Warn("sim: sever", "link", inc.links[up].Name(), "err", err)
		}
	}
	for _, tr := range inc.transports {
		tr.CloseIdleConnections()
	}
}

// Workers returns the worker slot names, sorted ("w1", "w2", …).
func (e *Env) Workers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.slots))
	for n := range e.slots {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Incarnation returns the name of slot's current incarnation ("w1.3").
func (e *Env) Incarnation(slotName string) (string, error) {
	inc, err := e.current(slotName)
	if err != nil {
		return "", err
	}
	return inc.name, nil
}

func (e *Env) current(slotName string) (*incarnation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.slots[slotName]
	if s == nil || s.cur == nil {
		return nil, fmt.Errorf("sim: no worker %q", slotName)
	}
	return s.cur, nil
}

// ProviderTimeout is how long the system waits for a provider call
// (Options.ProviderTimeout).
func (e *Env) ProviderTimeout() time.Duration { return e.opts.ProviderTimeout }

// Recorder returns the run's history recorder.
func (e *Env) Recorder() *history.Recorder { return e.rec }

// Providers returns the run's fakes (for their ledgers and fault plans).
func (e *Env) Providers() *fakes.World { return e.world }

// Gate returns the run's crash gate.
func (e *Env) Gate() *crash.Gate { return e.gate }

// Clock returns the run's clock, shared by the fakes, the recorder and the
// workers. Advance it to expire idempotency keys and tokens.
func (e *Env) Clock() *fakes.OffsetClock { return e.clock }

// Database returns the run's database.
func (e *Env) Database() *pgenv.Database { return e.db }

// Serve sends one request to the system, recorded in the history as client's.
func (e *Env) Serve(ctx context.Context, client string, req contract.Request) (contract.Response, error) {
	return e.rec.Do(client, req, func(r contract.Request) (contract.Response, error) {
		ctx, cancel := context.WithTimeout(crash.WithActor(ctx, APIActor(client)), e.opts.ServeTimeout)
		defer cancel()
		pool, err := e.apiPool(ctx, client)
		if err != nil {
			return contract.Response{}, err
		}
		return e.sys.Serve(ctx, pool, r)
	})
}

// APIActor is the crash-point actor of client's requests: Gate().OnPoint
// on it runs an action at a point of a request (see Serve).
func APIActor(client string) string { return "api:" + client }

// Inspect asks the system for its own state.
func (e *Env) Inspect(ctx context.Context) (contract.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	return e.sys.Inspect(ctx, e.admin)
}

// Close stops every worker (crashed ones are let go with their links long
// dead), closes the links, the fakes and the pools, and drops the database.
func (e *Env) Close() error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil
	}
	e.closing = true
	incs := make([]*incarnation, 0, len(e.incs))
	for _, inc := range e.incs {
		incs = append(incs, inc)
	}
	e.mu.Unlock()

	// Crashed workers first get dead links, then are let go; live ones are
	// cancelled and shut down gracefully.
	var stopping sync.WaitGroup
	for _, inc := range incs {
		if e.gate != nil && e.gate.Crashed(inc.name) {
			e.sever(inc.name, "close")
		}
		inc.cancel()
		if inc.child != nil && !e.gate.Crashed(inc.name) {
			stopping.Go(func() {
				if err := inc.child.Stop(20 * time.Second); err != nil {
					e.log.Warn("sim: worker process", "worker", inc.name, "err", err)
				}
			})
		}
	}
	stopping.Wait()
	var errs []error
	if e.gate != nil {
		e.gate.Close()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		var stuck []string
		for _, inc := range incs {
			select {
			case <-inc.done:
			default:
				stuck = append(stuck, inc.name)
			}
		}
		errs = append(errs, fmt.Errorf("sim: workers did not stop within 30s: %v", stuck))
		// Severing makes every blocked call of theirs fail.
		for _, inc := range incs {
			e.sever(inc.name, "close")
		}
		<-done
	}
	// Links first: a pool closing a connection stuck behind a blackhole
	// would wait for it.
	for _, inc := range incs {
		e.closeLinks(inc)
		if inc.pool != nil {
			inc.pool.Close()
		}
		for _, tr := range inc.transports {
			tr.CloseIdleConnections()
		}
	}
	if e.net != nil {
		errs = append(errs, e.net.Close())
	}
	if e.world != nil {
		errs = append(errs, e.world.Close())
	}
	if e.admin != nil {
		e.admin.Close()
	}
	e.mu.Lock()
	apis := e.apis
	e.apis = map[string]*apiClient{}
	e.mu.Unlock()
	for _, c := range apis {
		_ = c.link.Close()
		c.pool.Close()
	}
	if e.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, e.db.Drop(ctx))
		cancel()
	}
	if e.private != nil {
		errs = append(errs, e.private.Close())
	}
	return errors.Join(errs...)
}

// Violate records a violation the scenario observed itself while it ran,
// one that no ledger or state will show afterwards: typically a liveness
// bound missed while a fault lasted (no other worker took over a stalled
// item in time). Check reports it with the checkers' own (as
// check.Input.Observed), which makes the run invalid.
func (e *Env) Violate(v check.Violation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observed = append(e.observed, v)
}

// Result is what a run's checks found, with the evidence they read.
type Result struct {
	check.Result
	Input   check.Input
	Crashes []crash.Hit
	// Points counts how often each crash point was passed.
	Points map[string]int
	// Settled says the system settled within Options.Settle in the liveness
	// phase of Finish; false for CheckSafety.
	Settled bool
	// Checked is how long reading the three sources and running the
	// checkers took: the part of a check that grows with what it reads.
	Checked time.Duration
}

// Finish ends a run the one way every run ends: the liveness phase — heal
// every link, clear every provider fault, deploy every fix, remove injected
// SQL errors, leave scheduled mode, restart crashed workers, resume parked
// work, then wait (bounded by Options.Settle) for the system to settle and
// for provider requests still in flight to land — and then every invariant
// checker on the three sources of truth (history, the fakes' ledgers, the
// system's own state). Once nothing is broken any more, not settling is a
// bug, which the state checks report. When the safety checkers already
// find a violation before the liveness phase, Finish returns that result
// at once (Settled false), unless Options.AlwaysHeal. The Env stays usable: a soak runs traffic again
// after each checkpoint's Finish.
func (e *Env) Finish(ctx context.Context) (Result, error) {
	// A request still in flight would land during the checks and make the
	// state disagree with the history read a moment before.
	Await(ctx, e.opts.ServeTimeout+time.Second, func() bool { return e.rec.Pending() == 0 })
	// A safety violation already recorded (two charges, a race, a retry
	// storm) needs no liveness phase to be proven: the run ends at once,
	// without waiting out a system that, broken, may never settle.
	if !e.opts.AlwaysHeal {
		if early, err := e.check(ctx, false); err == nil && early.Verdict == check.Invalid {
			return early, nil
		}
	}
	healed := time.Now()
	settled, err := e.converge(ctx, e.opts.Settle)
	if err != nil {
		return Result{}, fmt.Errorf("sim: liveness phase: %w", err)
	}
	if !settled {
		// Late is a violation of its own, whatever the state shows once
		// it came: watch a while longer, to say how late.
		late, err := e.awaitSettled(ctx, e.opts.Settle/2)
		if err != nil {
			return Result{}, fmt.Errorf("sim: liveness phase: %w", err)
		}
		took := fmt.Sprintf("not settled after %v", time.Since(healed).Round(100*time.Millisecond))
		if late {
			took = fmt.Sprintf("took %v", time.Since(healed).Round(100*time.Millisecond))
		}
		e.Violate(check.Violation{Invariant: check.InvConvergence, Rule: RuleSettleBound,
			Message: fmt.Sprintf("promised to settle within %v once every fault was healed (Liveness.Settle), %s", e.opts.Settle, took)})
	}
	e.awaitInFlight(ctx, e.opts.ProviderTimeout+time.Second)
	res, err := e.check(ctx, true)
	res.Settled = settled
	return res, err
}

// RuleSettleBound is the violation of a system that settled later than it
// promised (contract.Liveness.Settle), or not at all.
const RuleSettleBound = "settle-bound"

// CheckSafety checks what was recorded so far with no liveness phase, for a
// run cut short (interrupted): the safety checkers run, lost work and
// convergence cannot be decided, so the verdict is at best Unknown.
func (e *Env) CheckSafety(ctx context.Context) (Result, error) { return e.check(ctx, false) }

func (e *Env) check(ctx context.Context, healed bool) (Result, error) {
	// History first, then state, then ledger: whatever happens between two
	// reads then shows in the later one as something the earlier one may
	// not explain yet (a pending request, an effect), which the checkers
	// treat as unknown or as evidence, never as a missing cause.
	began := time.Now()
	history := e.rec.Snapshot()
	state, err := e.Inspect(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("sim: inspect: %w", err)
	}
	e.mu.Lock()
	observed := slices.Clone(e.observed)
	carry := e.carry
	e.mu.Unlock()
	in := check.Input{
		History:  history,
		Ledger:   e.world.Snapshot(),
		State:    state,
		Healed:   healed,
		Observed: observed,
	}.Merge(carry)
	res := check.Check(in)
	return Result{Result: res, Input: in, Crashes: e.gate.Hits(), Points: e.gate.Reached(), Checked: time.Since(began)}, nil
}

// ErrNotCompactable is Compact's answer to a check that proved nothing to
// forget.
var ErrNotCompactable = errors.New("sim: only a valid check of Finish can be compacted")

// Compact forgets what res, a Valid result of Finish, proved: the recorded
// history and the providers' requests it was taken on, except what later
// checks still need (check.Compact), which every later check reads with
// the new history, and the providers' state of an instance's ended
// lifetimes but the latest (fakes.World.Forget, told which instances res's
// state no longer has). It returns what the recorder forgot, for a caller that
// counts the whole run. A run of hours (a soak) calls it after each valid
// checkpoint, so that its memory and the time of each check stay those of
// one window between checkpoints; the report of a later check then shows
// its window (and the carried ops), not the whole run. Nothing may act
// between Finish and Compact: res must have been taken at a quiescent
// point, with traffic and faults stopped.
func (e *Env) Compact(res Result) (history.Snapshot, error) {
	if res.Verdict != check.Valid || !res.Input.Healed {
		return history.Snapshot{}, ErrNotCompactable
	}
	carry := check.Compact(res.Input)
	forgot := e.rec.Forget(history.MarkOf(res.Input.History))
	instances := map[string]bool{}
	for _, in := range res.Input.State.Instances {
		instances[in.ID] = true
	}
	e.world.Forget(res.Input.Ledger, func(owner string) bool { return !instances[owner] })
	e.gate.ForgetEntries()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forgotOps = max(e.forgotOps, history.MarkOf(forgot).Ops)
	// An op the recorder still holds is in every later history already.
	carry.History.Ops = slices.DeleteFunc(carry.History.Ops, func(o history.Op) bool { return o.Index >= e.forgotOps })
	e.carry = carry
	return forgot, nil
}

// awaitInFlight waits, at most bound, until no provider request is in
// flight: a worker that lost its claim and goes on acting (a zombie) lands
// its calls late, and a check taken before they land would miss the double
// effect they make.
func (e *Env) awaitInFlight(ctx context.Context, bound time.Duration) {
	Await(ctx, bound, func() bool {
		for _, r := range e.world.Snapshot().Requests {
			if r.End.IsZero() {
				return false
			}
		}
		return true
	})
}
