package work

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Item is a claimed work row.
type Item struct {
	ID       int64
	Kind     string
	Key      string
	Spec     json.RawMessage
	Time     time.Time // when it was enqueued
	Attempts int       // attempts made before this one
}

// Handler does one work item inside the claiming transaction. Return nil to
// complete it; an error classified by IsIntransient parks it; any other error
// is transient and retried with backoff. Either way the handler's writes
// through tx are rolled back.
//
// ctx is not Run's ctx: when Run's ctx ends, ctx stays alive for
// RunnerOptions.ShutdownGrace, so that the current item can finish. A handler
// that returns an error because ctx ended has its transaction rolled back and
// the item reappears unchanged (no attempt is recorded).
type Handler func(ctx context.Context, tx *Tx, it Item) error

// Tx is the claiming transaction handed to a handler. Everything written
// through it commits atomically with the claim.
//
// Every call through Tx (and through transactions it Begins) carries a
// deadline of StatementTimeout + DBTimeout, so that a handler cannot hang on
// a connection that went silent; Postgres's statement_timeout fires first on
// a healthy one. Conn() and LargeObjects() bypass that deadline.
//
// Commit and Rollback return ErrNotYours: the runner ends the transaction
// when the handler returns. Begin starts a nested transaction (a savepoint),
// which the handler may commit or roll back.
type Tx struct {
	pgx.Tx

	fence  *fence    // nil outside a runner's claim
	notify *notifier // nil outside a runner's claim: every Enqueue notifies

	mu       sync.Mutex
	after    []func(ctx context.Context)
	atCommit []queued // EnqueueAtCommit's inserts
}

// Commit returns ErrNotYours: a handler ends its transaction by returning.
func (tx *Tx) Commit(context.Context) error { return ErrNotYours }

// Rollback returns ErrNotYours: a handler ends its transaction by returning
// an error.
func (tx *Tx) Rollback(context.Context) error { return ErrNotYours }

// AfterCommit registers f to run once, after the claiming transaction
// committed for certain; never when the commit failed or its outcome is
// unknown, nor when the handler returned an error. This is how at-most-once
// effects (an email) are made: commit first, then act.
//
// Hooks run in registration order on the worker's goroutine, before the
// Observer is told the outcome, with the handler's ctx (which may already be
// cancelled if the runner is shutting down and the grace has passed). A
// panicking hook is logged and the remaining hooks still run.
func (tx *Tx) AfterCommit(f func(ctx context.Context)) {
	tx.mu.Lock()
	tx.after = append(tx.after, f)
	tx.mu.Unlock()
}

// CheckClaim returns ErrClaimLost when the claiming session is known to be
// gone: the server already said so (a terminated backend, a restart, an
// idle-in-transaction timeout) or closed the socket. It sends nothing and
// waits at most a millisecond, so a handler can call it before every
// external effect: a worker whose claim is gone must not act in its name,
// since another worker may be doing the same item's work at a newer
// generation by now, and a late write of the old one would undo it. A
// session cut silently (a network blackhole) looks alive; the database
// deadlines bound that case. Once the transaction has ended (in an
// AfterCommit hook) it returns nil.
func (tx *Tx) CheckClaim() error {
	pc := tx.Conn().PgConn()
	if s := pc.TxStatus(); s != 'T' && s != 'E' && !pc.IsClosed() {
		return nil
	}
	if err := pc.CheckConn(); err != nil {
		return fmt.Errorf("%w: %w", ErrClaimLost, err)
	}
	return nil
}

func (tx *Tx) hooks() []func(context.Context) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.after
}

// savepoint is set right after the claiming DELETE. Rolling back to it
// discards everything the handler wrote but keeps the DELETE and its row
// lock, so the failed attempt can be recorded (the row re-inserted) in the
// same transaction: no other worker can see the row between the failure and
// the record, and a crash in between loses nothing (the whole transaction
// rolls back and the row reappears as before the claim).
const savepoint = "work_handler"

