package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/nemesis"
)

// Named is a deterministic scenario: a short script of requests and faults
// aimed at one failure mode. After Run the harness converges and checks
// every invariant. Every bug the harness reproduces becomes one of these.
type Named struct {
	Name string
	// Doc says what the scenario does and which bug class it is aimed at.
	Doc string
	// Workers is how many worker slots run; zero: 2.
	Workers int
	// Lag is the fake cloud's read-after-write lag; zero: none.
	Lag time.Duration
	// PrivateServer runs the scenario on a Postgres server of its own, for
	// a Postgres restart (sim.Options.PrivateServer); zero: the shared one.
	PrivateServer bool
	// Long says the scenario takes seconds, waiting out one of the
	// system's bounds after its fault (a fence, a takeover, a restart): a
	// Run starts it first, with the drawn programs that may wait too, so
	// that the slowest example does not start last. zero: it may be short.
	Long bool
	// Run drives the environment. An error means the scenario itself could
	// not do what it says (a step timed out), not that an invariant failed.
	Run func(ctx context.Context, e *sim.Env) error
}

// ErrNotReached is returned (wrapped) by a scenario whose fault never fired:
// the run proves nothing about what it is aimed at.
var ErrNotReached = errors.New("scenarios: fault path not reached")

// ErrSlow is returned (wrapped) by a scenario whose system did not get to a
// step's state within the step's bound. The run still ends with Finish: a
// slow system is not a harness error; what Finish finds decides, and with
// nothing found the verdict is unknown, with the reason.
var ErrSlow = errors.New("scenarios: the system did not get there in time")

const step = 10 * time.Second // bound of each wait inside a scenario

// recovery bounds a wait for the system to get past a fault it must recover
// from on its own (a transient error, a lag): its promised settle bound,
// and never less than step.
func recovery(e *sim.Env) time.Duration { return max(step, e.Liveness().Settle) }

// quiet is how long a scenario lets the workers go quiet (finish what they
// were doing at start-up) before work arrives.
const quiet = 500 * time.Millisecond

// providerFaultsFired reports (an error matching ErrNotReached) a scenario
// that injected provider faults none of which met a request: a system that
// calls its providers differently from what the scenario aimed at was not
// tested by it, and must not pass for it.
func providerFaultsFired(e *sim.Env) error {
	injected := false
	for _, ev := range e.Recorder().Snapshot().Events {
		if ev.Kind == history.EventFaultOn && slices.Contains(fakes.ServiceNames(), strings.SplitN(ev.Target, "/", 2)[0]) {
			injected = true
		}
	}
	if !injected {
		return nil
	}
	for _, r := range e.Providers().Snapshot().Requests {
		if r.Fault != "" {
			return nil
		}
	}
	return fmt.Errorf("%w: no provider fault the scenario injected met a request", ErrNotReached)
}

// faultMet waits until a provider fault the scenario injected has met a
// request: a scenario that ends right after its requests would otherwise
// heal its faults before a slow worker's first call on a loaded machine.
func faultMet(ctx context.Context, e *sim.Env) error {
	if !sim.Await(ctx, step, func() bool { return providerFaultsFired(e) == nil }) {
		return providerFaultsFired(e)
	}
	return nil
}

// inject injects a fault of the catalogue. A fault the environment cannot
// run is the scenario not reaching its path: inconclusive, not passed.
func inject(ctx context.Context, e *sim.Env, f nemesis.Fault) error {
	err := nemesis.Inject(ctx, e, f)
	if errors.Is(err, sim.ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrNotReached, err)
	}
	return err
}

func serve(ctx context.Context, e *sim.Env, req contract.Request) (contract.Response, error) {
	return e.Serve(ctx, "user", req)
}

// change sends a change a scenario needs to go on. One with an unknown
// outcome (it timed out: the system is slow, on a loaded machine) is
// ErrSlow, so that the run still ends with its checks; a definite refusal
// is the scenario not doing what it says.
func change(ctx context.Context, e *sim.Env, req contract.Request) error {
	_, err := serve(ctx, e, req)
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && unknownOutcome(err):
		return fmt.Errorf("%w: %s %s: %w", ErrSlow, req.Op, req.Instance, err)
	}
	return fmt.Errorf("%s %s: %w", req.Op, req.Instance, err)
}

