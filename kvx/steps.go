package kvx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/work"
)

// Work kinds.
const (
	KindProvision = "provision" // carries out an accepted create
	KindResize    = "resize"    // carries out an accepted resize
	KindDelete    = "delete"    // carries out an accepted delete
	KindEmail     = "email"     // the welcome email: at-most-once follow-up of provision
)

// Change is one accepted change, stored as its work item's spec. It is
// immutable: every attempt of the work sees the same Change, which is what
// makes the keys derived from it stable.
type Change struct {
	Op         contract.Op `json:"op"` // create, resize or delete (the email reuses its provision's change)
	ID         string      `json:"id"`
	UID        string      `json:"uid"`
	Generation int64       `json:"generation"`
	Size       string      `json:"size,omitempty"` // desired size; zero for delete
	Customer   string      `json:"customer"`
}

// Kind is the work kind that carries out c.
func (c Change) Kind() string {
	switch c.Op {
	case contract.OpCreate:
		return KindProvision
	case contract.OpResize:
		return KindResize
	case contract.OpDelete:
		return KindDelete
	}
	return ""
}

// Env is what a step sees: one work item, inside its claiming transaction,
// handled by one worker incarnation.
type Env struct {
	// DB is the worker's pool. The reference never uses it from a step
	// (everything goes through Tx); it is here so that a variant can commit
	// outside the claim, which is how several bugs are built.
	DB   *pgxpool.Pool
	Tx   *work.Tx // the claiming transaction
	Item work.Item
	Deps contract.Deps
	// Clients call the providers, built from Deps once per worker.
	Clients
	Logger *slog.Logger // Deps.Logger with the worker, item and instance
	Steps  *Steps       // the complete step set, so a step calls the others through it
	Budget Budget
}

// Call makes one provider call bounded by Budget.Provider and maps its error
// through Steps.Classify, naming it step. Before the call:
//
//   - It checks that the claim is still held (work.Tx.CheckClaim): a worker
//     whose session a fault ended, and whose item another worker took over,
//     must not send a late, stale write (a false-alarm gate on the
//     reference found one: a deployment set back to an older size).
//   - It fences the instance (work.Tx.FenceCall) until Budget.Effect after
//     the latest this call can start: a call already in flight when the
//     session ends cannot be taken back, and without the fence the
//     instance's next change could run before it lands and be undone by it
//     (false-alarm gates and soaks on the reference: a deployment set back
//     to an older size, and one deleted under a live instance by a slow
//     Delete). Each call extends the fence, so a lost claim holds the next
//     change for as long as its last call may land, not for the rest of
//     its handler.
//
// A call that got no answer (a timeout, a failed connection) may still
// take effect, so the fence then stays after the commit, until Budget.Effect
// after the call was sent (work.Tx.Unsettled).
func (e *Env) Call(ctx context.Context, step string, f func(ctx context.Context) error) error {
	if e.Tx != nil {
		if err := e.Tx.CheckClaim(); err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		if err := e.Tx.FenceCall(ctx, e.Budget.Effect); err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, e.Budget.Provider)
	defer cancel()
	sent := time.Now()
	err := f(cctx)
	if e.Tx != nil && unanswered(err) {
		e.Tx.Unsettled(sent.Add(e.Budget.Effect))
	}
	return e.Steps.Classify(step, err)
}