// claimReturning also returns the claiming transaction's id, by which a
// fence statement on another session tells whether the claim still holds
// (fenceSQL).
// It sets the transaction's statement_timeout ($1) and
// idle_in_transaction_session_timeout ($2) too, for what follows the claim
// (RunnerOptions.StatementTimeout, IdleInTxTimeout): in the claim rather
// than in a statement of their own, which cost every item a statement. A
// claim that finds nothing sets neither, and needs neither: its transaction
// holds no lock, no transaction id, and, under READ COMMITTED, no snapshot
// between statements.
const claimReturning = ` RETURNING id, time, kind, key, spec, attempts, pg_current_xact_id()::text, run_after,
	set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $2, true)`

// unfenced keeps a claim off items whose key another item's fence holds
// (Tx.Fence): effects of that item may still land, and this item's must not
// be overtaken by them.
// An item without a key cannot be fenced (ErrNoKey), and its claim skips
// the probe: under NOT EXISTS as a join Postgres probed work_fence for
// every item the claim walked past (most of them locked by other workers),
// each probe a bitmap scan that asks the kernel for the table's size.
const unfenced = ` AND (w.key = '' OR NOT EXISTS (SELECT 1 FROM work_fence f
		WHERE f.key = w.key AND f.item <> w.id AND f.until > now()))`

// claimSkipLockedSQL claims the first unlocked, unfenced item due, from
// the head of the queue.
const claimSkipLockedSQL = `DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now()` + unfenced + `
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)` + claimReturning

// claimFloorSQL is claimSkipLockedSQL from $3 on: a worker's claim floor
// (see floor). Two statements rather than one that falls back from the
// floor to the head, as COALESCE of the two subqueries would: Postgres
// sets up every subquery of a statement it runs, and that cost the floor
// a third of what it saved. The floor comes in through a subquery, which
// Postgres does not estimate: compared with run_after directly, each value
// got an estimate of its own and the claim a plan of its own, and planning
// that DELETE cost more than running it (TestClaimsKeepTheirGenericPlans).
const claimFloorSQL = `DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after >= (SELECT $3::timestamptz) AND run_after <= now()` + unfenced + `
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)` + claimReturning

const claimSeedSQL = `DELETE FROM work WHERE id = (
	SELECT id FROM work w WHERE NOT parked AND run_after <= now()` + unfenced + `
	ORDER BY run_after, id FOR UPDATE LIMIT 1)` + claimReturning

// nextFenceEnd is when the first live fence ends: an item it holds may be
// claimable then. (Any fence, not only one that holds an item: the table is
// tiny, and a wake-up too many costs one empty claim.)
const nextFenceEnd = `(SELECT min(until) FROM work_fence WHERE until > now())`

// dueSkipLockedSQL: microseconds until the next item that is not yet due
// becomes due, or the next fence ends; no row if neither. Items due now that
// the claim did not get are locked by other workers or fenced: they are being
// handled, and a failure will notify. (ORDER BY … LIMIT 1 rather than min():
// an index-only scan of one entry of work_claim, however many items wait.)
const dueSkipLockedSQL = `SELECT (extract(epoch FROM at - clock_timestamp()) * 1e6)::bigint FROM (
	(SELECT run_after AS at FROM work WHERE NOT parked AND run_after > now() ORDER BY run_after LIMIT 1)
	UNION ALL SELECT ` + nextFenceEnd + `) d
	WHERE at IS NOT NULL ORDER BY at LIMIT 1`

// dueSeedSQL counts unfenced items due now too: under the seed strategy an
// empty claim can be a lost race (the row the claim waited for was deleted by
// its holder and READ COMMITTED re-checked it), so "due now" means "try
// again".
const dueSeedSQL = `SELECT (extract(epoch FROM at - clock_timestamp()) * 1e6)::bigint FROM (
	(SELECT run_after AS at FROM work w WHERE NOT parked` + unfenced + ` ORDER BY run_after LIMIT 1)
	UNION ALL SELECT ` + nextFenceEnd + `) d
	WHERE at IS NOT NULL ORDER BY at LIMIT 1`

