package kvx

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/work"
)

// Options assembles a System. The zero value is the reference kvx.
type Options struct {
	// Steps are the worker's parts; each nil field is the reference part.
	Steps Steps
	// Accept records an accepted create, resize or delete (desired state,
	// generation, has_active_work and the work row, in one transaction) or
	// refuses it; it gets requests already validated. Zero: Accept.
	Accept func(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error)
	// Budget bounds time; each zero field is its default.
	Budget Budget
	// Runner adjusts the worker's runner options after kvx has set them;
	// zero: no adjustment.
	Runner func(*work.RunnerOptions)
	// Liveness is the promise the system declares to the harness (see
	// System.Liveness); each zero field is the reference's promise, derived
	// from the default Budget, not from Options.Budget: a variant with
	// other timeouts keeps the reference's promise, so the gate holds it to
	// what the reference promised instead of to what the variant runs with.
	Liveness contract.Liveness
}

// Promise is the reference's liveness promise, derived from the default
// Budget b:
//
//   - Takeover: a silent worker's session sits idle in its transaction
//     until Postgres ends it after IdleInTx, which frees the claim; another
//     worker polls within Poll and redoes the item within Handler. Twice
//     IdleInTx covers that with margin for a loaded machine.
//   - Settle: once healed, the worst left to wait out is a session frozen
//     behind a healed fault (IdleInTx), then the redo (Handler) and its
//     commit (Statement).
//   - ParkVisibleWithin: work parks on its first intransient answer, inside
//     the handler that met it: twice Handler.
//   - Claim: a row lock held by the claiming transaction (ClaimSession).
//   - ListenerApplicationName: package work names its LISTEN session.
func Promise() contract.Liveness {
	b := Budget{}.withDefaults()
	return contract.Liveness{
		Takeover:                2 * b.IdleInTx,
		Settle:                  b.IdleInTx + b.Handler + b.Statement,
		ParkVisibleWithin:       2 * b.Handler,
		Claim:                   contract.ClaimSession,
		ListenerApplicationName: work.ListenerApplicationName,
	}
}

// Budget is kvx's time budget. The one rule that matters: a claiming
// transaction is never idle longer than Handler, because every provider call
// happens inside the handler, so Handler must stay below IdleInTx with
// margin. Otherwise Postgres would end the session (and free the claim)
// while the worker still acts on the item: two live executions.
//
// Defaults, and why: a provider call gets 2s (the fakes' own client
// default); a handler makes at most a handful of calls, the slow ones
// bounded by 2s each, and gets 5s in all; the session's
// idle_in_transaction_session_timeout is 8s, 3s above the handler's bound;
// statements get 2s and any database call 3s, short enough that a
// blackholed link costs a test seconds, not minutes.
type Budget struct {
	Provider time.Duration // each provider call; zero: 2s
	// Effect is the longest a provider may take to act on a request it
	// was sent (a slow server acts after its client gave up); zero: twice
	// Provider. The fence a handler sets before each call
	// (work.Tx.FenceCall) lasts Fence plus Effect after it is asked for.
	Effect time.Duration
	// Fence bounds each fence statement before a provider call
	// (work.RunnerOptions.FenceTimeout): a lost claim keeps its instance's
	// next change back for Fence + Effect after its last call. zero: 1s,
	// which a statement on a link slowed by 800ms each way misses (the
	// call then waits for a retry).
	Fence     time.Duration
	Handler   time.Duration // one work item's handler, all calls included; zero: 5s
	IdleInTx  time.Duration // the worker sessions' idle_in_transaction_session_timeout; zero: 8s
	Statement time.Duration // the worker sessions' statement_timeout; zero: 2s
	DB        time.Duration // each runner database call, and each Serve and Inspect; zero: 3s
	Poll      time.Duration // polling fallback when no notification arrives; zero: 250ms
	// Backoff of transient errors: min(MaxBackoff, MinBackoff·2^attempts),
	// jittered; zero: 25ms and 1s, so a test converges soon after its faults
	// stop.
	MinBackoff, MaxBackoff time.Duration
}

func (b Budget) withDefaults() Budget {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&b.Provider, 2*time.Second)
	def(&b.Effect, 2*b.Provider)
	def(&b.Fence, time.Second)
	def(&b.Handler, 5*time.Second)
	def(&b.IdleInTx, 8*time.Second)
	def(&b.Statement, 2*time.Second)
	def(&b.DB, 3*time.Second)
	def(&b.Poll, 250*time.Millisecond)
	def(&b.MinBackoff, 25*time.Millisecond)
	def(&b.MaxBackoff, time.Second)
	return b
}

// System is kvx as a contract.System.
type System struct {
	steps  Steps
	accept func(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error)
	budget Budget
	runner func(*work.RunnerOptions)
	live   contract.Liveness
}

var (
	_ contract.System           = (*System)(nil)
	_ contract.LivenessDeclarer = (*System)(nil)
)

// New assembles a System from opts.
func New(opts Options) *System {
	s := &System{
		steps:  opts.Steps.withDefaults(),
		accept: opts.Accept,
		budget: opts.Budget.withDefaults(),
		runner: opts.Runner,
		live:   opts.Liveness,
	}
	ref := Promise()
	s.live.Takeover = cmp.Or(s.live.Takeover, ref.Takeover)
	s.live.Settle = cmp.Or(s.live.Settle, ref.Settle)
	s.live.ParkVisibleWithin = cmp.Or(s.live.ParkVisibleWithin, ref.ParkVisibleWithin)
	s.live.Claim = cmp.Or(s.live.Claim, ref.Claim)
	s.live.ListenerApplicationName = cmp.Or(s.live.ListenerApplicationName, ref.ListenerApplicationName)
	if s.accept == nil {
		s.accept = Accept
	}
	return s
}