func unknownOutcome(err error) bool {
	o, _ := history.Classify(err)
	return o == history.Info
}

func create(ctx context.Context, e *sim.Env, id, size string) error {
	return change(ctx, e, contract.Request{Op: contract.OpCreate, Instance: id, Size: size})
}

// idle waits until the instance has no active work.
func idle(ctx context.Context, e *sim.Env, id string) error {
	bound := recovery(e)
	ok := sim.Await(ctx, bound, func() bool {
		r, err := serve(ctx, e, contract.Request{Op: contract.OpGet, Instance: id})
		return err == nil && !r.HasActiveWork
	})
	if !ok {
		return fmt.Errorf("%w: instance %s still has active work after %v", ErrSlow, id, bound)
	}
	return nil
}

// crashed waits until some worker crashed.
func crashed(ctx context.Context, e *sim.Env, what string) error {
	if !sim.Await(ctx, step, func() bool { return len(e.Gate().Hits()) > 0 }) {
		return fmt.Errorf("%w: no worker crashed %s", ErrNotReached, what)
	}
	return nil
}

// armAll arms the same crash rule on every worker: whichever claims the
// item crashes, so the scenario does not depend on which worker wins.
func armAll(e *sim.Env, r crash.Rule) error {
	for _, w := range e.Workers() {
		if err := e.Crash(w, r); err != nil {
			return err
		}
	}
	return nil
}

// onAll runs f (once, for the first worker to get there) at rule's point.
func onAll(e *sim.Env, r crash.Rule, f func(worker string)) (fired func() bool, err error) {
	var once sync.Once
	var mu sync.Mutex
	done := false
	for _, w := range e.Workers() {
		if err := e.OnPoint(w, r, func() {
			once.Do(func() {
				f(w)
				mu.Lock()
				done = true
				mu.Unlock()
			})
		}); err != nil {
			return nil, err
		}
	}
	return func() bool { mu.Lock(); defer mu.Unlock(); return done }, nil
}

func awaitFired(ctx context.Context, fired func() bool, what string) error {
	if !sim.Await(ctx, step, fired) {
		return fmt.Errorf("%w: %s", ErrNotReached, what)
	}
	return nil
}

// rendezvous returns a func that blocks until n callers are in it, or for at
// most max (a correct system may never send the second one there).
func rendezvous(n int, max time.Duration) func() {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return func() {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(max):
		}
	}
}