// recordSQL re-inserts a claimed row after a failed attempt (after ROLLBACK
// TO SAVEPOINT, so the DELETE still holds and the id is free in this
// transaction), and notifies when the item will run again.
const recordSQL = `WITH ins AS (
	INSERT INTO work (id, time, kind, key, spec, attempts, run_after, parked, last_error)
	VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 microsecond', $8, $9)
	RETURNING kind, parked)
SELECT pg_notify('` + Channel + `', kind) FROM ins WHERE NOT parked`

// recordUpdateSQL records an attempt whose COMMIT failed for certain (the
// claim rolled back with it, so the row is back): only if nobody claimed the
// row again meanwhile (SKIP LOCKED, same attempts).
const recordUpdateSQL = `WITH u AS (
	UPDATE work SET attempts = attempts + 1,
		run_after = now() + $3 * interval '1 microsecond', parked = $4, last_error = $5
	WHERE id = (SELECT id FROM work WHERE id = $1 AND attempts = $2 FOR UPDATE SKIP LOCKED)
	RETURNING kind, parked)
SELECT pg_notify('` + Channel + `', kind) FROM u WHERE NOT parked`

// floor is a worker's claim floor: the due time of the item it claimed
// last. Its next claim looks from there on (less floorSlack) first, and
// so does not walk the index entries of the items claimed before: a
// DELETE leaves its entry in work_claim until VACUUM, which autovacuum
// runs at most once a minute, so a claim that starts at the head of the
// queue walks the entry of every item claimed since. That walk took a
// third of the database's CPU after 20,000 items (BenchmarkClaimFollowUp),
// and grows until throughput collapses at a sustained rate.
//
// An item due before the floor (a claim rolled back, a follow-up of a
// transaction that ran longer than floorSlack, a job enqueued to run in
// the past, an item whose fence ended) is claimed from the head: right
// after a claim that found nothing from the floor on (the worker drops its
// floor and claims again at once), and by every claim once floorEvery
// claims or floorAfter have passed since the worker's last claim from the
// head. Claiming it moves the floor down to it, so that the items below
// drain in order.
type floor struct {
	at   time.Time // zero: none yet
	n    int       // claims since the last one from the head
	head time.Time // when the last claim from the head was sent
	from time.Time // the last claim's $3, when not NULL
}

const (
	floorSlack = 100 * time.Millisecond
	floorEvery = 32
	floorAfter = 50 * time.Millisecond
)

// arg is claimFloorSQL's $3, or nil to claim from the head
// (claimSkipLockedSQL).
func (f *floor) arg(now time.Time) *time.Time {
	if f.at.IsZero() || f.n >= floorEvery || now.Sub(f.head) >= floorAfter {
		f.n, f.head = 0, now
		return nil
	}
	f.n++
	f.from = f.at.Add(-floorSlack)
	return &f.from
}

// carried is an item whose handler succeeded and whose COMMIT goes out in
// the same round trip as its worker's next claim (step): an item then costs
// one round trip fewer, and the commit's outcome is read, and the Observer
// told, before the next claim's result.
type carried struct {
	tx  *poolTx
	it  Item
	wtx *Tx
	log itemLog
	end func(Outcome)
}

// chainSQL ends a carried item's transaction and starts the next claim's
// in one statement (Postgres then parses, binds and runs one statement
// where COMMIT and BEGIN were two: 3-7 % of the claim + follow-up
// benchmark's throughput). The new transaction has the characteristics of
// the one ended, which are the defaults: a handler's statements come after
// the claim, too late for SET TRANSACTION ISOLATION LEVEL. A COMMIT that
// fails starts none, as a plain one does; a handler that made its
// transaction READ ONLY costs its worker one failed claim. commitSQL ends
// the last transaction of a connection.
const (
	chainSQL  = "commit and chain"
	commitSQL = "commit"
)

// poolTx is a transaction on a connection acquired from the pool, which it
// releases when it ends, as pgxpool's own Tx does.
type poolTx struct {
	pgx.Tx
	c *pgxpool.Conn
}

func (t *poolTx) Commit(ctx context.Context) error {
	defer t.release()
	return t.Tx.Commit(ctx)
}

