package kvx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/work"
)

// MaxIDLen is the longest instance id kvx accepts.
const MaxIDLen = 64

// Serve handles one request: get reads, resume releases parked work, and
// create, resize and delete go through Options.Accept.
func (s *System) Serve(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	if err := Validate(req); err != nil {
		return contract.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.budget.DB)
	defer cancel()
	switch req.Op {
	case contract.OpGet:
		return Get(ctx, db, req.Instance)
	case contract.OpResume:
		n, err := work.Release(ctx, db)
		if err != nil {
			return contract.Response{}, fmt.Errorf("kvx: resume: %w", err)
		}
		return contract.Response{Resumed: n}, nil
	}
	return s.accept(ctx, db, req)
}

// Validate checks a request's shape: a known op; for every op but resume an
// instance id of 1 to 64 characters matching [a-z0-9]([a-z0-9.-]*[a-z0-9])?
// (it is part of the deployment's name, a DNS-1123 subdomain, and of every
// key: an id Kubernetes would reject must be refused here, not parked as
// work later); a size of small, medium or large for
// create and resize; a customer of at most 64 characters. The error wraps
// contract.ErrInvalid.
func Validate(req contract.Request) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("kvx: %s %q: %s: %w", req.Op, req.Instance, fmt.Sprintf(format, a...), contract.ErrInvalid)
	}
	switch req.Op {
	case contract.OpResume:
		return nil
	case contract.OpCreate, contract.OpResize, contract.OpDelete, contract.OpGet:
	default:
		return bad("unknown op")
	}
	if req.Instance == "" {
		return bad("missing instance id")
	}
	if len(req.Instance) > MaxIDLen {
		return bad("instance id longer than %d", MaxIDLen)
	}
	if !validID(req.Instance) {
		return bad("instance id must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit")
	}
	if len(req.Customer) > MaxIDLen {
		return bad("customer longer than %d", MaxIDLen)
	}
	for _, r := range req.Customer {
		if r <= ' ' || r >= 0x7f {
			return bad("customer must be visible ASCII")
		}
	}
	if (req.Op == contract.OpCreate || req.Op == contract.OpResize) && !ValidSize(req.Size) {
		return bad("size %q: want small, medium or large", req.Size)
	}
	return nil
}

// Get reads an instance.
func Get(ctx context.Context, db *pgxpool.Pool, id string) (contract.Response, error) {
	in, err := scanInstance(db.QueryRow(ctx, `SELECT `+instanceColumns+` FROM instances WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return contract.Response{}, fmt.Errorf("kvx: get %q: %w", id, contract.ErrNotFound)
	}
	if err != nil {
		return contract.Response{}, fmt.Errorf("kvx: get %q: %w", id, err)
	}
	return response(in.Instance), nil
}

func response(in contract.Instance) contract.Response {
	return contract.Response{
		Instance:      in.ID,
		Generation:    in.Generation,
		Size:          in.DesiredSize,
		State:         in.State,
		HasActiveWork: in.HasActiveWork,
	}
}

// acceptAttempts bounds how often Accept retries after a refusal that a
// concurrent completion made stale.
const acceptAttempts = 3

// Accept is the reference way a change is accepted: in one transaction, one
// statement that checks and sets at once — an INSERT … ON CONFLICT DO
// NOTHING for create, an UPDATE … WHERE NOT has_active_work for resize and
// delete, both RETURNING the accepted change — and then the work row
// (EnqueueChange). Nothing is read first and acted on later, so two
// concurrent changes can never both be accepted: the second's statement
// waits for the first's row lock, re-checks, and matches nothing.
//
// A refused change changes nothing and answers (wrapped):
// contract.ErrExists for a create of a live instance, contract.ErrBusy for a
// create of an instance still being deleted (it will be free once the delete
// completes) and for a resize or delete of an instance with active work,
// contract.ErrNotFound for a resize or delete of an absent instance.
func Accept(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	return AcceptWith(ctx, db, req, AcceptSteps{Enqueue: func(ctx context.Context, tx pgx.Tx, c Change) error {
		_, err := EnqueueChange(ctx, tx, c)
		return err
	}})
}

// AcceptSteps are the steps of Accept that a variant or a system on another
// queue replaces.
type AcceptSteps struct {
	// Record checks and sets the change; zero: RecordChange.
	Record func(ctx context.Context, tx pgx.Tx, req contract.Request) (c Change, ok bool, err error)
	// Enqueue puts the accepted change's work in the same transaction;
	// required.
	Enqueue func(ctx context.Context, tx pgx.Tx, c Change) error
}

// AcceptWith is Accept with its record and enqueue steps replaced: the same
// transaction, lock timeout, refusals and retry of a stale refusal.
func AcceptWith(ctx context.Context, db *pgxpool.Pool, req contract.Request, steps AcceptSteps) (contract.Response, error) {
	record := steps.Record
	if record == nil {
		record = RecordChange
	}
	for attempt := 1; ; attempt++ {
		var (
			resp    contract.Response
			refusal error
			stale   bool
		)
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = `+strconv.FormatInt(lockTimeout.Milliseconds(), 10)); err != nil {
				return err
			}
			c, ok, err := record(ctx, tx, req)
			if isLockTimeout(err) {
				// The row is locked by the work completing on it (or by
				// another change): it has active work right now.
				refusal = fmt.Errorf("kvx: %s %q: instance row locked: %w", req.Op, req.Instance, contract.ErrBusy)
				return errRefused
			}
			if err != nil {
				return err
			}
			if !ok {
				refusal, stale, err = Refusal(ctx, tx, req)
				if err != nil {
					return err
				}
				return errRefused
			}
			if err := steps.Enqueue(ctx, tx, c); err != nil {
				return err
			}
			resp = contract.Response{Instance: c.ID, Generation: c.Generation, Size: c.Size,
				State: stateOf(c.Op), HasActiveWork: true}
			return nil
		})
		switch {
		case err == nil:
			return resp, nil
		case !errors.Is(err, errRefused):
			return contract.Response{}, fmt.Errorf("kvx: %s %q: %w", req.Op, req.Instance, err)
		case !stale || attempt == acceptAttempts:
			return contract.Response{}, refusal
		}
	}
}

