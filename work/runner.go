package work

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Observer is told when a worker enters and leaves an item. Begin is called
// right after the claim, on the worker's goroutine; end is called once, when
// the worker has left the item (after COMMIT and AfterCommit hooks, or after
// giving the item back). Observers are called concurrently from all workers.
type Observer interface {
	Begin(it Item) (end func(outcome Outcome))
}

// Outcome is how a worker left an item.
type Outcome string

const (
	OutcomeDone   Outcome = "done"   // committed
	OutcomeRetry  Outcome = "retry"  // transient error, attempt recorded
	OutcomeParked Outcome = "parked" // intransient error, parked
	OutcomeError  Outcome = "error"  // the outcome is unknown (lost connection, COMMIT unanswered)
	// OutcomeAbandoned: the transaction was rolled back on purpose and the
	// item reappears unchanged, without an attempt recorded — at shutdown,
	// or when recording a failed attempt was refused by the server.
	OutcomeAbandoned Outcome = "abandoned"
)

// Strategy names a claim query.
type Strategy string

const (
	// SkipLocked: DELETE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING …,
	// looking from the worker's claim floor on first (see floor in claim.go).
	SkipLocked Strategy = "skip-locked"
	// Seed: the seed's literal claim query, without SKIP LOCKED: workers queue
	// on the same row lock. Kept to measure what SKIP LOCKED buys. Its claim
	// waits at most lock_timeout = DBTimeout/2 for another worker's row.
	Seed Strategy = "seed"
)