func (t *poolTx) Rollback(ctx context.Context) error {
	defer t.release()
	return t.Tx.Rollback(ctx)
}

func (t *poolTx) release() {
	if t.c != nil {
		t.c.Release()
		t.c = nil
	}
}

// outcomeCarried is handle's outcome for an item it left to be committed
// with the next claim; never an Observer's.
const outcomeCarried Outcome = "carried"

// step claims and handles at most one item and reports how the worker left
// it. When it claimed nothing (out == "") it reports how long until an item
// is due (negative: none known). c, when not nil, is the worker's previous
// item, committed first on the same connection: if that COMMIT fails, out is
// that item's outcome and nothing is claimed. next is the item step leaves
// in turn (out is then outcomeCarried).
func (r *run) step(ctx context.Context, c *carried, fl *floor) (out Outcome, due time.Duration, next *carried, err error) {
	if c != nil && ctx.Err() != nil {
		return r.settle(c, r.commit(ctx, c.tx, c.it, c.wtx, c.log)), 0, nil, nil
	}
	parent := ctx
	if c != nil {
		parent = context.WithoutCancel(ctx) // shutdown must not cut a COMMIT short
	}
	cctx, cancel := context.WithTimeout(parent, r.o.DBTimeout)
	defer cancel()

	// Room for the longest batch: commit and begin, claim, savepoint, the seed
	// strategy's two lock_timeout settings, and a few follow-ups.
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 12)}
	commitAt := -1
	if c != nil {
		c.wtx.queueAtCommit(b)
		commitAt = b.Len()
		b.Queue(chainSQL)
	} else {
		b.BeginTx(pgx.TxOptions{})
	}
	if r.o.Strategy == Seed {
		b.Queue(r.seedLockSQL)
	}
	claimAt := b.Len()
	var from *time.Time // the floor claimed from, if any
	if r.o.Strategy == SkipLocked {
		from = fl.arg(r.o.Clock.Now())
	}
	if from != nil {
		b.Queue(claimFloorSQL, r.timeouts[0], r.timeouts[1], from)
	} else {
		b.Queue(r.claimSQL, r.timeouts[0], r.timeouts[1])
	}
	if r.o.Strategy == Seed {
		b.Queue(`SET LOCAL lock_timeout TO DEFAULT`)
	}
	b.Queue(`SAVEPOINT ` + savepoint)

	var br pgx.BatchResults
	var tx *poolTx
	if c != nil {
		br, tx = c.tx.SendBatch(cctx, b), c.tx
	} else {
		pc, err := r.db.Acquire(cctx)
		if err != nil {
			return "", 0, nil, fmt.Errorf("work: claim: %w", err)
		}
		// Prepared now, while the connection holds nothing (at no round
		// trip once it is): else pgx would prepare the statements that go
		// out with the COMMIT and the next claim in a round trip of their
		// own, and the COMMIT would wait behind it. (Both claims: this
		// batch has one of them.)
		for _, q := range []string{chainSQL, commitSQL, enqueueSQL, enqueueQuietSQL, r.claimSQL, claimFloorSQL} {
			if _, err := pc.Conn().Prepare(cctx, q, q); err != nil {
				pc.Release()
				return "", 0, nil, fmt.Errorf("work: claim: prepare: %w", err)
			}
		}
		br = pc.SendBatch(cctx, b)
		tx = &poolTx{Tx: br.Tx(), c: pc}
	}
	first := 0 // the first result of the claim
	if c != nil {
		// A failure stops the batch there: nothing was claimed.
		ierr, cerr := commitResults(br, commitAt)
		switch {
		case ierr != nil:
			_ = br.Close()
			return r.settle(c, r.record(ctx, tx, c.it, c.wtx.fence, ierr, c.log)), 0, nil, nil
		case cerr != nil:
			_ = br.Close()
			_ = r.rollback(ctx, tx) // releases the connection; the transaction has ended
			return r.settle(c, r.committed(ctx, c.it, cerr, c.log)), 0, nil, nil
		}
		r.settle(c, OutcomeDone)
		first = commitAt + 1
	}
	// Scan's targets escape: one object for all of them.
	sc := &struct {
		it       Item
		spec     []byte
		xid      string
		runAfter time.Time
	}{}
	it := &sc.it
	found := true
	var berr error
	for i := first; i < b.Len(); i++ {
		if i == claimAt {
			err := br.QueryRow().Scan(&it.ID, &it.Time, &it.Kind, &it.Key, &sc.spec, &it.Attempts, &sc.xid, &sc.runAfter, nil, nil)
			if errors.Is(err, pgx.ErrNoRows) {
				found = false
				continue
			}
			if err != nil {
				berr = err
				break
			}
			continue
		}
		if _, err := br.Exec(); err != nil {
			berr = err
			break
		}
	}
	if err := br.Close(); berr == nil {
		berr = err
	}
	if berr != nil {
		r.rollback(ctx, tx)
		var pgErr *pgconn.PgError
		if r.o.Strategy == Seed && errors.As(berr, &pgErr) && pgErr.Code == pgerrcode.LockNotAvailable {
			// The seed claim waited on another worker's row lock for
			// longer than lock_timeout: nothing claimed, try again.
			return "", 0, nil, nil
		}
		if c != nil && errors.As(berr, &pgErr) && pgErr.Code == pgerrcode.ReadOnlySQLTransaction {
			// The carried item's handler made its transaction READ ONLY
			// and COMMIT AND CHAIN kept that for the claim's: the item is
			// committed; claim again in a transaction of its own.
			return "", 0, nil, nil
		}
		return "", 0, nil, fmt.Errorf("work: claim: %w", berr)
	}
	if !found && from != nil {
		// Nothing from the floor on: look from the head at once.
		r.rollback(ctx, tx)
		fl.at = time.Time{}
		return "", 0, nil, nil
	}
	if !found {
		var us int64
		qerr := tx.QueryRow(cctx, r.dueSQL).Scan(&us)
		r.rollback(ctx, tx)
		if errors.Is(qerr, pgx.ErrNoRows) {
			return "", -1, nil, nil
		}
		if qerr != nil {
			return "", 0, nil, fmt.Errorf("work: next due: %w", qerr)
		}
		return "", max(0, time.Duration(us)*time.Microsecond), nil, nil
	}
	it.Spec = json.RawMessage(sc.spec)
	fl.at = sc.runAfter
	r.nudge() // there may be more: let an idle sibling look
	out, next = r.handle(ctx, tx, *it, sc.xid)
	return out, 0, next, nil
}