var errRefused = errors.New("kvx: change refused")

// lockTimeout bounds how long Accept waits for the instance's row lock. Only
// a transaction changing the instance holds it, and in the reference only
// for milliseconds; a longer wait means a worker stalled mid-commit, and the
// truthful answer is busy, not a timeout.
const lockTimeout = time.Second

func isLockTimeout(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == pgerrcode.LockNotAvailable
}

func stateOf(op contract.Op) string {
	switch op {
	case contract.OpCreate:
		return StateProvisioning
	case contract.OpResize:
		return StateResizing
	}
	return StateDeleting
}

// RecordChange is the reference check-and-set: it writes req as the
// instance's desired state with a new generation and has_active_work set,
// if and only if the instance can take the change, in one statement. ok is
// false when it could not (nothing was written).
func RecordChange(ctx context.Context, tx pgx.Tx, req contract.Request) (c Change, ok bool, err error) {
	var row pgx.Row
	switch req.Op {
	case contract.OpCreate:
		customer := req.Customer
		if customer == "" {
			customer = req.Instance
		}
		row = tx.QueryRow(ctx, `
			INSERT INTO instances (id, customer, generation, created_gen, desired_size, state, has_active_work)
			SELECT $1, $2, g, g, $3, $4, true FROM nextval('kvx_generation') AS g
			ON CONFLICT (id) DO NOTHING
			RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
			req.Instance, customer, req.Size, StateProvisioning)
	case contract.OpResize:
		row = tx.QueryRow(ctx, `
			UPDATE instances
			SET desired_size = $2, generation = nextval('kvx_generation'), has_active_work = true, state = $3
			WHERE id = $1 AND NOT has_active_work AND NOT deleting
			RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
			req.Instance, req.Size, StateResizing)
	case contract.OpDelete:
		row = tx.QueryRow(ctx, `
			UPDATE instances
			SET desired_size = NULL, deleting = true, generation = nextval('kvx_generation'), has_active_work = true, state = $2
			WHERE id = $1 AND NOT has_active_work AND NOT deleting
			RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
			req.Instance, StateDeleting)
	default:
		return Change{}, false, fmt.Errorf("record change: op %q is not a change", req.Op)
	}
	c = Change{Op: req.Op, ID: req.Instance}
	err = row.Scan(&c.UID, &c.Generation, &c.Customer, &c.Size)
	if errors.Is(err, pgx.ErrNoRows) {
		return Change{}, false, nil
	}
	if err != nil {
		return Change{}, false, fmt.Errorf("record change: %w", err)
	}
	return c, true, nil
}

// EnqueueChange enqueues the work that carries out c, in the transaction
// that recorded c.
func EnqueueChange(ctx context.Context, tx pgx.Tx, c Change) (int64, error) {
	id, err := work.Enqueue(ctx, tx, work.Job{Kind: c.Kind(), Key: c.ID, Spec: c})
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", c.Kind(), err)
	}
	return id, nil
}

// Refusal says why RecordChange did not accept req, from the instance as it
// is now (a read that decides nothing: the change was already refused).
// stale is true when the instance could take the change after all — its
// work completed between the two statements — so the caller may try again.
func Refusal(ctx context.Context, tx pgx.Tx, req contract.Request) (refusal error, stale bool, err error) {
	var active, deleting bool
	err = tx.QueryRow(ctx, `SELECT has_active_work, deleting FROM instances WHERE id = $1`, req.Instance).
		Scan(&active, &deleting)
	absent := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !absent {
		return nil, false, fmt.Errorf("refusal: %w", err)
	}
	wrap := func(why string, sentinel error) error {
		return fmt.Errorf("kvx: %s %q: %s: %w", req.Op, req.Instance, why, sentinel)
	}
	if req.Op == contract.OpCreate {
		switch {
		case absent: // deleted between the two statements
			return wrap("instance was just deleted", contract.ErrBusy), true, nil
		case deleting:
			return wrap("instance is being deleted", contract.ErrBusy), false, nil
		}
		return wrap("instance exists", contract.ErrExists), false, nil
	}
	switch {
	case absent:
		return wrap("no such instance", contract.ErrNotFound), false, nil
	case active:
		return wrap("instance has active work", contract.ErrBusy), false, nil
	}
	return wrap("instance's work completed meanwhile", contract.ErrBusy), true, nil
}

// validID reports whether id can be part of a DNS-1123 subdomain name.
func validID(id string) bool {
	for i := 0; i < len(id); i++ {
		b := id[i]
		alnum := b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if !alnum && (b != '-' && b != '.' || i == 0 || i == len(id)-1) {
			return false
		}
	}
	return id != ""
}