// RunnerOptions configures a Runner. Every zero value is usable.
type RunnerOptions struct {
	Handlers     map[string]Handler // by Job.Kind; an item of an unknown kind is parked (ErrNoHandler)
	Workers      int                // concurrent workers; zero: 1
	Strategy     Strategy           // zero: SkipLocked
	PollInterval time.Duration      // polling fallback when no notification arrives; zero: 1s
	// DBTimeout bounds every database call the runner makes (claim, commit,
	// recording an attempt, LISTEN); a handler's own calls through its Tx get
	// StatementTimeout + DBTimeout. zero: 5s.
	DBTimeout time.Duration
	// FenceTimeout bounds each fence statement (Tx.Fence), and is what
	// Tx.FenceCall allows between asking for a fence and starting the call
	// it covers: a fence lasts FenceTimeout plus the call's effect bound
	// past it. Shorter fences hold a lost claim's key for less time; a fence
	// not confirmed within it fails (transient) and the call is not made.
	// zero: DBTimeout.
	FenceTimeout time.Duration
	// Set by every claim, for the rest of its transaction (as SET LOCAL
	// does), as idle_in_transaction_session_timeout and statement_timeout (the pool
	// is the caller's, so sessions are not changed for good); zero: 10s and
	// 30s. IdleInTxTimeout is how long a silent worker (partitioned,
	// blackholed, frozen) can hold its item, and it must exceed the longest
	// pause between two statements of a handler, such as a call to an
	// external system.
	IdleInTxTimeout, StatementTimeout time.Duration
	// Backoff for transient errors: min(MaxBackoff, MinBackoff·2^attempts),
	// with jitter in [d/2, d); zero: 100ms and 30s. The same schedule paces
	// reconnecting the LISTEN connection.
	MinBackoff, MaxBackoff time.Duration
	// Clock times the logs and when a worker next claims from the head of
	// the queue rather than from its floor (run_after uses the database's
	// clock); zero: time.Now.
	Clock interface{ Now() time.Time }
	// Rand draws the jitter; the runner serialises its use, but it must
	// not be used elsewhere (or by another Runner) meanwhile. zero: a fixed
	// seed.
	Rand     *rand.Rand
	Logger   *slog.Logger // errors only, never per-item at Info; zero: discard
	Observer Observer     // zero: none
	// NoListen turns LISTEN/NOTIFY wake-up off (polling only); zero: listen
	// on a dedicated connection and poll as a fallback.
	NoListen bool
	// NotifyEvery is the least time between two notifications sent by the
	// follow-ups of this runner's handlers (Enqueue on their *Tx). A NOTIFY
	// serialises commits on a global lock and wakes every listener (one per
	// follow-up cost the runner about a fifth of its claim + follow-up
	// throughput), and a follow-up needs none: the worker that commits it
	// claims again at once. One every NotifyEvery still wakes
	// other runners' idle workers, who then claim until the queue is empty;
	// polling stays the fallback. Enqueue outside a handler (a request's
	// transaction) always notifies. zero: 100ms; negative: every follow-up
	// notifies.
	NotifyEvery time.Duration
	// ShutdownGrace is how long a handler's ctx outlives Run's ctx, so the
	// item in hand can finish and commit. A handler that gives up (returns
	// an error after its ctx ended) is rolled back and its item reappears
	// unchanged. zero: none; the handler's ctx ends with Run's.
	ShutdownGrace time.Duration
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (o RunnerOptions) normalize() (RunnerOptions, error) {
	if o.Workers < 0 {
		return o, fmt.Errorf("%w: Workers %d", ErrInvalidOptions, o.Workers)
	}
	for _, d := range []time.Duration{o.PollInterval, o.DBTimeout, o.FenceTimeout, o.IdleInTxTimeout, o.StatementTimeout, o.MinBackoff, o.MaxBackoff, o.ShutdownGrace} {
		if d < 0 {
			return o, fmt.Errorf("%w: negative duration %v", ErrInvalidOptions, d)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	switch o.Strategy {
	case "":
		o.Strategy = SkipLocked
	case SkipLocked, Seed:
	default:
		return o, fmt.Errorf("%w: Strategy %q", ErrInvalidOptions, o.Strategy)
	}
	def(&o.PollInterval, time.Second)
	def(&o.DBTimeout, 5*time.Second)
	def(&o.FenceTimeout, o.DBTimeout)
	def(&o.IdleInTxTimeout, 10*time.Second)
	def(&o.StatementTimeout, 30*time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 30*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def(&o.NotifyEvery, 100*time.Millisecond)
	return o, nil
}

// Runner runs workers that claim and handle items.
type Runner struct {
	db   *pgxpool.Pool
	opts RunnerOptions
	j    *jitter // shared by every Run: it guards the one Rand
	// nonce tells this runner's claims from every other runner's in the
	// fences they own (drawn once, so no two runners share it in practice).
	nonce uint64
}

// NewRunner returns a runner over db. db is the caller's: the runner
// neither configures nor closes it. It needs Workers connections, plus one
// for LISTEN.
func NewRunner(db *pgxpool.Pool, opts RunnerOptions) *Runner {
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(0x776f726b, 1))
	}
	return &Runner{db: db, opts: opts, j: &jitter{rand: rnd}, nonce: rnd.Uint64()}
}

// Run works until ctx ends, then finishes or abandons the current items
// safely and returns nil. It returns an error (wrapping ErrInvalidOptions)
// only for options it cannot run with. See RunnerOptions.ShutdownGrace for
// what happens to the items in hand.
func (r *Runner) Run(ctx context.Context) error {
	o, err := r.opts.normalize()
	if err != nil {
		return err
	}
	o.Handlers = maps.Clone(o.Handlers) // the caller may reuse its map
	rn := &run{
		db:   r.db,
		o:    o,
		bo:   backoff{min: o.MinBackoff, max: o.MaxBackoff, j: r.j},
		log:  o.Logger,
		wake: make(chan struct{}, o.Workers),

		notify: &notifier{every: o.NotifyEvery, clock: o.Clock},
		nonce:  r.nonce,
	}
	rn.prepare()
	need := int32(o.Workers)
	if !o.NoListen {
		need++
	}
	if maxConns := r.db.Config().MaxConns; maxConns < need {
		rn.log.Warn("work: pool smaller than workers (+1 for LISTEN): workers will wait for connections",
			"pool_max_conns", maxConns, "workers", o.Workers, "listen", !o.NoListen)
	}
	var wg sync.WaitGroup
	if !o.NoListen {
		wg.Go(func() { rn.listen(ctx) })
	}
	for i := range o.Workers {
		wg.Go(func() { rn.worker(ctx, i) })
	}
	wg.Wait()
	return nil
}

// run is the state of one Run call.
type run struct {
	db   *pgxpool.Pool
	o    RunnerOptions
	bo   backoff
	log  *slog.Logger
	wake chan struct{} // a token wakes one idle worker

	seedLockSQL, claimSQL, dueSQL string
	timeouts                      [2]any // the claim's $1 and $2 (claimReturning)

	notify *notifier

	nonce  uint64
	claims atomic.Uint64
}

// notifier spaces the notifications of a runner's follow-ups
// (RunnerOptions.NotifyEvery).
type notifier struct {
	every time.Duration // negative: no spacing
	clock interface{ Now() time.Time }
	last  atomic.Int64 // UnixNano of the last follow-up that notified
}

// due reports whether a follow-up enqueued now is to notify, and if so
// counts it as sent. A nil notifier (a Tx outside a runner's claim) always
// notifies.
func (n *notifier) due() bool {
	if n == nil || n.every < 0 {
		return true
	}
	now, last := n.clock.Now().UnixNano(), n.last.Load()
	if now-last < int64(n.every) {
		return false
	}
	return n.last.CompareAndSwap(last, now)
}

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

func (r *run) prepare() {
	r.timeouts = [2]any{fmt.Sprint(ms(r.o.StatementTimeout)), fmt.Sprint(ms(r.o.IdleInTxTimeout))}
	r.claimSQL, r.dueSQL = claimSkipLockedSQL, dueSkipLockedSQL
	if r.o.Strategy == Seed {
		r.claimSQL, r.dueSQL = claimSeedSQL, dueSeedSQL
		r.seedLockSQL = fmt.Sprintf(`SET LOCAL lock_timeout = %d`, ms(r.o.DBTimeout/2))
	}
}

// nudge wakes one idle worker, if any is waiting and none is woken yet.
func (r *run) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *run) wakeAll() {
	for range cap(r.wake) {
		r.nudge()
	}
}

func (r *run) worker(ctx context.Context, id int) {
	failures := 0
	var c *carried // committed by the next step, even once ctx ended
	var fl floor
	for ctx.Err() == nil || c != nil {
		out, due, next, err := r.step(ctx, c, &fl)
		c = next
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			r.log.Error("work: worker cannot claim", "worker", id, "err", err)
			wait = min(r.o.PollInterval, r.bo.delay(failures))
			failures++
		case out == OutcomeError || out == OutcomeAbandoned:
			// The database failed us, and the item is back unchanged:
			// claiming again at once could spin on it.
			wait = min(r.o.PollInterval, r.bo.delay(failures))
			failures++
		case out != "":
			failures = 0
			continue
		case due >= 0 && due < r.o.PollInterval:
			failures = 0
			wait = due
		default:
			failures = 0
			wait = r.o.PollInterval
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// listen keeps a LISTEN connection and turns notifications into wake-ups.
// Workers poll regardless, so a dead or silent listener only costs latency:
// it is reconnected with backoff while the workers keep polling.
func (r *run) listen(ctx context.Context) {
	failures := 0
	for {
		err := r.listenOnce(ctx, &failures)
		if ctx.Err() != nil {
			return
		}
		r.log.Error("work: LISTEN connection lost; polling until it is back", "err", err)
		t := time.NewTimer(r.bo.delay(failures))
		failures++
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listenCheck is how long the listener waits for a notification before
// proving its connection is alive: a blackholed connection never errors by
// itself, and would otherwise deliver nothing, forever.
func (r *run) listenCheck() time.Duration {
	return min(max(10*r.o.PollInterval, time.Second), 30*time.Second)
}

// ListenerApplicationName is appended to the LISTEN session's
// application_name, so that operators (and fault injectors) can find the
// listener in pg_stat_activity.
const ListenerApplicationName = "work-listener"

const listenSQL = `SELECT set_config('application_name', left(concat_ws(' ', nullif(current_setting('application_name'), ''), '` +
	ListenerApplicationName + `'), 63), false); LISTEN ` + Channel

func (r *run) listenOnce(ctx context.Context, failures *int) error {
	actx, cancel := context.WithTimeout(ctx, r.o.DBTimeout)
	pc, err := r.db.Acquire(actx)
	cancel()
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	// The connection leaves the pool for good: a LISTENing session must not
	// be handed to anyone else, and closing it is ours to do.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
		conn.Close(cctx)
		cancel()
	}()
	lctx, cancel := context.WithTimeout(ctx, r.o.DBTimeout)
	// No arguments: the simple protocol, one round trip for both.
	_, err = conn.Exec(lctx, listenSQL)
	cancel()
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	*failures = 0
	// Notifications sent while nobody listened are lost: look now.
	r.wakeAll()
	for {
		wctx, cancel := context.WithTimeout(ctx, r.listenCheck())
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			r.nudge()
		case ctx.Err() != nil:
			return nil
		case pgconn.Timeout(err) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, r.o.DBTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return fmt.Errorf("wait: %w", err)
		}
	}
}