// settle tells c's Observer how its item ended, once its COMMIT's outcome
// is known, and returns it.
func (r *run) settle(c *carried, out Outcome) Outcome {
	if out == OutcomeDone {
		c.wtx.fence.end()
	}
	if out == OutcomeError || out == OutcomeAbandoned {
		c.log.Debug("work: item left unfinished", "outcome", out)
	}
	c.end(out)
	return out
}

// rollback ends tx and releases its connection. A failure leaves nothing to
// do: pgx closes the connection and Postgres rolls back on its own.
func (r *run) rollback(ctx context.Context, tx pgx.Tx) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
	defer cancel()
	err := tx.Rollback(fctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// handle runs the handler for a claimed item, claimed by transaction xid,
// and ends its transaction, or leaves a successful one to be committed with
// the worker's next claim (carried) when no AfterCommit hook waits on its
// commit.
func (r *run) handle(ctx context.Context, tx *poolTx, it Item, xid string) (Outcome, *carried) {
	end := func(Outcome) {}
	if r.o.Observer != nil {
		end = r.o.Observer.Begin(it)
	}
	start := r.o.Clock.Now()
	// One allocation for what lives as long as the claim.
	cl := &struct {
		wtx   Tx
		bound boundTx
		fence fence
		c     carried
	}{
		bound: boundTx{tx: tx, timeout: r.o.StatementTimeout + r.o.DBTimeout, top: true},
		fence: fence{db: r.db, timeout: r.o.FenceTimeout, item: it, nonce: r.nonce, seq: r.claims.Add(1), xid: xid},
	}
	wtx := &cl.wtx
	wtx.Tx, wtx.fence, wtx.notify = &cl.bound, &cl.fence, r.notify
	hctx, hdone := handlerContext(ctx, r.o.ShutdownGrace)
	defer hdone()

	herr := r.call(hctx, wtx, it)
	if herr == nil && tx.Conn().PgConn().TxStatus() == 'E' {
		herr = Intransient("", ErrTxAborted)
	}
	log := itemLog{r.log, it}
	var out Outcome
	if herr == nil {
		herr = r.unfence(ctx, tx, wtx.fence)
	}
	switch {
	case herr == nil && len(wtx.hooks()) == 0:
		cl.c = carried{tx: tx, it: it, wtx: wtx, log: log, end: end}
		return outcomeCarried, &cl.c
	case herr == nil:
		out = r.commit(ctx, tx, it, wtx, log)
		if out == OutcomeDone {
			wtx.fence.end()
			r.runHooks(hctx, wtx, log)
		}
	case hctx.Err() != nil && ctx.Err() != nil:
		// Shutdown cancelled the handler: give the item back untouched.
		out = OutcomeAbandoned
		if err := r.rollback(ctx, tx); err != nil {
			out = OutcomeError
		}
		log.Debug("work: abandoned at shutdown", "err", herr)
	default:
		out = r.record(ctx, tx, it, wtx.fence, herr, log)
	}
	if out == OutcomeError || out == OutcomeAbandoned {
		log.Debug("work: item left unfinished", "outcome", out, "elapsed", r.o.Clock.Now().Sub(start))
	}
	end(out)
	return out, nil
}

// call runs the item's handler; a panic parks the item.
func (r *run) call(ctx context.Context, tx *Tx, it Item) (err error) {
	h := r.o.Handlers[it.Kind]
	if h == nil {
		return Intransient("", fmt.Errorf("%w %q", ErrNoHandler, it.Kind))
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("work: handler panicked", "id", it.ID, "kind", it.Kind, "panic", p, "stack", string(debug.Stack()))
			err = Intransient("", fmt.Errorf("%w: %v", ErrHandlerPanic, p))
		}
	}()
	return h(ctx, tx, it)
}