// NamedScenarios returns the regression scenarios, in a fixed order.
func NamedScenarios() []Named {
	return append([]Named{
		{
			Name: "crash-after-vm-before-commit",
			Long: true,
			Doc:  "a worker crashes after the cloud created the VM and before its transaction commits; the redo must find the same VM (client token), not create a second",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := armAll(e, nemesis.AfterThenCommit(fakes.ServiceCloud, fakes.CreateVM)); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return crashed(ctx, e, "after CreateVM")
			},
		},
		{
			Name: "billing-response-lost",
			Long: true,
			Doc:  "the billing service charges, then the connection drops before the answer; the retry must not charge twice",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderAmbiguous, Target: nemesis.Call(fakes.ServiceBilling, fakes.CreateCharge), Param: "drop", N: 1}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "medium"); err != nil {
					return err
				}
				return idle(ctx, e, "i1")
			},
		},
		{
			Name: "billing-500-after-charge",
			Doc:  "the billing service charges, then answers 500, and replays that 500 for the key (as Stripe does); the worker must settle it without a second charge",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderAmbiguous, Target: nemesis.Call(fakes.ServiceBilling, fakes.CreateCharge), Param: "500", N: 1}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return idle(ctx, e, "i1")
			},
		},
		{
			Name: "commit-cut-mid-flight",
			Doc:  "the worker's database link is cut right after COMMIT is sent (limit_data on the answer): the commit happened but the worker cannot know; nothing may run twice",
			Run: func(ctx context.Context, e *sim.Env) error {
				fired, err := onAll(e, nemesis.AfterThenCommit(fakes.ServiceBilling, fakes.CreateCharge), func(w string) {
					_ = inject(ctx, e, nemesis.Fault{Kind: nemesis.KindLinkCut, Worker: w, Target: sim.Postgres, Param: "down", N: 0})
				})
				if err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return awaitFired(ctx, fired, "COMMIT never reached")
			},
		},
		{
			Name: "terminate-worker-backend",
			Long: true,
			Doc:  "pg_terminate_backend of the worker's session in the middle of an item: the claim rolls back and the item is redone",
			Run: func(ctx context.Context, e *sim.Env) error {
				fired, err := onAll(e, nemesis.After(fakes.ServiceKube, fakes.KubeApply), func(w string) {
					_ = inject(ctx, e, nemesis.Fault{Kind: nemesis.KindTerminateWorker, Worker: w})
				})
				if err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "large"); err != nil {
					return err
				}
				return awaitFired(ctx, fired, "deployment never applied")
			},
		},
		{
			Name: "listener-killed",
			Doc:  "every worker's LISTEN session is terminated before work arrives: polling must still pick it up",
			Run: func(ctx context.Context, e *sim.Env) error {
				// Each worker's listener once, as soon as it is up: a
				// listener that comes back is the system's own doing.
				killed := map[string]bool{}
				ok := sim.Await(ctx, step, func() bool {
					all := true
					for _, w := range e.Workers() {
						if !killed[w] {
							k, _ := e.TerminateBackends(ctx, w, sim.ListenerBackends)
							killed[w] = k > 0
						}
						all = all && killed[w]
					}
					return all
				})
				if !ok {
					return fmt.Errorf("%w: not every worker's LISTEN session was found", ErrNotReached)
				}
				// Work arrives once the workers have gone quiet: a claim
				// still in flight from their start-up would pick it up
				// whether or not they poll.
				time.Sleep(quiet)
				for _, id := range []string{"i1", "i2"} {
					if err := create(ctx, e, id, "small"); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name: "intransient-then-fix",
			Doc:  "a bug is deployed in the cloud (CreateVM answers 422): the work must park with a reason, make no further attempts, and finish once the fix is deployed",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindDeployBug, Target: nemesis.Call(fakes.ServiceCloud, fakes.CreateVM)}); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				parked := sim.Await(ctx, e.Liveness().ParkVisibleWithin, func() bool {
					s, err := e.Inspect(ctx)
					if err != nil {
						return false
					}
					for _, w := range s.Work {
						if w.Parked && w.Reason != "" {
							return true
						}
					}
					return false
				})
				if !parked {
					return fmt.Errorf("%w: work never parked", ErrNotReached)
				}
				return e.FixBugs(ctx)
			},
		},
		{
			Name: "transient-storm",
			Doc:  "every provider answers 503 or 429 to its first requests: the work retries with backoff and completes",
			Run: func(ctx context.Context, e *sim.Env) error {
				for _, svc := range []string{fakes.ServiceCloud, fakes.ServiceBilling, fakes.ServiceKube} {
					if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderTransient, Target: svc, Param: "503", N: 3}); err != nil {
						return err
					}
				}
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderTransient, Target: fakes.ServiceCloud, Param: "429", N: 2}); err != nil {
					return err
				}
				for _, id := range []string{"i1", "i2", "i3"} {
					if err := create(ctx, e, id, "small"); err != nil {
						return err
					}
				}
				return faultMet(ctx, e)
			},
		},
		{
			Name: "concurrent-resizes",
			Doc:  "two users resize one ready instance at once: exactly one is accepted, the other is told busy, and the instance ends at the accepted size",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				if err := idle(ctx, e, "i1"); err != nil {
					return err
				}
				// Both requests meet right before their first write, so a
				// check made by a read before it is stale for both.
				meet := rendezvous(2, time.Second)
				for _, c := range []string{"user1", "user2"} {
					e.Gate().OnPoint(sim.APIActor(c), nemesis.AtSQL("update"), meet)
				}
				// The workers hear of the work only after both answers:
				// a worker inside the instance while the requests are
				// answered could have completed the first change, and
				// two acceptances would prove nothing.
				if err := inject(ctx, e, nemesis.Fault{Kind: nemesis.KindLinkLatency, Worker: nemesis.AllWorkers, Target: sim.Postgres, Param: "down", N: 500}); err != nil {
					return err
				}
				var wg sync.WaitGroup
				for i, size := range []string{"medium", "large"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, _ = e.Serve(ctx, fmt.Sprintf("user%d", i+1), contract.Request{Op: contract.OpResize, Instance: "i1", Size: size})
					}()
				}
				wg.Wait()
				return e.HealLinks()
			},
		},
		{
			Name: "crash-mid-delete",
			Doc:  "a worker crashes after terminating the VM and before its delete commits: the redo must finish the delete, leaving no VM, deployment or row behind",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				if err := idle(ctx, e, "i1"); err != nil {
					return err
				}
				if err := armAll(e, nemesis.After(fakes.ServiceCloud, fakes.TerminateVM)); err != nil {
					return err
				}
				if err := change(ctx, e, contract.Request{Op: contract.OpDelete, Instance: "i1"}); err != nil {
					return err
				}
				return crashed(ctx, e, "after TerminateVM")
			},
		},
		{
			Name: "crash-after-email-before-commit",
			Doc:  "a worker crashes after sending the welcome email and before its transaction commits: a system that sends inside the transaction sends it twice",
			Run: func(ctx context.Context, e *sim.Env) error {
				if err := armAll(e, nemesis.AfterThenSQL(fakes.ServiceEmail, fakes.SendEmail)); err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				// The reference sends after its commit: the crash then hits
				// the next statement, which is harmless. Either way the
				// email must have been sent at most once. Waiting for the
				// crash, not for i1 to be idle: the email is follow-up work
				// that runs after i1 is idle, and the liveness phase
				// disarms crashes.
				return crashed(ctx, e, "after the welcome email")
			},
		},
		{
			Name: "postgres-restart-mid-create",
			Long: true,
			Doc: "Postgres crashes (immediate shutdown) and restarts while a worker is inside a create, right after the cloud created the VM: " +
				"every session is cut and the claim rolls back; the redo must find the VM it created and charge once",
			PrivateServer: true,
			Run: func(ctx context.Context, e *sim.Env) error {
				fired, err := onAll(e, nemesis.After(fakes.ServiceCloud, fakes.CreateVM), func(string) {
					_ = inject(ctx, e, nemesis.Fault{Kind: nemesis.KindPostgresRestart})
				})
				if err != nil {
					return err
				}
				if err := create(ctx, e, "i1", "small"); err != nil {
					return err
				}
				return awaitFired(ctx, fired, "the VM was never created")
			},
		},
	}, bugScenarios()...)
}

