package work

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. They are wrapped; test with errors.Is.
var (
	// ErrNoHandler parks an item whose kind has no handler in
	// RunnerOptions.Handlers (a newer version enqueued it, or a handler was
	// removed): it waits visibly until a runner that knows it is deployed
	// and Release is called.
	ErrNoHandler = errors.New("work: no handler for kind")
	// ErrHandlerPanic parks an item whose handler panicked.
	ErrHandlerPanic = errors.New("work: handler panicked")
	// ErrTxAborted parks an item whose handler returned nil although its
	// transaction had failed (it swallowed an SQL error): committing would
	// roll back and the item would be retried forever without an attempt
	// being recorded.
	ErrTxAborted = errors.New("work: handler returned nil but its transaction is aborted")
	// ErrNotYours is returned by Tx.Commit and Tx.Rollback: the claiming
	// transaction belongs to the runner; a handler ends it by returning.
	ErrNotYours = errors.New("work: a handler must not commit or roll back the claiming transaction")
	// ErrClaimLost is returned by Tx.CheckClaim when the claiming session is
	// gone, and with it the claim: another worker may hold the item now.
	ErrClaimLost = errors.New("work: the claiming session is gone")
	// ErrInvalidOptions is returned by Run for options it cannot run with.
	ErrInvalidOptions = errors.New("work: invalid runner options")
)

type class int

const (
	classTransient class = iota + 1
	classIntransient
)

// classifier is implemented by the markers; the outermost marker in an
// error chain decides.
type classifier interface {
	error
	workClass() class
}

// TransientError marks an error as transient: the item is retried with
// backoff. Made by Transient.
type TransientError struct{ Err error }

func (e *TransientError) Error() string    { return "transient: " + e.Err.Error() }
func (e *TransientError) Unwrap() error    { return e.Err }
func (e *TransientError) workClass() class { return classTransient }

// IntransientError marks an error as intransient: the item parks with
// Reason until Release. Made by Intransient.
type IntransientError struct {
	Reason string
	Err    error // may be nil
}

func (e *IntransientError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	if e.Reason == "" {
		return e.Err.Error()
	}
	return e.Reason + ": " + e.Err.Error()
}
func (e *IntransientError) Unwrap() error    { return e.Err }
func (e *IntransientError) workClass() class { return classIntransient }

// Transient marks err as transient (retry with backoff). Transient(nil) is
// nil, so `return work.Transient(err)` after a call that succeeded completes
// the item.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// Intransient marks err as intransient: the item parks with reason until
// Release. err may be nil; the result never is. The park reason stored in
// last_error is the error's text (reason: err).
func Intransient(reason string, err error) error {
	return &IntransientError{Reason: reason, Err: err}
}

// IsIntransient reports whether err parks the item. In order:
//
//   - the outermost Transient / Intransient marker in err's chain decides;
//   - a Postgres error (*pgconn.PgError) is transient if its SQLSTATE says
//     that trying again can succeed: class 40 transaction rollback
//     (40001 serialization failure, 40P01 deadlock; but not 40002), class 08
//     connection exception, class 53 insufficient resources, class 57
//     operator intervention (57014 statement timeout or cancel, 57P01
//     terminated, 57P02/57P03 crash and restart), class 58 system (I/O)
//     error, 55P03 lock timeout, 55006 object in use, 25P03 idle-in-
//     transaction timeout, 72000 snapshot too old. Every other server error
//     is intransient: the server rejected the statement and will reject it
//     again — 23xxx constraint violations (a unique violation in a handler
//     is a bug, not bad luck), 42xxx syntax or undefined object, 22xxx data
//     exceptions, 25P02 "transaction is aborted" (an earlier error was
//     swallowed), P0001 RAISE, XX000 …;
//   - anything else (network errors, io.ErrUnexpectedEOF, a closed
//     connection, context deadlines and cancellations, plain errors from
//     provider clients) is transient.
func IsIntransient(err error) bool {
	return err != nil && classify(err) == classIntransient
}

// IsTransient reports whether err is retried with backoff: every non-nil
// error that IsIntransient does not park.
func IsTransient(err error) bool {
	return err != nil && classify(err) == classTransient
}

func classify(err error) class {
	var m classifier
	if errors.As(err, &m) {
		return m.workClass()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifyCode(pgErr.Code)
	}
	// Network errors, io.ErrUnexpectedEOF, pgconn.ErrConnClosed, timeouts,
	// context errors and plain errors: the Handler contract says transient.
	return classTransient
}

var transientCodes = map[string]bool{
	pgerrcode.LockNotAvailable:                        true,  // 55P03 lock_timeout
	pgerrcode.ObjectInUse:                             true,  // 55006
	pgerrcode.IdleInTransactionSessionTimeout:         true,  // 25P03
	pgerrcode.SnapshotTooOld:                          true,  // 72000
	pgerrcode.SerializationFailure:                    true,  // 40001 (also in class 40)
	pgerrcode.DeadlockDetected:                        true,  // 40P01 (also in class 40)
	pgerrcode.QueryCanceled:                           true,  // 57014 (also in class 57)
	pgerrcode.TransactionIntegrityConstraintViolation: false, // 40002: a constraint, a bug
}

func classifyCode(code string) class {
	if t, ok := transientCodes[code]; ok {
		if t {
			return classTransient
		}
		return classIntransient
	}
	switch {
	case pgerrcode.IsTransactionRollback(code), // 40
		pgerrcode.IsConnectionException(code),   // 08
		pgerrcode.IsInsufficientResources(code), // 53
		pgerrcode.IsOperatorIntervention(code),  // 57
		pgerrcode.IsSystemError(code):           // 58
		return classTransient
	}
	return classIntransient
}

// commitFailedForCertain reports whether err from COMMIT proves the
// transaction did not commit: the server answered it with an ERROR (a
// deferred constraint, a serialization failure at commit) or with ROLLBACK.
// A lost connection, a timeout or a FATAL error leave the outcome unknown.
func commitFailedForCertain(err error) bool {
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Severity == "ERROR"
}
