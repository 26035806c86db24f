// Package contract is the small surface a system under test implements so that
// workproof can drive it: migrate a fresh database, serve one user request, run
// one worker, and report its own state for the invariant checkers.
//
// A team's worker code imports this package and nothing else of the harness:
// Deps hands a worker each provider as a base URL and an *http.Client, from
// which it builds whatever clients it uses (package fakes has small ones;
// a team's own SDK clients work the same way).
//
// # Conventions the invariant checkers rely on
//
// Besides the interfaces below, a system under test follows three
// conventions, so that the providers' ledgers can be joined to the requests
// and to the system's own state:
//
//   - Every provider mutation names its owning instance (Owner: a tag, a
//     label, charge metadata) and carries an idempotency key or client token.
//   - Billing: every change that takes effect is charged exactly once, for
//     its billable event, named by BillableEvent: "provision:<id>:g<gen>"
//     for a create, "resize:<id>:g<gen>" for a resize, where gen is the
//     generation the request was answered with; a delete charges nothing.
//     The charge carries the event as ChargeRequest.Event. A change whose
//     instance reached its generation and has no charge for its event was
//     never billed; two charges (not refunded) for one event are double
//     billing.
//   - Active work: an instance's HasActiveWork is set in the transaction
//     that accepts a change and enqueues its work, and cleared in the one
//     that completes it; Inspect reads the instances and the work in one
//     snapshot. So HasActiveWork with no work item for the instance means
//     the work was dropped.
package contract

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// System is a control plane built on the work-table pattern.
//
// Every method may be called concurrently from many goroutines; the harness
// hands each worker its own pool whose connections run through that worker's
// own breakable network links.
type System interface {
	// Migrate creates the system's schema in a fresh, empty database.
	Migrate(ctx context.Context, db *pgxpool.Pool) error
	// Serve handles one user or operator request. A change to an instance
	// that has active work must fail with an error for which IsBusy is true,
	// and must then have changed nothing.
	Serve(ctx context.Context, db *pgxpool.Pool, req Request) (Response, error)
	// Work runs one worker until ctx ends, then returns (nil on a clean
	// shutdown). Deps carries the provider clients for this worker.
	Work(ctx context.Context, db *pgxpool.Pool, deps Deps) error
	// Inspect reports the system's own view of its state: the database is
	// the truth about the system, and the checkers compare it with the
	// providers' ledgers and the request history. Instances and work are
	// read in one snapshot (e.g. one REPEATABLE READ transaction).
	Inspect(ctx context.Context, db *pgxpool.Pool) (Snapshot, error)
}

// Op names a request.
type Op string

const (
	OpCreate Op = "create" // create an instance of Size
	OpResize Op = "resize" // change an instance's Size
	OpDelete Op = "delete" // delete an instance and everything it owns
	OpGet    Op = "get"    // read an instance
	// OpResume is the operator's "a fix was deployed": parked work becomes
	// runnable again. Instance is ignored.
	OpResume Op = "resume"
)

// Request is one call to Serve.
type Request struct {
	Op       Op
	Instance string // instance id, chosen by the caller; required but for OpResume
	Customer string // billing customer; zero: the instance id
	Size     string // required for create and resize: "small", "medium" or "large"
}

// Response is what Serve answers.
type Response struct {
	Instance      string
	Generation    int64  // the generation of the accepted change (or current, for get)
	Size          string // desired size
	State         string // system-defined: "provisioning", "ready", "deleting", …
	HasActiveWork bool
	Resumed       int // OpResume: how many work items were released
}

// Sentinel errors Serve returns (possibly wrapped).
var (
	ErrBusy     = errors.New("instance has active work")
	ErrNotFound = errors.New("instance not found")
	ErrExists   = errors.New("instance already exists")
	ErrInvalid  = errors.New("invalid request")
)

// BillableEvent names the billable event of a change (see the package
// doc): "provision:<instance>:g<generation>" for a create,
// "resize:<instance>:g<generation>" for a resize, and "" for any other op,
// which is not billed.
func BillableEvent(op Op, instance string, generation int64) string {
	g := ":g" + strconv.FormatInt(generation, 10)
	switch op {
	case OpCreate:
		return "provision:" + instance + g
	case OpResize:
		return "resize:" + instance + g
	}
	return ""
}

// IsBusy reports whether err means "the instance has active work; nothing was
// changed, try again later".
func IsBusy(err error) bool { return errors.Is(err, ErrBusy) }

// Deps is what a worker receives from the harness.
type Deps struct {
	Worker string // this worker incarnation's name, e.g. "w1.2"; also its provider caller identity
	// Services are the providers this worker reaches, by name ("cloud",
	// "billing", "kube", "email": package fakes' Spec names). Each comes
	// through this worker incarnation's own breakable network link, and
	// every request sent through its HTTPClient is a crash point.
	Services map[string]Service
	Logger   *slog.Logger // never nil
	Clock    Clock        // never nil
	Rand     *rand.Rand   // seeded per incarnation; never nil; not safe for concurrent use
	// Observer is told when the worker enters and leaves a work item, so the
	// harness can check that no two workers are inside one item or one
	// instance at once. Never nil.
	Observer Observer
}

// Service is how a worker reaches one provider.
type Service struct {
	// URL is the provider's base URL, e.g. "http://127.0.0.1:41234".
	URL string
	// HTTPClient sends the worker's requests to it; never nil for a service
	// the harness runs. It sets no timeout: the worker bounds its calls.
	HTTPClient *http.Client
}

// Service returns the provider called name; the zero Service when the
// harness runs none.
func (d Deps) Service(name string) Service { return d.Services[name] }

// Clock is the time source a worker must use instead of time.Now.
type Clock interface {
	Now() time.Time
}

// Observer records which work item a worker is inside.
type Observer interface {
	// Begin is called once a work item is claimed; the returned func is
	// called with the outcome ("done", "retry", "parked", "error") when the
	// worker leaves it. Item is the work item's id, key the instance it
	// works on.
	Begin(item, key string) (end func(outcome string))
}

// Snapshot is the system's own state.
type Snapshot struct {
	Instances []Instance
	Work      []WorkItem // work not yet done, including parked work
}

// Instance is one instance row as the system sees it.
type Instance struct {
	ID            string
	Customer      string
	Generation    int64  // of the last accepted change
	DesiredSize   string // zero when Deleting
	Deleting      bool   // a delete was accepted and has not finished
	State         string
	HasActiveWork bool
	VMID          string // observed: the VM the system believes it owns
	ObservedSize  string // observed: the size last applied
	ObservedGen   int64  // generation whose work last completed
}

// WorkItem is one pending work row.
type WorkItem struct {
	ID       string
	Kind     string
	Key      string // instance id
	Attempts int
	Parked   bool
	Reason   string // why it is parked, or the last error
}
