package mutants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/work"
)

// Mutant is one broken variant of kvx.
type Mutant struct {
	Name   string          // Go-identifier-like, stable: used in reports and flags
	Breaks check.Invariant // the invariant it breaks
	Doc    string          // the bug, and the fault or interleaving that exposes it
	// CaughtBy names the named regression scenario (package scenarios)
	// written for this bug, which must catch it with a violation of Breaks;
	// zero: none was written for it (the systematic exploration must find
	// it on its own).
	CaughtBy string
	// Slowness, when set, says how a slow machine alone exposes the bug: then
	// any scenario may catch it by chance, a true catch, though none was
	// aimed at it. Zero: only its fault or interleaving does.
	Slowness string
	New      func() contract.System // a fresh system
}

// All returns every mutant, in a stable order: those a named scenario was
// written for, then the unscripted ones.
func All() []Mutant {
	return append(scripted(), unscripted()...)
}

// scripted are the mutants each named scenario of package scenarios was
// written for (Mutant.CaughtBy).
func scripted() []Mutant {
	return []Mutant{
		{
			Name:   "FreshTokenPerAttempt",
			Breaks: check.InvOrphan,
			Doc: "The VM's client token is drawn from the worker's random stream on every attempt instead of " +
				"derived from the instance uid and generation. An attempt that created the VM and then failed " +
				"before its commit (a crash, an ambiguous CreateVM answer, any later transient error) is retried " +
				"with a new token, so the cloud creates a second VM: the instance owns two running VMs, one " +
				"of them on no record.",
			CaughtBy: "crash-after-vm-before-commit",
			New:      FreshTokenPerAttempt,
		},
		{
			Name:   "CheckThenAct",
			Breaks: check.InvRace,
			Doc: "Resize and delete read has_active_work in one statement and set it in another transaction " +
				"with no guard. Two concurrent changes that both read it before either sets it are both " +
				"accepted: two work items for one instance, run by two workers at once.",
			CaughtBy: "concurrent-resizes",
			New:      CheckThenAct,
		},
		{
			Name:   "EmailInTx",
			Breaks: check.InvAtMostOnce,
			Doc: "The welcome email is sent inside the claiming transaction, before the commit. When anything " +
				"fails after the send — an ambiguous Send answer, a crash, a lost COMMIT — the item is retried " +
				"and the email (which has no idempotency) is sent again.",
			CaughtBy: "crash-after-email-before-commit",
			New:      EmailInTx,
		},
		{
			Name:   "DeleteRowFirst",
			Breaks: check.InvOrphan,
			Doc: "Delete removes the instance row first, committed on its own, and then terminates the VM and " +
				"deletes the deployment; a retry that finds no row thinks the delete is done. A crash or any " +
				"error between the two leaves a running VM and a deployment whose instance no longer exists.",
			CaughtBy: "crash-mid-delete",
			New:      DeleteRowFirst,
		},
		{
			Name:   "FreshChargeKeyPerAttempt",
			Breaks: check.InvDoubleBilling,
			Doc: "The charge's Idempotency-Key is drawn from the worker's random stream on every attempt instead " +
				"of derived from the billable event. An attempt that charged and then failed before its commit " +
				"(a crash, a lost COMMIT, a later error) is retried with a new key, so billing charges the event " +
				"a second time.",
			CaughtBy: "crash-after-charge-before-commit",
			New:      FreshChargeKeyPerAttempt,
		},
		{
			Name:   "ChargeKeyPerInstance",
			Breaks: check.InvConvergence,
			Doc: "The charge's Idempotency-Key is derived from the instance alone, not from the billable event, " +
				"so every charge of one instance reuses the provision's key with other parameters (another event, " +
				"another amount). Billing answers 400 idempotency_error to the first resize's charge, on every " +
				"attempt and after every resume: the resize parks and can never finish.",
			CaughtBy: "concurrent-resizes",
			New:      ChargeKeyPerInstance,
		},
		{
			Name:   "DeployAfterCommit",
			Breaks: check.InvOrphan,
			Doc: "The deployment is applied after the claiming transaction committed (an AfterCommit hook), so the " +
				"instance is marked ready and its work completed before the provider call that makes it so. A crash " +
				"or any failure between the commit and the call loses it for good: a ready instance without a " +
				"deployment.",
			CaughtBy: "crash-before-deployment",
			New:      DeployAfterCommit,
		},
		{
			Name:   "ChargeAfterCommit",
			Breaks: check.InvDoubleBilling,
			Doc: "The charge is made after the claiming transaction committed (an AfterCommit hook) instead of " +
				"before it, so nothing retries it: a crash or a failed call between the commit and the charge " +
				"leaves a change that took effect and was never billed.",
			CaughtBy: "crash-before-charge",
			New:      ChargeAfterCommit,
		},
		{
			Name:   "ClearActiveWorkEarly",
			Breaks: check.InvRace,
			Doc: "The worker clears has_active_work as soon as it starts an item (committed on its own, to unlock " +
				"the instance early) instead of in the transaction that completes the work. A change a user sends " +
				"while the work still runs is accepted, and a second worker carries it out at the same time as " +
				"the first.",
			CaughtBy: "change-during-work",
			New:      ClearActiveWorkEarly,
		},
		{
			Name:   "GiveUpAfterRetries",
			Breaks: check.InvLostWork,
			Doc: "After " + fmt.Sprint(giveUpAfter) + " failed attempts with transient errors the worker gives up and " +
				"completes the item without doing it (\"retries exhausted\"). A provider outage longer than the " +
				"retries drops the work: has_active_work stays set with no work left to clear it, and the change " +
				"never takes effect.",
			CaughtBy: "transient-outage",
			New:      GiveUpAfterRetries,
		},
		{
			Name:   "RetryIntransient",
			Breaks: check.InvConvergence,
			Doc: "Every provider error is classified transient, intransient ones (a deployed bug's 422) too. " +
				"Work that meets a deployed bug retries it with backoff instead of parking: a retry storm " +
				"against the bug, and work that never shows as parked.",
			CaughtBy: "deployed-bug-retry-storm",
			New:      RetryIntransient,
		},
		{
			Name:   "ClaimCommitFirst",
			Breaks: check.InvLostWork,
			Doc: "The worker acknowledges an item first — the claim (the work row's DELETE) commits at once — and " +
				"then does the work in a transaction of its own. A crash after the acknowledgement loses the work: " +
				"no work row is left to redo it, and has_active_work stays set.",
			CaughtBy: "crash-before-deployment",
			New:      ClaimCommitFirst,
		},
		{
			Name:   "ListenWithoutPolling",
			Breaks: check.InvConvergence,
			Doc: "The worker relies on LISTEN/NOTIFY alone: its polling fallback is an hour, and a lost LISTEN " +
				"connection is re-established on the same hour-long schedule. Once its LISTEN session is " +
				"terminated, work enqueued afterwards is not picked up: it stalls.",
			CaughtBy: "listener-killed",
			New:      ListenWithoutPolling,
		},
		{
			Name:   "NoDatabaseDeadlines",
			Breaks: check.InvConvergence,
			Doc: "No deadline on database calls and no session timeouts (statement, idle-in-transaction, handler " +
				"and runner timeouts of a day). A worker whose database link goes silent in the middle of an item " +
				"waits forever while its session keeps the claim's row lock: no other worker can take the item " +
				"over while the fault lasts.",
			CaughtBy: "blackholed-worker",
			New:      NoDatabaseDeadlines,
		},
		{
			Name:   "TrustListAfterCreate",
			Breaks: check.InvOrphan,
			Doc: "The worker decides whether to create the VM by listing the instance's VMs, and creates without " +
				"a client token when the list shows none. Right after a create the list lags (read-after-write " +
				"eventual consistency), so a retry of a change whose first attempt created the VM and then failed " +
				"creates a second one.",
			CaughtBy: "create-retried-under-lag",
			New:      TrustListAfterCreate,
		},
	}
}