// unanswered reports a call that ended without the provider's answer: it
// may still be acted on. An answer of any status means the request was
// handled. The fakes' clients say whether the request was written; real
// SDKs put transport failures in a *url.Error, or end with a deadline.
func unanswered(err error) bool {
	if err == nil {
		return false
	}
	if te, ok := errors.AsType[*fakes.TransportError](err); ok {
		return te.Sent // a request never fully written cannot be acted on
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// Step is a unit of a handler's work.
type Step func(ctx context.Context, e *Env, c Change) error

// Observed is what a completed change records on the instance row.
type Observed struct {
	VMID string
	Size string
}

// Steps are the parts the worker is made of. A zero field means the
// reference part (the function of the same name in this package); a variant
// replaces one field. Handlers call every other part through Env.Steps, so
// replacing, say, VMToken changes what the reference Provision sends.
type Steps struct {
	// Handlers, one per work kind; each runs in the item's claiming
	// transaction, and a nil error completes the item.
	Provision, Resize, Delete, Email Step

	// VMToken is the client token of the VM a create provisions; zero:
	// VMToken(c.UID, c.Generation).
	VMToken func(e *Env, c Change) string
	// ChargeKey is the Idempotency-Key of the charge for event; zero:
	// ChargeKey(c.UID, event).
	ChargeKey func(e *Env, c Change, event string) string

	// Provider effects. Each must be safe to repeat with the same Change.
	CreateVM         func(ctx context.Context, e *Env, c Change) (fakes.VM, error)
	ResizeVM         func(ctx context.Context, e *Env, c Change, vmID string) error
	ApplyDeployment  Step
	Charge           Step
	TerminateVMs     func(ctx context.Context, e *Env, c Change, in Instance) error
	DeleteDeployment Step
	// SendWelcome sends (or arranges to send) the welcome email.
	SendWelcome Step

	// Database effects, through e.Tx.
	LoadInstance   func(ctx context.Context, e *Env, c Change) (Instance, error)
	Complete       func(ctx context.Context, e *Env, c Change, o Observed) error
	EnqueueWelcome Step
	RemoveInstance Step

	// Classify maps a provider error to what the runner should do with the
	// item; zero: Classify.
	Classify func(step string, err error) error
}

// DefaultSteps returns the reference parts, every field set.
func DefaultSteps() Steps {
	return Steps{
		Provision:        Provision,
		Resize:           Resize,
		Delete:           Delete,
		Email:            Email,
		VMToken:          func(_ *Env, c Change) string { return VMToken(c.UID, c.Generation) },
		ChargeKey:        func(_ *Env, c Change, event string) string { return ChargeKey(c.UID, event) },
		CreateVM:         CreateVM,
		ResizeVM:         ResizeVM,
		ApplyDeployment:  ApplyDeployment,
		Charge:           Charge,
		TerminateVMs:     TerminateVMs,
		DeleteDeployment: DeleteDeployment,
		SendWelcome:      SendWelcome,
		LoadInstance:     LoadInstance,
		Complete:         Complete,
		EnqueueWelcome:   EnqueueWelcome,
		RemoveInstance:   RemoveInstance,
		Classify:         Classify,
	}
}

// withDefaults fills every nil field of s with the reference part.
func (s Steps) withDefaults() Steps {
	def := reflect.ValueOf(DefaultSteps())
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			v.Field(i).Set(def.Field(i))
		}
	}
	return s
}

// handler returns the step for a work kind.
func (s *Steps) handler(kind string) Step {
	switch kind {
	case KindProvision:
		return s.Provision
	case KindResize:
		return s.Resize
	case KindDelete:
		return s.Delete
	case KindEmail:
		return s.Email
	}
	return nil
}

// ---- handlers -------------------------------------------------------------

// Provision carries out a create: the VM (by client token), the deployment,
// the provision charge, then, in the claiming transaction, the observed
// fields, has_active_work cleared and the welcome email enqueued. A crash
// anywhere repeats the same requests with the same keys; nothing is
// recorded unless all of it was done.
func Provision(ctx context.Context, e *Env, c Change) error {
	if _, err := e.Steps.LoadInstance(ctx, e, c); err != nil {
		return err
	}
	vm, err := e.Steps.CreateVM(ctx, e, c)
	if err != nil {
		return err
	}
	if err := e.Steps.ApplyDeployment(ctx, e, c); err != nil {
		return err
	}
	if err := e.Steps.Charge(ctx, e, c); err != nil {
		return err
	}
	if err := e.Steps.Complete(ctx, e, c, Observed{VMID: vm.ID, Size: c.Size}); err != nil {
		return err
	}
	return e.Steps.EnqueueWelcome(ctx, e, c)
}