// Liveness is the promise the system declares (Options.Liveness, else the
// reference's Promise).
func (s *System) Liveness() contract.Liveness { return s.live }

// Budget is the system's time budget, defaults filled in.
func (s *System) Budget() Budget { return s.budget }

// Migrate creates the work table and the instances table.
func (s *System) Migrate(ctx context.Context, db *pgxpool.Pool) error { return Migrate(ctx, db) }

// Work runs one worker (a work.Runner with one worker goroutine) until ctx
// ends.
func (s *System) Work(ctx context.Context, db *pgxpool.Pool, deps contract.Deps) error {
	logger := deps.Logger.With("worker", deps.Worker)
	clients := NewClients(deps, s.budget.Provider)
	handlers := make(map[string]work.Handler, 4)
	for _, kind := range []string{KindProvision, KindResize, KindDelete, KindEmail} {
		handlers[kind] = s.handler(db, deps, clients, logger, kind)
	}
	opts := work.RunnerOptions{
		Handlers:         handlers,
		Workers:          1,
		PollInterval:     s.budget.Poll,
		DBTimeout:        s.budget.DB,
		FenceTimeout:     s.budget.Fence,
		IdleInTxTimeout:  s.budget.IdleInTx,
		StatementTimeout: s.budget.Statement,
		MinBackoff:       s.budget.MinBackoff,
		MaxBackoff:       s.budget.MaxBackoff,
		Clock:            deps.Clock,
		// deps.Rand belongs to the steps (a variant may draw from it); the
		// runner's jitter gets its own stream split from it, so the two
		// never share a source across goroutines.
		Rand:     rand.New(rand.NewPCG(deps.Rand.Uint64(), deps.Rand.Uint64())),
		Logger:   logger,
		Observer: observer{deps.Observer},
	}
	if s.runner != nil {
		s.runner(&opts)
	}
	if err := work.NewRunner(db, opts).Run(ctx); err != nil {
		return fmt.Errorf("kvx: worker %s: %w", deps.Worker, err)
	}
	return nil
}

// handler adapts the step for kind to a work.Handler.
func (s *System) handler(db *pgxpool.Pool, deps contract.Deps, clients Clients, logger *slog.Logger, kind string) work.Handler {
	return func(ctx context.Context, tx *work.Tx, it work.Item) error {
		var c Change
		if err := json.Unmarshal(it.Spec, &c); err != nil {
			return work.Intransient(fmt.Sprintf("%s item %d: bad spec", kind, it.ID), err)
		}
		ctx, cancel := context.WithTimeout(ctx, s.budget.Handler)
		defer cancel()
		e := &Env{
			DB:      db,
			Tx:      tx,
			Item:    it,
			Deps:    deps,
			Clients: clients,
			Logger:  logger.With("item", it.ID, "kind", kind, "instance", c.ID, "generation", c.Generation),
			Steps:   &s.steps,
			Budget:  s.budget,
		}
		return s.steps.handler(kind)(ctx, e, c)
	}
}

// ObserveKey is the key kvx reports to the harness's observer for an item:
// the instance id for the work that holds has_active_work (provision, resize,
// delete), and contract.FollowUpKey ("email:<id>") for the welcome email,
// which changes nothing of the instance and may run beside the instance's
// next change.
func ObserveKey(it work.Item) string {
	if it.Kind == KindEmail {
		return contract.FollowUpKey(KindEmail, it.Key)
	}
	return it.Key
}

// observer adapts a contract.Observer to a work.Observer.
type observer struct{ o contract.Observer }

func (o observer) Begin(it work.Item) func(work.Outcome) {
	end := o.o.Begin(strconv.FormatInt(it.ID, 10), ObserveKey(it))
	return func(out work.Outcome) { end(string(out)) }
}

// Inspect reports every instance row and every pending work row, read in
// one snapshot (a REPEATABLE READ, read-only transaction): a change is
// accepted, and its work completed, in one transaction each, so the
// snapshot always shows has_active_work together with the work that will
// clear it. Two separate reads could see the flag from before a completion
// and the work table from after it.
func (s *System) Inspect(ctx context.Context, db *pgxpool.Pool) (contract.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.budget.DB)
	defer cancel()
	var snap contract.Snapshot
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+instanceColumns+` FROM instances ORDER BY id`)
		if err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		ins, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (contract.Instance, error) {
			in, err := scanInstance(r)
			return in.Instance, err
		})
		if err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		wrows, err := work.ListTx(ctx, tx)
		if err != nil {
			return fmt.Errorf("work: %w", err)
		}
		snap = contract.Snapshot{Instances: ins}
		for _, r := range wrows {
			snap.Work = append(snap.Work, contract.WorkItem{
				ID:       strconv.FormatInt(r.ID, 10),
				Kind:     r.Kind,
				Key:      r.Key,
				Attempts: r.Attempts,
				Parked:   r.Parked,
				Reason:   r.LastError,
			})
		}
		return nil
	})
	if err != nil {
		return contract.Snapshot{}, fmt.Errorf("kvx: inspect: %w", err)
	}
	return snap, nil
}