// FreshTokenPerAttempt is kvx with a client token drawn per attempt.
func FreshTokenPerAttempt() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		VMToken: func(e *kvx.Env, c kvx.Change) string {
			return fmt.Sprintf("kvx-%s-%016x", c.UID, e.Deps.Rand.Uint64())
		},
	}})
}

// CheckThenAct is kvx whose resize and delete check has_active_work, then
// act in a separate transaction.
func CheckThenAct() contract.System {
	return kvx.New(kvx.Options{Accept: checkThenAct})
}

func checkThenAct(ctx context.Context, db *pgxpool.Pool, req contract.Request) (contract.Response, error) {
	if req.Op == contract.OpCreate {
		return kvx.Accept(ctx, db, req)
	}
	// Check …
	var active bool
	err := db.QueryRow(ctx, `SELECT has_active_work FROM instances WHERE id = $1`, req.Instance).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrNotFound)
	}
	if err != nil {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, err)
	}
	if active {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrBusy)
	}
	// … then act, trusting the check.
	var c kvx.Change
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		size, deleting, state := any(req.Size), false, kvx.StateResizing
		if req.Op == contract.OpDelete {
			size, deleting, state = nil, true, kvx.StateDeleting
		}
		c = kvx.Change{Op: req.Op, ID: req.Instance}
		err := tx.QueryRow(ctx, `
			UPDATE instances
			SET desired_size = $2, deleting = $3, generation = nextval('kvx_generation'), has_active_work = true, state = $4
			WHERE id = $1
			RETURNING uid::text, generation, customer, coalesce(desired_size, '')`,
			req.Instance, size, deleting, state).Scan(&c.UID, &c.Generation, &c.Customer, &c.Size)
		if err != nil {
			return err
		}
		_, err = kvx.EnqueueChange(ctx, tx, c)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, contract.ErrNotFound)
	}
	if err != nil {
		return contract.Response{}, fmt.Errorf("check-then-act: %q: %w", req.Instance, err)
	}
	return contract.Response{Instance: c.ID, Generation: c.Generation, Size: c.Size, State: stateOf(c.Op), HasActiveWork: true}, nil
}