// Resize carries out a resize: the VM (a resize sets the size, so repeating
// it is harmless), the deployment, the resize charge, then the observed
// fields and has_active_work cleared in the claiming transaction.
func Resize(ctx context.Context, e *Env, c Change) error {
	in, err := e.Steps.LoadInstance(ctx, e, c)
	if err != nil {
		return err
	}
	if in.VMID == "" {
		return intransient("resize %s g%d: instance has no VM on record", c.ID, c.Generation)
	}
	if err := e.Steps.ResizeVM(ctx, e, c, in.VMID); err != nil {
		return err
	}
	if err := e.Steps.ApplyDeployment(ctx, e, c); err != nil {
		return err
	}
	if err := e.Steps.Charge(ctx, e, c); err != nil {
		return err
	}
	return e.Steps.Complete(ctx, e, c, Observed{VMID: in.VMID, Size: c.Size})
}

// Delete carries out a delete: terminate every VM the instance owns, delete
// its deployment, charge nothing (billing stops), and remove the instance
// row last, in the claiming transaction, so that until everything it owned
// is gone the row (state "deleting") still says it exists.
func Delete(ctx context.Context, e *Env, c Change) error {
	in, err := e.Steps.LoadInstance(ctx, e, c)
	if err != nil {
		return err
	}
	if err := e.Steps.TerminateVMs(ctx, e, c, in); err != nil {
		return err
	}
	if err := e.Steps.DeleteDeployment(ctx, e, c); err != nil {
		return err
	}
	return e.Steps.RemoveInstance(ctx, e, c)
}

