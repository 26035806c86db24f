package riverkvx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
)

// Job args: one kind per work kind, each carrying the accepted change,
// which is immutable, so that every attempt derives the same keys from it.
type (
	ProvisionArgs struct {
		Change kvx.Change `json:"change"`
	}
	ResizeArgs struct {
		Change kvx.Change `json:"change"`
	}
	DeleteArgs struct {
		Change kvx.Change `json:"change"`
	}
	// EmailArgs is the welcome email, follow-up work of a provision,
	// inserted in the provision's completing transaction.
	EmailArgs struct {
		Change kvx.Change `json:"change"`
	}
)

func (ProvisionArgs) Kind() string { return kvx.KindProvision }
func (ResizeArgs) Kind() string    { return kvx.KindResize }
func (DeleteArgs) Kind() string    { return kvx.KindDelete }
func (EmailArgs) Kind() string     { return kvx.KindEmail }

func (a ProvisionArgs) change() kvx.Change { return a.Change }
func (a ResizeArgs) change() kvx.Change    { return a.Change }
func (a DeleteArgs) change() kvx.Change    { return a.Change }
func (a EmailArgs) change() kvx.Change     { return a.Change }

type args interface {
	river.JobArgs
	change() kvx.Change
}

// changeArgs is the job that carries out c.
func changeArgs(c kvx.Change) river.JobArgs {
	switch c.Op {
	case contract.OpCreate:
		return ProvisionArgs{Change: c}
	case contract.OpResize:
		return ResizeArgs{Change: c}
	}
	return DeleteArgs{Change: c}
}

func decodeChange(encoded []byte) (kvx.Change, error) {
	var a struct {
		Change kvx.Change `json:"change"`
	}
	err := json.Unmarshal(encoded, &a)
	return a.Change, err
}

// Work runs one worker: a River client of its own on the worker's pool,
// one job at a time (the harness counts one worker per incarnation), until
// ctx ends.
func (s *System) Work(ctx context.Context, db *pgxpool.Pool, deps contract.Deps) error {
	w := &worker{s: s, db: db, deps: deps, clients: kvx.NewClients(deps, s.tune.Provider),
		log: deps.Logger.With("worker", deps.Worker)}
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobWorker[ProvisionArgs]{w: w, do: w.provision})
	river.AddWorker(workers, &jobWorker[ResizeArgs]{w: w, do: w.resize})
	river.AddWorker(workers, &jobWorker[DeleteArgs]{w: w, do: w.delete})
	river.AddWorker(workers, &jobWorker[EmailArgs]{w: w, do: w.email})
	client, err := river.NewClient(riverpgxv5.New(db), s.riverConfig(workers, deps.Worker, deps))
	if err != nil {
		return fmt.Errorf("riverkvx: worker %s: client: %w", deps.Worker, err)
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("riverkvx: worker %s: start: %w", deps.Worker, err)
	}
	<-ctx.Done()
	// A graceful stop lets the job in hand finish its provider call; then
	// the job is cancelled. Work returns only once River has stopped: its
	// completer may still be retrying a job's outcome over a dead link (a
	// crashed incarnation's), which takes River up to ~7 s of backoff, and
	// a worker that returned with goroutines of its own still running
	// would outlive itself.
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.tune.Provider)
	defer cancel()
	if err := client.Stop(stop); err != nil {
		hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopBound)
		defer cancel()
		if err := client.StopAndCancel(hard); err != nil {
			return fmt.Errorf("riverkvx: worker %s: River did not stop within %v: %w", deps.Worker, stopBound, err)
		}
	}
	return nil
}

// stopBound bounds River's hard stop: above its completer's retries
// against a dead database (1 + 2 + 4 s of backoff), below the harness's
// 30 s wait for a worker to stop.
const stopBound = 20 * time.Second

// worker is one worker incarnation's state, shared by its job workers.
type worker struct {
	s       *System
	db      *pgxpool.Pool
	deps    contract.Deps
	clients kvx.Clients
	log     *slog.Logger
}