// commit ends tx with COMMIT, and with the item's EnqueueAtCommit inserts
// in the same round trip.
func (r *run) commit(ctx context.Context, tx *poolTx, it Item, wtx *Tx, log itemLog) Outcome {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
	defer cancel()
	b := &pgx.Batch{}
	wtx.queueAtCommit(b)
	if b.Len() == 0 {
		return r.committed(ctx, it, tx.Commit(fctx), log)
	}
	n := b.Len()
	b.Queue(commitSQL)
	br := tx.SendBatch(fctx, b)
	ierr, err := commitResults(br, n)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if ierr != nil {
		return r.record(ctx, tx, it, wtx.fence, ierr, log)
	}
	if err != nil {
		_ = r.rollback(ctx, tx) // releases the connection; the transaction has ended
		return r.committed(ctx, it, err, log)
	}
	tx.release() // the batch's COMMIT ended the transaction
	return OutcomeDone
}

// commitResults reads the results of a batch's first inserts (EnqueueAtCommit's)
// and then its COMMIT's: the attempt's error if an insert failed (the
// batch stopped there), else the COMMIT's.
func commitResults(br pgx.BatchResults, inserts int) (insertErr, commitErr error) {
	for range inserts {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("work: enqueue at commit: %w", err), nil
		}
	}
	ct, err := br.Exec()
	if err == nil && ct.String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback
	}
	return nil, err
}