// RunNamed runs one named scenario on a fresh environment and ends it with
// Env.Finish (heal, converge, check). The environment is closed before it
// returns.
func RunNamed(ctx context.Context, sc Named, opts sim.Options) (sim.Result, error) {
	if sc.Workers > 0 {
		opts.Workers = sc.Workers
	}
	if sc.Lag > 0 {
		opts.Lag = sc.Lag
	}
	opts.PrivateServer = opts.PrivateServer || sc.PrivateServer
	e, err := sim.New(ctx, opts)
	if err != nil {
		return sim.Result{}, err
	}
	defer e.Close()
	runErr := sc.Run(ctx, e)
	if runErr != nil && !errors.Is(runErr, ErrSlow) {
		return sim.Result{}, fmt.Errorf("scenario %s: %w", sc.Name, runErr)
	}
	res, err := e.Finish(ctx)
	if err != nil {
		return sim.Result{}, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	if runErr != nil && res.Verdict == check.Valid {
		res.Verdict, res.Reason = check.Unknown, fmt.Sprintf("scenario %s: %v", sc.Name, runErr)
		return res, nil
	}
	// Read once every request in flight landed (Finish waited for them).
	if err := providerFaultsFired(e); err != nil && res.Verdict != check.Invalid {
		return sim.Result{}, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	return res, nil
}