// step is a job's work inside its transaction. It returns the effect to
// run once the transaction committed (nil: none).
type step func(ctx context.Context, tx pgx.Tx, c kvx.Change, log *slog.Logger) (afterCommit func(context.Context), err error)

// jobWorker is a River worker for one kind: the job's transaction, the
// harness's Observer around it, and JobCompleteTx inside it.
type jobWorker[T args] struct {
	river.WorkerDefaults[T]
	w  *worker
	do step
}

// Work carries out one attempt of a job. Everything the change records and
// the job's completion commit in one transaction (River's JobCompleteTx),
// so a crash anywhere leaves either all of it or none, and a redo repeats
// the provider calls with the same keys. An intransient error cancels the
// job (parks it, visibly, until an operator's resume); any other error is
// a retry with River's backoff.
func (jw *jobWorker[T]) Work(ctx context.Context, job *river.Job[T]) error {
	w := jw.w
	c := job.Args.change()
	key := c.ID
	if job.Kind == kvx.KindEmail {
		key = contract.FollowUpKey(kvx.KindEmail, c.ID)
	}
	end := w.deps.Observer.Begin(strconv.FormatInt(job.ID, 10), key)
	outcome := "retry"
	defer func() { end(outcome) }()
	log := w.log.With("job", job.ID, "kind", job.Kind, "instance", c.ID, "generation", c.Generation, "attempt", job.Attempt)

	after, err := jw.attempt(ctx, job, c, log)
	if errors.Is(err, errCommitUnknown) {
		// The commit's answer was lost: it may have committed. The
		// harness must not take this attempt for one that changed
		// nothing.
		outcome = "error"
		return err
	}
	if err != nil {
		if fakes.IsIntransient(err) || errors.Is(err, errIntransient) || fakes.IsMismatch(err) {
			outcome = "parked"
			log.WarnContext(ctx, "riverkvx: intransient error: job cancelled until a fix is deployed", "err", err)
			return river.JobCancel(err)
		}
		return err
	}
	outcome = "done"
	if after != nil {
		after(ctx)
	}
	return nil
}

func (jw *jobWorker[T]) attempt(ctx context.Context, job *river.Job[T], c kvx.Change, log *slog.Logger) (func(context.Context), error) {
	w := jw.w
	if w.s.v.completeFirst {
		if err := completeAlone(ctx, w.db, job); err != nil {
			return nil, err
		}
	}
	tx, err := w.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	after, err := jw.do(ctx, tx, c, log)
	if err != nil {
		return nil, err
	}
	if !w.s.v.completeFirst {
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return nil, fmt.Errorf("complete job: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errCommitUnknown, err)
	}
	return after, nil
}

// errIntransient marks an error that retrying cannot fix.
var errIntransient = errors.New("intransient")

// errCommitUnknown marks a failed COMMIT: whether it took effect is
// unknown. Either way the job is right: a commit that took effect completed
// the job with it (JobCompleteTx), and River's own record of the error then
// changes nothing (it only touches a running job); one that did not leaves
// the job running, and River retries it.
var errCommitUnknown = errors.New("commit outcome unknown")

func intransient(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errIntransient)
}

// call makes one provider call bounded by Tuning.Provider.
func (w *worker) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, w.s.tune.Provider)
	defer cancel()
	if err := f(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// instance is the row a change works on, locked for the transaction.
type instance struct {
	uid        string
	generation int64
	createdGen int64
	customer   string
	vmID       string
}

// lock reads and locks the instance c is about. A missing row, or one at
// another uid or generation, is stale work — impossible while
// has_active_work holds — so the job parks for a human rather than acting
// on a guess.
func lock(ctx context.Context, tx pgx.Tx, c kvx.Change) (instance, error) {
	var in instance
	err := tx.QueryRow(ctx, `SELECT uid::text, generation, created_gen, customer, vm_id FROM instances WHERE id = $1 FOR UPDATE`, c.ID).
		Scan(&in.uid, &in.generation, &in.createdGen, &in.customer, &in.vmID)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, intransient("%s %s g%d: instance row missing", c.Kind(), c.ID, c.Generation)
	}
	if err != nil {
		return in, fmt.Errorf("lock instance: %w", err)
	}
	if in.uid != c.UID || in.generation != c.Generation {
		return in, intransient("%s %s g%d: instance is at uid %s g%d: stale work", c.Kind(), c.ID, c.Generation, in.uid, in.generation)
	}
	return in, nil
}

