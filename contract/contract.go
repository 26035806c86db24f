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
	// worker leaves it. Item is the work item's id. Key is the instance it
	// changes, for work that holds the instance's active work (a create,
	// resize or delete: no other change of the instance may run beside it);
	// a follow-up that runs outside that lock-out, beside the instance's
	// next change, names FollowUpKey(kind, instance) instead.
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

// Liveness is what a system promises about recovery: the bounds the harness
// holds it to, declared by the system (LivenessDeclarer) because they follow
// from how it claims work, not from the harness. A system that recovers
// later than it promised is invalid, with a violation that says what it
// promised and what it took. A promise is separate from the timeouts a
// system runs with: it is what the team commits to, so that a change that
// lengthens a timeout past the promise is caught instead of silently
// loosening the gate.
type Liveness struct {
	// Takeover bounds how long a work item whose worker went silent inside
	// it (its database link swallows every answer, and stays so) waits
	// until another worker has finished it. Zero: DefaultTakeover.
	Takeover time.Duration
	// Settle bounds the liveness phase: once every fault is healed, every
	// fix deployed and every crashed worker restarted, how long until the
	// system has no work left, no active work and every instance at its
	// desired generation. It covers recovering a claim a crashed worker
	// left behind. Zero: DefaultSettle.
	Settle time.Duration
	// ParkVisibleWithin bounds how long after a work item first meets an
	// intransient error (a deployed bug) Inspect shows it parked, with a
	// reason. Zero: DefaultParkVisibleWithin.
	ParkVisibleWithin time.Duration
	// Claim says what holds a worker's claim on a work item, which decides
	// whether a lost database session ends it. Zero: ClaimSession.
	Claim Claim
	// ListenerApplicationName, when set, is the suffix of the
	// application_name of a worker's listening session ("<worker> <suffix>"
	// — the harness names each worker's sessions by its incarnation),
	// so that a fault aimed at listeners finds it whatever it last ran.
	// Zero: a listener is a session whose last statement was LISTEN, and
	// when a worker has none such, every session of the worker is the
	// listener fault's target (a listener that pings is not told apart).
	ListenerApplicationName string
}

// Claim is what holds a worker's claim on a work item.
type Claim string

const (
	// ClaimSession: the claim is held by the worker's database session (a
	// row lock taken FOR UPDATE SKIP LOCKED inside an open transaction, an
	// advisory lock). A lost session ends it at once, and another worker may
	// take the item over; the harness then ends the first worker's time
	// inside the item where its session was cut, since what it does after
	// that it does outside any claim.
	ClaimSession Claim = "session"
	// ClaimRow: the claim is committed state (a row marked running, as River
	// and most job queues do). It outlives the session that made it: only
	// the system's own rescue (after a stuck-job timeout) frees it. The
	// harness keeps the worker inside the item after a lost session until
	// the worker says it left, so a second worker inside the item meanwhile
	// is a race.
	ClaimRow Claim = "row"
)

// Default bounds of a system that declares none.
const (
	DefaultTakeover          = 16 * time.Second
	DefaultSettle            = 15 * time.Second
	DefaultParkVisibleWithin = 10 * time.Second
)

// LivenessDeclarer is implemented by a System that declares its liveness
// promises. The harness reads them once per run.
type LivenessDeclarer interface {
	Liveness() Liveness
}

// LivenessOf returns the promises sys declares, every zero field set to its
// default.
func LivenessOf(sys System) Liveness {
	var l Liveness
	if d, ok := sys.(LivenessDeclarer); ok {
		l = d.Liveness()
	}
	return l.WithDefaults()
}

// WithDefaults returns l with every zero field set to its default.
func (l Liveness) WithDefaults() Liveness {
	if l.Takeover <= 0 {
		l.Takeover = DefaultTakeover
	}
	if l.Settle <= 0 {
		l.Settle = DefaultSettle
	}
	if l.ParkVisibleWithin <= 0 {
		l.ParkVisibleWithin = DefaultParkVisibleWithin
	}
	if l.Claim == "" {
		l.Claim = ClaimSession
	}
	return l
}

// FollowUpKey is the Observer key of a follow-up work item of kind (a
// welcome email) that does not hold its instance's active work and may run
// beside the instance's next change: "<kind>:<instance>". The race checker
// compares an item only with items of the same key, so a follow-up is never
// taken for a second change of its instance, yet two follow-ups of one kind
// for one instance at once still are a race.
func FollowUpKey(kind, instance string) string { return kind + ":" + instance }