// Email is the welcome email's handler. An instance deleted (or deleted and
// re-created) before the email went out gets none: at most once means zero
// is allowed, and welcoming to a gone instance is worse.
func Email(ctx context.Context, e *Env, c Change) error {
	var live bool
	err := e.Tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND uid = $2 AND NOT deleting)`,
		c.ID, c.UID).Scan(&live)
	if err != nil {
		return fmt.Errorf("email %s: look up instance: %w", c.ID, err)
	}
	if !live {
		e.Logger.InfoContext(ctx, "kvx: instance gone, welcome email dropped")
		return nil
	}
	return e.Steps.SendWelcome(ctx, e, c)
}

// ---- provider steps -------------------------------------------------------

// CreateVM creates the instance's VM with the change's client token and
// returns the VM the cloud answered with. It never describes or lists to
// decide whether to create (those lag behind a create): the token does
// that, and a repeat answers with the VM the first call created.
func CreateVM(ctx context.Context, e *Env, c Change) (fakes.VM, error) {
	var vm fakes.VM
	err := e.Call(ctx, "create vm", func(ctx context.Context) (err error) {
		vm, err = e.Cloud.CreateVM(ctx, fakes.CreateVMRequest{
			Owner:       c.ID,
			Size:        c.Size,
			Region:      Region,
			ClientToken: e.Steps.VMToken(e, c),
		})
		return err
	})
	if err != nil {
		return fakes.VM{}, err
	}
	if vm.ID == "" {
		return fakes.VM{}, intransient("create vm %s: the cloud answered without a VM id", c.ID)
	}
	return vm, nil
}

// ResizeVM sets the VM's size. NotFound means the VM is not visible yet
// (read-after-write lag: the id came from the create's answer), so it is
// retried like any transient error. A VM on record that is terminated can
// never be resized: that parks, since only a human can say why.
func ResizeVM(ctx context.Context, e *Env, c Change, vmID string) error {
	return e.Call(ctx, "resize vm", func(ctx context.Context) error {
		_, err := e.Cloud.ResizeVM(ctx, vmID, c.Size)
		if fe, ok := errors.AsType[*fakes.Error](err); ok && fe.Code == fakes.CodeIncorrectInstanceState {
			return work.Intransient("resize vm "+vmID+": "+fe.Error(), err)
		}
		return err
	})
}

// ApplyDeployment creates or replaces the instance's deployment with the
// desired size.
func ApplyDeployment(ctx context.Context, e *Env, c Change) error {
	return e.Call(ctx, "apply deployment", func(ctx context.Context) error {
		_, err := e.Kube.Apply(ctx, fakes.Deployment{
			Name:     DeploymentName(c.ID),
			Owner:    c.ID,
			Size:     c.Size,
			Replicas: Replicas,
		})
		return err
	})
}

// Charge charges the change's billable event (none for a delete) with the
// event's idempotency key, so a repeat is answered from the billing
// service's idempotency record instead of charging again.
//
// A 5xx is the one answer the key does not settle: the billing service
// stores a 5xx given after the charge was made and replays it to every
// retry with the key (as Stripe does), so retrying alone would never
// converge. After an ambiguous failure the ledger settles it: a charge for
// this event on the instance means the event is paid.
func Charge(ctx context.Context, e *Env, c Change) error {
	event := BillableEvent(c)
	if event == "" {
		return nil
	}
	err := e.Call(ctx, "charge", func(ctx context.Context) error {
		_, err := e.Billing.CreateCharge(ctx, fakes.ChargeRequest{
			Customer:       c.Customer,
			Owner:          c.ID,
			Amount:         Price(c.Size),
			Event:          event,
			IdempotencyKey: e.Steps.ChargeKey(e, c, event),
		})
		return err
	})
	if err == nil || !fakes.IsAmbiguous(err) {
		return err
	}
	var paid bool
	if lerr := e.Call(ctx, "find charge", func(ctx context.Context) error {
		charges, err := e.Billing.ListCharges(ctx, c.ID)
		for _, ch := range charges {
			paid = paid || ch.Event == event
		}
		return err
	}); lerr != nil || !paid {
		return err
	}
	e.Logger.InfoContext(ctx, "kvx: ambiguous charge settled from the billing ledger", "event", event, "err", err)
	return nil
}

// TerminateVMs terminates every VM the instance owns: the one on record,
// the one its create's client token names, and every running VM tagged with
// the instance (leaked by a bug or an older incarnation). A VM on record
// that the cloud does not show yet is lag, not absence: retried.
func TerminateVMs(ctx context.Context, e *Env, c Change, in Instance) error {
	ids := map[string]bool{}
	var order []string
	add := func(id string) {
		if id != "" && !ids[id] {
			ids[id] = true
			order = append(order, id)
		}
	}
	add(in.VMID)
	create := Change{Op: contract.OpCreate, ID: in.ID, UID: in.UID, Generation: in.CreatedGen, Customer: in.Customer}
	err := e.Call(ctx, "find vm by token", func(ctx context.Context) error {
		vm, err := e.Cloud.FindByToken(ctx, e.Steps.VMToken(e, create))
		if fakes.IsNotFound(err) {
			return nil
		}
		if err == nil && vm.State != "terminated" {
			add(vm.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	err = e.Call(ctx, "list vms", func(ctx context.Context) error {
		vms, err := e.Cloud.ListVMs(ctx, c.ID)
		for _, vm := range vms {
			if vm.State != "terminated" {
				add(vm.ID)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range order {
		err := e.Call(ctx, "terminate vm", func(ctx context.Context) error {
			_, err := e.Cloud.TerminateVM(ctx, id)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DeleteDeployment deletes the instance's deployment; already gone is done.
func DeleteDeployment(ctx context.Context, e *Env, c Change) error {
	return e.Call(ctx, "delete deployment", func(ctx context.Context) error {
		err := e.Kube.Delete(ctx, DeploymentName(c.ID))
		if fakes.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// WelcomeEmail is the welcome email of the instance c provisioned.
func WelcomeEmail(c Change) fakes.EmailRequest {
	return fakes.EmailRequest{
		To:      WelcomeTo(c.Customer),
		Owner:   c.ID,
		Event:   WelcomeEvent(c.ID, c.Generation),
		Subject: "Welcome to KVX: " + c.ID + " is ready",
	}
}

// SendWelcome sends the welcome email after the claiming transaction
// committed, never inside it: the email service has no idempotency, so a
// send before a commit that then fails would be repeated by the retry. A
// crash between the commit and the send loses the email (at most once); a
// failed send is logged and not retried, since a failure may have sent it.
func SendWelcome(ctx context.Context, e *Env, c Change) error {
	req := WelcomeEmail(c)
	logger, client, budget := e.Logger, e.Email, e.Budget.Provider
	e.Tx.AfterCommit(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, budget)
		defer cancel()
		if _, err := client.Send(ctx, req); err != nil {
			logger.WarnContext(ctx, "kvx: welcome email not sent (at most once: not retried)", "event", req.Event, "err", err)
		}
	})
	return nil
}

// ---- database steps -------------------------------------------------------

// Instance is an instance row.
type Instance struct {
	contract.Instance
	UID        string
	CreatedGen int64
}

const instanceColumns = `id, uid::text, customer, generation, created_gen, coalesce(desired_size, ''), deleting, state,
	has_active_work, vm_id, observed_size, observed_gen`

func scanInstance(row pgx.Row) (Instance, error) {
	var in Instance
	err := row.Scan(&in.ID, &in.UID, &in.Customer, &in.Generation, &in.CreatedGen, &in.DesiredSize, &in.Deleting,
		&in.State, &in.HasActiveWork, &in.VMID, &in.ObservedSize, &in.ObservedGen)
	return in, err
}

// LoadInstance reads the instance c is about. A missing row, or one at
// another uid or generation, means the work is stale — impossible while
// has_active_work holds — so the item parks for a human rather than acting
// on a guess.
func LoadInstance(ctx context.Context, e *Env, c Change) (Instance, error) {
	in, err := scanInstance(e.Tx.QueryRow(ctx, `SELECT `+instanceColumns+` FROM instances WHERE id = $1`, c.ID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Instance{}, intransient("%s %s g%d: instance row missing", c.Kind(), c.ID, c.Generation)
	}
	if err != nil {
		return Instance{}, fmt.Errorf("%s %s: load instance: %w", c.Kind(), c.ID, err)
	}
	if in.UID != c.UID || in.Generation != c.Generation {
		return Instance{}, intransient("%s %s g%d: instance is at uid %s g%d: stale work",
			c.Kind(), c.ID, c.Generation, in.UID, in.Generation)
	}
	return in, nil
}

// Complete records what the change observed, marks the instance ready and
// clears has_active_work, in the claiming transaction: it commits with the
// item's completion or not at all.
func Complete(ctx context.Context, e *Env, c Change, o Observed) error {
	tag, err := e.Tx.Exec(ctx, `
		UPDATE instances
		SET state = $4, has_active_work = false, vm_id = $5, observed_size = $6, observed_gen = $3
		WHERE id = $1 AND uid = $2 AND generation = $3`,
		c.ID, c.UID, c.Generation, StateReady, o.VMID, o.Size)
	if err != nil {
		return fmt.Errorf("%s %s: complete: %w", c.Kind(), c.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return intransient("%s %s g%d: instance changed under its work", c.Kind(), c.ID, c.Generation)
	}
	return nil
}

// EnqueueWelcome enqueues the welcome email as follow-up work in the
// claiming transaction: it exists if and only if the provision committed.
func EnqueueWelcome(ctx context.Context, e *Env, c Change) error {
	if _, err := work.Enqueue(ctx, e.Tx, work.Job{Kind: KindEmail, Key: c.ID, Spec: c}); err != nil {
		return fmt.Errorf("provision %s: enqueue welcome email: %w", c.ID, err)
	}
	return nil
}

// RemoveInstance deletes the instance row, in the claiming transaction.
func RemoveInstance(ctx context.Context, e *Env, c Change) error {
	tag, err := e.Tx.Exec(ctx, `DELETE FROM instances WHERE id = $1 AND uid = $2 AND generation = $3`,
		c.ID, c.UID, c.Generation)
	if err != nil {
		return fmt.Errorf("delete %s: remove instance: %w", c.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return intransient("delete %s g%d: instance changed under its work", c.ID, c.Generation)
	}
	return nil
}

// ---- errors ---------------------------------------------------------------

// Classify maps a provider error: an idempotency mismatch and every other
// intransient rejection park the item until an operator resumes it (retrying
// cannot help until a fix is deployed); anything else — transient,
// ambiguous, not found, conflict, a deadline — is returned as is and
// retried with backoff, with the same keys.
func Classify(step string, err error) error {
	switch {
	case err == nil:
		return nil
	case work.IsIntransient(err):
		return err
	case fakes.IsMismatch(err):
		return work.Intransient(step+": idempotency key reused with different parameters: "+err.Error(), err)
	case fakes.IsIntransient(err):
		return work.Intransient(step+": "+err.Error(), err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// intransient is an error that parks the item with msg as its reason.
func intransient(format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	return work.Intransient(msg, errors.New(msg))
}