func stateOf(op contract.Op) string {
	if op == contract.OpDelete {
		return kvx.StateDeleting
	}
	return kvx.StateResizing
}

// EmailInTx is kvx that sends the welcome email before its commit.
func EmailInTx() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		SendWelcome: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			return e.Call(ctx, "send welcome", func(ctx context.Context) error {
				_, err := e.Email.Send(ctx, kvx.WelcomeEmail(c))
				return err
			})
		},
	}})
}

// DeleteRowFirst is kvx whose delete removes the instance row first, in its
// own transaction.
func DeleteRowFirst() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{Delete: deleteRowFirst}})
}

func deleteRowFirst(ctx context.Context, e *kvx.Env, c kvx.Change) error {
	in := kvx.Instance{CreatedGen: c.Generation}
	in.ID, in.UID, in.Customer = c.ID, c.UID, c.Customer
	err := e.DB.QueryRow(ctx, `DELETE FROM instances WHERE id = $1 AND uid = $2 RETURNING vm_id, created_gen`,
		c.ID, c.UID).Scan(&in.VMID, &in.CreatedGen)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // "already deleted": the bug's second half
	}
	if err != nil {
		return fmt.Errorf("delete %s: remove instance: %w", c.ID, err)
	}
	if err := e.Steps.TerminateVMs(ctx, e, c, in); err != nil {
		return err
	}
	return e.Steps.DeleteDeployment(ctx, e, c)
}

// FreshChargeKeyPerAttempt is kvx with a charge key drawn per attempt.
func FreshChargeKeyPerAttempt() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		ChargeKey: func(e *kvx.Env, c kvx.Change, event string) string {
			return fmt.Sprintf("%s/%s/%016x", c.UID, event, e.Deps.Rand.Uint64())
		},
	}})
}

// ChargeKeyPerInstance is kvx whose charge key names the instance, not the
// event.
func ChargeKeyPerInstance() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		ChargeKey: func(_ *kvx.Env, c kvx.Change, _ string) string { return c.UID + "/charge" },
	}})
}

// DeployAfterCommit is kvx that applies the deployment after its commit.
func DeployAfterCommit() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{ApplyDeployment: afterCommit("apply deployment", kvx.ApplyDeployment)}})
}

// ChargeAfterCommit is kvx that charges after its commit.
func ChargeAfterCommit() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{Charge: afterCommit("charge", kvx.Charge)}})
}

// afterCommit defers step until the claiming transaction committed, and
// only logs its failure: the bug's shape.
func afterCommit(what string, step kvx.Step) kvx.Step {
	return func(_ context.Context, e *kvx.Env, c kvx.Change) error {
		e.Tx.AfterCommit(func(ctx context.Context) {
			if err := step(ctx, e, c); err != nil {
				e.Logger.WarnContext(ctx, "mutant: "+what+" after commit failed", "err", err)
			}
		})
		return nil
	}
}

