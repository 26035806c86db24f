package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/nemesis"
)

// awaitTakeover waits for done within the run's promised takeover bound
// (contract.Liveness.Takeover), counted from since, the moment a worker went
// silent inside the work. Past the bound it goes on watching for half the
// bound again, to say how late the takeover came; the fault lasts
// meanwhile. It returns "" when the promise was kept, else how it was
// broken ("promised 16s, took 21.3s" or "promised 16s, not within 24s") and
// why, as the system's kind of claim explains it.
func awaitTakeover(ctx context.Context, e *sim.Env, since time.Time, done func() bool) string {
	l := e.Liveness()
	if sim.Await(ctx, time.Until(since.Add(l.Takeover)), done) {
		return ""
	}
	took := fmt.Sprintf("not within %v", l.Takeover+l.Takeover/2)
	if sim.Await(ctx, time.Until(since.Add(l.Takeover+l.Takeover/2)), done) {
		took = fmt.Sprintf("took %v", time.Since(since).Round(100*time.Millisecond))
	}
	why := "the silent worker's session kept the claim"
	if l.Claim == contract.ClaimRow {
		why = "the silent worker's claim (a committed row) was not rescued in time"
	}
	return fmt.Sprintf("promised takeover within %v (Liveness.Takeover), %s: %s", l.Takeover, took, why)
}

// RuleNoTakeover is the violation of a system whose silent worker's item
// no other worker finished within the promised takeover bound.
const RuleNoTakeover = "no-takeover"

// bugScenarios are the regression scenarios aimed at the bug classes of
// package kvx/mutants, each named for the fault it injects.
func bugScenarios() []Named {
	return []Named{
		{
			Name: "crash-after-charge-before-commit",
			Long: true,
			Doc:  "a worker crashes after the billing service charged and before its transaction commits; the redo must charge with the same idempotency key, so the event is charged once",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := armAll(e, nemesis.AfterThenSQL(fakes.ServiceBilling, fakes.CreateCharge)); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return crashed(ctx, e, "after the charge")
			},
		},
		{
			Name: "crash-before-charge",
			Long: true,
			Doc:  "a worker crashes right before it sends the charge: the change must still be charged, exactly once (a system that charges after its commit never does)",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := armAll(e, nemesis.Before(fakes.ServiceBilling, fakes.CreateCharge)); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return crashed(ctx, e, "before the charge")
			},
		},
		{
			Name: "crash-before-deployment",
			Long: true,
			Doc:  "a worker crashes right before it applies the deployment: the redo must apply it (a system that commits before that call, or commits the claim before the work, loses it)",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := armAll(e, nemesis.Before(fakes.ServiceKube, fakes.KubeApply)); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "medium"); err != nil {
					return err
				}
				return crashed(ctx, e, "before the deployment")
			},
		},
		{
			Name: "change-during-work",
			Doc:  "a second resize arrives while a worker is still carrying out the first (its deployment call is slow): it must be refused as busy, never carried out by another worker beside the first",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				// Done, not merely idle: a system that unlocks early says
				// idle while its work still runs.
				if err := done(ctx, e, "i1"); err != nil {
					return err
				}
				// The resize's deployment call is slow (until healed below).
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderSlow, Target: nemesis.Call(fakes.ServiceKube, fakes.KubeApply),
					Owner: "i1", N: 800}); err != nil {
					return err
				}
				fired, err := onAll(e, nemesis.Before(fakes.ServiceKube, fakes.KubeApply), func(string) {})
				if err != nil {
					return err
				}
				if _, err := e.Serve(ctx, "user1", contract.Request{Op: contract.OpResize, Instance: "i1", Size: "medium"}); err != nil {
					return fmt.Errorf("resize i1: %w", err)
				}
				if err := awaitFired(ctx, fired, "the resize's deployment call never started"); err != nil {
					return err
				}
				// Busy is the right answer; an accepted change is the bug.
				_, _ = e.Serve(ctx, "user2", contract.Request{Op: contract.OpResize, Instance: "i1", Size: "large"})
				return nemesis.Heal(ctx, e, nemesis.ClassProvider)
			},
		},
		{
			Name: "transient-outage",
			Doc:  "the Kubernetes API answers 503 to the first four deployment calls: the work must keep retrying with backoff and finish, never give up and drop it",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderTransient, Target: nemesis.Call(fakes.ServiceKube, fakes.KubeApply),
					Owner: "i1", Param: "503", N: 4}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				// Until the instance's work is gone: done, or dropped.
				if !sim.Await(ctx, recovery(e), func() bool { return !hasWork(ctx, e, "i1") }) {
					return fmt.Errorf("%w: work of i1 still pending after %v", ErrSlow, recovery(e))
				}
				return nil
			},
		},
		{
			Name: "deployed-bug-retry-storm",
			Doc: fmt.Sprintf("a bug is deployed in the cloud (CreateVM answers 422) and held until the work parks, or until it was "+
				"rejected %d times without parking (a retry storm), then fixed: the work must park after one rejection", check.HotRetryLimit+1),
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindDeployBug, Target: nemesis.Call(fakes.ServiceCloud, fakes.CreateVM)}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				decided := sim.Await(ctx, e.Liveness().ParkVisibleWithin, func() bool {
					return parked(ctx, e) || rejections(e, fakes.ServiceCloud, fakes.CreateVM, "i1") > check.HotRetryLimit
				})
				if !decided {
					return fmt.Errorf("%w: the work neither parked nor met the bug %d times", ErrNotReached, check.HotRetryLimit+1)
				}
				return e.FixBugs(ctx)
			},
		},
		{
			Name: "create-retried-under-lag",
			Doc:  "the cloud lists a new VM only a while after creating it, and the first deployment call fails: the retry must find the VM it created (client token), not trust the list and create a second",
			Lag:  2 * time.Second,
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderTransient, Target: nemesis.Call(fakes.ServiceKube, fakes.KubeApply),
					Owner: "i1", Param: "503", N: 1}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return idle(ctx, e, "i1")
			},
		},
		{
			Name: "blackholed-worker",
			Long: true,
			Doc: "the database link of the worker in the middle of a create goes silent (its answers are swallowed) and stays so: " +
				"its claim must not outlive it, and another worker must finish the create within the system's promised takeover bound " +
				"(contract.Liveness.Takeover) while the fault lasts (a violation \"no-takeover\" otherwise)",
			Run: func(ctx context.Context, e *sim.Env) error {
				var mu sync.Mutex
				var silent string
				var since time.Time
				fired, err := onAll(e, nemesis.After(fakes.ServiceKube, fakes.KubeApply), func(w string) {
					inc, _ := e.Incarnation(w)
					_ = inject(ctx, e, nemesis.Fault{Kind: nemesis.KindLinkBlackhole, Worker: w, Target: sim.Postgres, Param: "down"})
					mu.Lock()
					silent, since = inc, time.Now()
					mu.Unlock()
				})
				if err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				if err := awaitFired(ctx, fired, "the deployment was never applied"); err != nil {
					return err
				}
				mu.Lock()
				at := since
				mu.Unlock()
				if broken := awaitTakeover(ctx, e, at, func() bool { return completed(ctx, e, "i1") }); broken != "" {
					mu.Lock()
					defer mu.Unlock()
					e.Violate(check.Violation{Invariant: check.InvConvergence, Rule: RuleNoTakeover, Instance: "i1",
						Message: fmt.Sprintf("worker %s went silent inside the create of i1 (database link blackholed at %s) and no worker finished the create while the fault lasted: %s",
							silent, at.UTC().Format("15:04:05.000"), broken)})
				}
				return nil
			},
		},
	}
}