// committed decides an item's outcome from its COMMIT's error.
func (r *run) committed(ctx context.Context, it Item, err error, log itemLog) Outcome {
	if err == nil {
		return OutcomeDone
	}
	if !commitFailedForCertain(err) {
		log.Error("work: commit outcome unknown", "err", err)
		return OutcomeError
	}
	// The server refused the COMMIT (a deferred constraint, a serialization
	// failure): the claim rolled back with the handler's writes and the row
	// is back. Record the attempt so a deterministic failure backs off or
	// parks instead of looping.
	parked, d, reason := r.verdict(it, err)
	uctx, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
	defer cancel2()
	if _, uerr := r.db.Exec(uctx, recordUpdateSQL, it.ID, it.Attempts, d.Microseconds(), parked, reason); uerr != nil {
		log.Error("work: commit failed; recording the attempt failed too", "err", err, "record_err", uerr)
		return OutcomeAbandoned
	}
	return r.logVerdict(log, parked, err)
}

// unfence removes the claim's fence before its commit; a failure is a
// transient failure of the attempt (recorded, or rolled back whole).
func (r *run) unfence(ctx context.Context, tx pgx.Tx, f *fence) error {
	if !f.held() {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
	defer cancel()
	if err := f.release(fctx, tx); err != nil {
		return Transient(err)
	}
	return nil
}

// verdict decides how a failed attempt is recorded.
func (r *run) verdict(it Item, err error) (parked bool, delay time.Duration, reason string) {
	if IsIntransient(err) {
		return true, 0, err.Error()
	}
	return false, r.bo.delay(it.Attempts), err.Error()
}

func (r *run) logVerdict(log itemLog, parked bool, err error) Outcome {
	if parked {
		log.Warn("work: item parked", "err", err)
		return OutcomeParked
	}
	log.Debug("work: item will be retried", "err", err)
	return OutcomeRetry
}

// record writes a failed attempt atomically with the claim: roll back to the
// savepoint (dropping the handler's writes and follow-ups), re-insert the row
// with attempts+1 and a backoff, or parked, and commit.
func (r *run) record(ctx context.Context, tx pgx.Tx, it Item, f *fence, herr error, log itemLog) Outcome {
	parked, d, reason := r.verdict(it, herr)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.DBTimeout)
	defer cancel()
	// Two round trips, not one batch: pgx prepares a batch's statements
	// before running any, and an aborted transaction (the handler's SQL
	// failed) refuses to prepare until the ROLLBACK TO has run.
	_, err := tx.Exec(fctx, `ROLLBACK TO SAVEPOINT `+savepoint)
	if err == nil {
		_, err = tx.Exec(fctx, recordSQL, it.ID, it.Time, it.Kind, it.Key, string(it.Spec), it.Attempts+1, d.Microseconds(), parked, reason)
	}
	if err == nil {
		err = f.release(fctx, tx)
	}
	if err != nil {
		// Nothing was committed: whatever happened, the row reappears
		// unchanged when the transaction ends.
		rerr := r.rollback(ctx, tx)
		log.Error("work: recording a failed attempt failed", "handler_err", herr, "err", err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && rerr == nil {
			return OutcomeAbandoned
		}
		return OutcomeError
	}
	if err := tx.Commit(fctx); err != nil {
		if commitFailedForCertain(err) {
			log.Error("work: recording a failed attempt failed at commit", "handler_err", herr, "err", err)
			return OutcomeAbandoned
		}
		log.Error("work: commit outcome unknown", "handler_err", herr, "err", err)
		return OutcomeError
	}
	return r.logVerdict(log, parked, herr)
}

func (r *run) runHooks(ctx context.Context, tx *Tx, log itemLog) {
	for _, f := range tx.hooks() {
		func() {
			defer func() {
				if p := recover(); p != nil {
					log.Error("work: AfterCommit hook panicked", "panic", p, "stack", string(debug.Stack()))
				}
			}()
			f(ctx)
		}()
	}
}

// errShutdown is the cause of a handler ctx cancelled by shutdown.
var errShutdown = errors.New("work: runner shutting down")

// handlerContext derives a handler's ctx from Run's: it carries Run's values
// but is cancelled only grace after Run's ctx ends, so the item in hand can
// finish. The returned func releases it.
func handlerContext(runCtx context.Context, grace time.Duration) (context.Context, func()) {
	hctx, cancel := context.WithCancelCause(context.WithoutCancel(runCtx))
	stop := context.AfterFunc(runCtx, func() {
		if grace <= 0 {
			cancel(errShutdown)
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(errShutdown)
		case <-hctx.Done():
		}
	})
	return hctx, func() {
		stop()
		cancel(nil)
	}
}

// boundTx gives every call a deadline: a blackholed connection never
// answers, and only an application deadline gets the worker back.
type boundTx struct {
	tx      pgx.Tx
	timeout time.Duration
	top     bool // the claiming transaction itself: not the handler's to end
}

var _ pgx.Tx = (*boundTx)(nil)

func (b *boundTx) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.timeout)
}