// ClearActiveWorkEarly is kvx that clears has_active_work when it starts an
// item.
func ClearActiveWorkEarly() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		LoadInstance: func(ctx context.Context, e *kvx.Env, c kvx.Change) (kvx.Instance, error) {
			in, err := kvx.LoadInstance(ctx, e, c)
			if err != nil {
				return in, err
			}
			// Its own transaction (the pool's), committed at once: the
			// instance takes changes while this item still runs.
			if _, err := e.DB.Exec(ctx, `UPDATE instances SET has_active_work = false WHERE id = $1 AND uid = $2`,
				c.ID, c.UID); err != nil {
				return in, fmt.Errorf("%s %s: unlock early: %w", c.Kind(), c.ID, err)
			}
			return in, nil
		},
	}})
}

// giveUpAfter is how many attempts GiveUpAfterRetries makes.
const giveUpAfter = 3

// GiveUpAfterRetries is kvx that drops an item after giveUpAfter transient
// failures.
func GiveUpAfterRetries() contract.System {
	giveUp := func(step kvx.Step) kvx.Step {
		return func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
			err := step(ctx, e, c)
			if err != nil && work.IsTransient(err) && e.Item.Attempts+1 >= giveUpAfter {
				e.Logger.WarnContext(ctx, "mutant: retries exhausted, giving up", "attempts", e.Item.Attempts+1, "err", err)
				return nil
			}
			return err
		}
	}
	return kvx.New(kvx.Options{Steps: eachChange(giveUp)})
}

// RetryIntransient is kvx that classifies every provider error transient.
func RetryIntransient() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		Classify: func(step string, err error) error {
			if err == nil {
				return nil
			}
			return work.Transient(fmt.Errorf("%s: %w", step, err))
		},
	}})
}

// ClaimCommitFirst is kvx that commits the claim before doing the work.
func ClaimCommitFirst() contract.System {
	ackFirst := func(step kvx.Step) kvx.Step {
		return func(_ context.Context, e *kvx.Env, c kvx.Change) error {
			e.Tx.AfterCommit(func(ctx context.Context) {
				err := pgx.BeginFunc(ctx, e.DB, func(tx pgx.Tx) error {
					own := *e
					own.Tx = &work.Tx{Tx: tx}
					return step(ctx, &own, c)
				})
				if err != nil {
					e.Logger.WarnContext(ctx, "mutant: work failed after its claim committed", "err", err)
				}
			})
			return nil
		}
	}
	return kvx.New(kvx.Options{Steps: eachChange(ackFirst)})
}

// ListenWithoutPolling is kvx whose runner polls, and re-LISTENs, hourly.
func ListenWithoutPolling() contract.System {
	return kvx.New(kvx.Options{Runner: func(o *work.RunnerOptions) {
		o.PollInterval = time.Hour
		// The runner paces reconnecting its LISTEN connection by its
		// backoff.
		o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	}})
}

// NoDatabaseDeadlines is kvx with every database deadline and session
// timeout a day long.
func NoDatabaseDeadlines() contract.System {
	const day = 24 * time.Hour
	return kvx.New(kvx.Options{Budget: kvx.Budget{Handler: day, IdleInTx: day, Statement: day, DB: day}})
}

// TrustListAfterCreate is kvx that lists before it creates, without a
// client token.
func TrustListAfterCreate() contract.System {
	return kvx.New(kvx.Options{Steps: kvx.Steps{
		CreateVM: func(ctx context.Context, e *kvx.Env, c kvx.Change) (fakes.VM, error) {
			var found fakes.VM
			err := e.Call(ctx, "list vms", func(ctx context.Context) error {
				vms, err := e.Cloud.ListVMs(ctx, c.ID)
				for _, vm := range vms {
					if vm.State == "running" {
						found = vm
					}
				}
				return err
			})
			if err != nil || found.ID != "" {
				return found, err
			}
			var vm fakes.VM
			err = e.Call(ctx, "create vm", func(ctx context.Context) (err error) {
				vm, err = e.Cloud.CreateVM(ctx, fakes.CreateVMRequest{Owner: c.ID, Size: c.Size, Region: kvx.Region})
				return err
			})
			return vm, err
		},
	}})
}

// eachChange wraps the three change handlers (provision, resize, delete) in
// wrap, for a bug in how every change is carried out.
func eachChange(wrap func(kvx.Step) kvx.Step) kvx.Steps {
	return kvx.Steps{Provision: wrap(kvx.Provision), Resize: wrap(kvx.Resize), Delete: wrap(kvx.Delete)}
}