// completed reports whether the system shows instance id's last change
// done: no active work, and observed at its generation.
func completed(ctx context.Context, e *sim.Env, id string) bool {
	s, err := e.Inspect(ctx)
	if err != nil {
		return false
	}
	i := slices.IndexFunc(s.Instances, func(in contract.Instance) bool { return in.ID == id })
	return i >= 0 && !s.Instances[i].HasActiveWork && s.Instances[i].ObservedGen == s.Instances[i].Generation
}

// done waits until instance id's last change is completed.
func done(ctx context.Context, e *sim.Env, id string) error {
	if !sim.Await(ctx, recovery(e), func() bool { return completed(ctx, e, id) }) {
		return fmt.Errorf("%w: instance %s's last change not completed after %v", ErrSlow, id, recovery(e))
	}
	return nil
}

// hasWork reports whether some work item (or Inspect's failure) is about
// instance id.
func hasWork(ctx context.Context, e *sim.Env, id string) bool {
	s, err := e.Inspect(ctx)
	return err != nil || slices.ContainsFunc(s.Work, func(w contract.WorkItem) bool { return w.Key == id })
}

// parked reports whether some work item is parked with a reason.
func parked(ctx context.Context, e *sim.Env) bool {
	s, err := e.Inspect(ctx)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(s.Work, func(w contract.WorkItem) bool { return w.Parked && w.Reason != "" })
}

// rejections counts the requests of service endpoint for owner ("" for
// any) that an intransient fault (a deployed bug) rejected.
func rejections(e *sim.Env, service, endpoint, owner string) int {
	n := 0
	is := func(got, want string) bool { return want == "" || got == want }
	for _, r := range e.Providers().Snapshot().Requests {
		if is(r.Service, service) && is(r.Endpoint, endpoint) && is(r.Owner, owner) &&
			slices.Contains(strings.Split(r.Fault, "+"), string(fakes.ModeIntransient)) {
			n++
		}
	}
	return n
}