// complete records what the change observed and clears has_active_work.
func complete(ctx context.Context, tx pgx.Tx, c kvx.Change, vmID string) error {
	tag, err := tx.Exec(ctx, `UPDATE instances
		SET state = $4, has_active_work = false, vm_id = $5, observed_size = $6, observed_gen = $3
		WHERE id = $1 AND uid = $2 AND generation = $3`, c.ID, c.UID, c.Generation, kvx.StateReady, vmID, c.Size)
	if err != nil {
		return fmt.Errorf("complete instance: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return intransient("%s %s g%d: instance changed under its work", c.Kind(), c.ID, c.Generation)
	}
	return nil
}

// provision: the VM by client token, the deployment, the charge; then the
// instance completed and the welcome email's job inserted, in the job's
// transaction.
func (w *worker) provision(ctx context.Context, tx pgx.Tx, c kvx.Change, log *slog.Logger) (func(context.Context), error) {
	if _, err := lock(ctx, tx, c); err != nil {
		return nil, err
	}
	var vm fakes.VM
	if err := w.call(ctx, "create vm", func(ctx context.Context) (err error) {
		vm, err = w.clients.Cloud.CreateVM(ctx, fakes.CreateVMRequest{Owner: c.ID, Size: c.Size, Region: kvx.Region,
			ClientToken: kvx.VMToken(c.UID, c.Generation)})
		return err
	}); err != nil {
		return nil, err
	}
	if vm.ID == "" {
		return nil, intransient("create vm %s: the cloud answered without a VM id", c.ID)
	}
	if err := w.apply(ctx, c); err != nil {
		return nil, err
	}
	if err := w.charge(ctx, c, log); err != nil {
		return nil, err
	}
	if err := complete(ctx, tx, c, vm.ID); err != nil {
		return nil, err
	}
	// The follow-up is inserted by this job's own client, in this job's
	// transaction: it exists if and only if the provision committed.
	if _, err := river.ClientFromContext[pgx.Tx](ctx).InsertTx(ctx, tx, EmailArgs{Change: c}, nil); err != nil {
		return nil, fmt.Errorf("insert welcome email: %w", err)
	}
	return nil, nil
}

// resize: the VM's size, the deployment, the charge; then the instance
// completed.
func (w *worker) resize(ctx context.Context, tx pgx.Tx, c kvx.Change, log *slog.Logger) (func(context.Context), error) {
	in, err := lock(ctx, tx, c)
	if err != nil {
		return nil, err
	}
	if in.vmID == "" {
		return nil, intransient("resize %s g%d: instance has no VM on record", c.ID, c.Generation)
	}
	if err := w.call(ctx, "resize vm", func(ctx context.Context) error {
		_, err := w.clients.Cloud.ResizeVM(ctx, in.vmID, c.Size)
		if fe, ok := errors.AsType[*fakes.Error](err); ok && fe.Code == fakes.CodeIncorrectInstanceState {
			return fmt.Errorf("%w: %w", err, errIntransient)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := w.apply(ctx, c); err != nil {
		return nil, err
	}
	if err := w.charge(ctx, c, log); err != nil {
		return nil, err
	}
	return nil, complete(ctx, tx, c, in.vmID)
}

// delete: every VM the instance owns terminated, its deployment deleted,
// and the row removed last, in the job's transaction.
func (w *worker) delete(ctx context.Context, tx pgx.Tx, c kvx.Change, _ *slog.Logger) (func(context.Context), error) {
	in, err := lock(ctx, tx, c)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	var order []string
	add := func(id string) {
		if id != "" && !ids[id] {
			ids[id] = true
			order = append(order, id)
		}
	}
	add(in.vmID)
	if err := w.call(ctx, "find vm by token", func(ctx context.Context) error {
		vm, err := w.clients.Cloud.FindByToken(ctx, kvx.VMToken(c.UID, in.createdGen))
		if fakes.IsNotFound(err) {
			return nil
		}
		if err == nil && vm.State != "terminated" {
			add(vm.ID)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := w.call(ctx, "list vms", func(ctx context.Context) error {
		vms, err := w.clients.Cloud.ListVMs(ctx, c.ID)
		for _, vm := range vms {
			if vm.State != "terminated" {
				add(vm.ID)
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	for _, id := range order {
		if err := w.call(ctx, "terminate vm", func(ctx context.Context) error {
			_, err := w.clients.Cloud.TerminateVM(ctx, id)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if err := w.call(ctx, "delete deployment", func(ctx context.Context) error {
		err := w.clients.Kube.Delete(ctx, kvx.DeploymentName(c.ID))
		if fakes.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		return nil, err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM instances WHERE id = $1 AND uid = $2 AND generation = $3`, c.ID, c.UID, c.Generation)
	if err != nil {
		return nil, fmt.Errorf("remove instance: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return nil, intransient("delete %s g%d: instance changed under its work", c.ID, c.Generation)
	}
	return nil, nil
}

// email sends the welcome email once the job's completion committed, never
// before: the email service has no idempotency, so a send before a commit
// that then fails would be repeated by the retry. A crash between the
// commit and the send loses the email (at most once); a failed send is
// logged, not retried, since a failure may have sent it. An instance
// deleted (or re-created) meanwhile gets none.
func (w *worker) email(ctx context.Context, tx pgx.Tx, c kvx.Change, log *slog.Logger) (func(context.Context), error) {
	var live bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND uid = $2 AND NOT deleting)`,
		c.ID, c.UID).Scan(&live); err != nil {
		return nil, fmt.Errorf("email %s: look up instance: %w", c.ID, err)
	}
	if !live {
		return nil, nil
	}
	req := kvx.WelcomeEmail(c)
	send := func(ctx context.Context) error {
		return w.call(ctx, "send welcome", func(ctx context.Context) error {
			_, err := w.clients.Email.Send(ctx, req)
			return err
		})
	}
	if w.s.v.emailInTx {
		return nil, send(ctx)
	}
	return func(ctx context.Context) {
		if err := send(ctx); err != nil {
			log.WarnContext(ctx, "riverkvx: welcome email not sent (at most once: not retried)", "event", req.Event, "err", err)
		}
	}, nil
}

// apply creates or replaces the instance's deployment at the desired size.
func (w *worker) apply(ctx context.Context, c kvx.Change) error {
	return w.call(ctx, "apply deployment", func(ctx context.Context) error {
		_, err := w.clients.Kube.Apply(ctx, fakes.Deployment{Name: kvx.DeploymentName(c.ID), Owner: c.ID, Size: c.Size, Replicas: kvx.Replicas})
		return err
	})
}

// charge charges the change's billable event with the event's idempotency
// key. A 5xx the billing service replays to every retry with the key is
// settled from its ledger: a charge for this event means it is paid.
func (w *worker) charge(ctx context.Context, c kvx.Change, log *slog.Logger) error {
	event := kvx.BillableEvent(c)
	if event == "" {
		return nil
	}
	err := w.call(ctx, "charge", func(ctx context.Context) error {
		_, err := w.clients.Billing.CreateCharge(ctx, fakes.ChargeRequest{Customer: c.Customer, Owner: c.ID,
			Amount: kvx.Price(c.Size), Event: event, IdempotencyKey: kvx.ChargeKey(c.UID, event)})
		return err
	})
	if err == nil || !fakes.IsAmbiguous(err) {
		return err
	}
	paid := false
	if lerr := w.call(ctx, "find charge", func(ctx context.Context) error {
		charges, err := w.clients.Billing.ListCharges(ctx, c.ID)
		for _, ch := range charges {
			paid = paid || ch.Event == event
		}
		return err
	}); lerr != nil || !paid {
		return err
	}
	log.InfoContext(ctx, "riverkvx: ambiguous charge settled from the billing ledger", "event", event)
	return nil
}