func (b *boundTx) Begin(ctx context.Context) (pgx.Tx, error) {
	c, cancel := b.bound(ctx)
	defer cancel()
	t, err := b.tx.Begin(c)
	if err != nil {
		return nil, err
	}
	return &boundTx{tx: t, timeout: b.timeout}, nil
}

func (b *boundTx) Commit(ctx context.Context) error {
	if b.top {
		return ErrNotYours
	}
	c, cancel := b.bound(ctx)
	defer cancel()
	return b.tx.Commit(c)
}

func (b *boundTx) Rollback(ctx context.Context) error {
	if b.top {
		return ErrNotYours
	}
	c, cancel := b.bound(ctx)
	defer cancel()
	return b.tx.Rollback(c)
}

func (b *boundTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	c, cancel := b.bound(ctx)
	defer cancel()
	return b.tx.CopyFrom(c, table, cols, src)
}

func (b *boundTx) SendBatch(ctx context.Context, batch *pgx.Batch) pgx.BatchResults {
	c, cancel := b.bound(ctx)
	return &boundBatch{BatchResults: b.tx.SendBatch(c, batch), cancel: cancel}
}

func (b *boundTx) LargeObjects() pgx.LargeObjects { return b.tx.LargeObjects() }

func (b *boundTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	c, cancel := b.bound(ctx)
	defer cancel()
	return b.tx.Prepare(c, name, sql)
}

func (b *boundTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c, cancel := b.bound(ctx)
	defer cancel()
	return b.tx.Exec(c, sql, args...)
}

func (b *boundTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c, cancel := b.bound(ctx)
	rows, err := b.tx.Query(c, sql, args...)
	if err != nil {
		cancel()
		return rows, err
	}
	return &boundRows{Rows: rows, cancel: cancel}, nil
}

func (b *boundTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c, cancel := b.bound(ctx)
	return &boundRow{row: b.tx.QueryRow(c, sql, args...), cancel: cancel}
}

func (b *boundTx) Conn() *pgx.Conn { return b.tx.Conn() }

// The deadline of a query must outlive the call that starts it: rows are
// read afterwards. These release it when reading ends.

type boundRows struct {
	pgx.Rows
	cancel context.CancelFunc
}

func (r *boundRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.cancel()
	return false
}

func (r *boundRows) Close() {
	r.Rows.Close()
	r.cancel()
}

type boundRow struct {
	row    pgx.Row
	cancel context.CancelFunc
}

func (r *boundRow) Scan(dest ...any) error {
	defer r.cancel()
	return r.row.Scan(dest...)
}

type boundBatch struct {
	pgx.BatchResults
	cancel context.CancelFunc
}

func (b *boundBatch) Close() error {
	defer b.cancel()
	return b.BatchResults.Close()
}

// itemLog logs with the item's attributes, built only when a record is
// actually logged: slog.Logger.With would format them for every item.
type itemLog struct {
	l  *slog.Logger
	it Item
}

func (l itemLog) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !l.l.Enabled(ctx, level) {
		return
	}
	l.l.Log(ctx, level, msg, append([]any{"id", l.it.ID, "kind", l.it.Kind, "key", l.it.Key, "attempts", l.it.Attempts}, args...)...)
}

func (l itemLog) Error(msg string, args ...any) { l.log(slog.LevelError, msg, args...) }
func (l itemLog) Warn(msg string, args ...any)  { l.log(slog.LevelWarn, msg, args...) }
func (l itemLog) Debug(msg string, args ...any) { l.log(slog.LevelDebug, msg, args...) }
