package sim

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/netfault"
)

// Crash arms slot's current incarnation to crash at the first point that
// matches rule (see crash.Rule): its links are severed and it freezes there.
func (e *Env) Crash(slotName string, rule crash.Rule) error {
	inc, err := e.current(slotName)
	if err != nil {
		return err
	}
	if inc.child != nil {
		return errNoPoints("crash at a point")
	}
	e.gate.Arm(inc.name, rule)
	return nil
}

// Kill crashes slot's current incarnation now, wherever it is (a SIGKILL):
// its links are severed and it freezes at its next point. A worker process
// (Options.Process) gets a real SIGKILL, and its crash is recorded once it
// is gone and every interval it reported is in.
func (e *Env) Kill(slotName string) error {
	inc, err := e.current(slotName)
	if err != nil {
		return err
	}
	e.gate.Freeze(inc.name)
	if inc.child != nil {
		inc.child.Kill()
	}
	e.sever(inc.name, "kill")
	return nil
}

// WorkerPid is the process id of slot's current worker process
// (Options.Process), or 0 when workers are goroutines.
func (e *Env) WorkerPid(slotName string) int {
	inc, err := e.current(slotName)
	if err != nil || inc.child == nil {
		return 0
	}
	return inc.child.Pid()
}

// errNoPoints is the error of a point-driven fault on a worker process.
func errNoPoints(what string) error {
	return fmt.Errorf("%w: %s: a worker process (Options.Process) has no crash points; Kill it instead", ErrUnavailable, what)
}

// Crashed reports whether slot's current incarnation has crashed.
func (e *Env) Crashed(slotName string) bool {
	inc, err := e.current(slotName)
	return err == nil && e.gate.Crashed(inc.name)
}

// Restart starts a new incarnation of slot with new links. A live current
// incarnation is killed first: there is never more than one per slot.
func (e *Env) Restart(ctx context.Context, slotName string) error {
	inc, err := e.current(slotName)
	if err != nil {
		return err
	}
	if !e.gate.Crashed(inc.name) {
		if err := e.Kill(slotName); err != nil {
			return err
		}
	}
	return e.start(ctx, slotName)
}

// losesLease reports whether a fault on a worker's database link can end its
// session (and with it the claim it holds) while the worker goes on.
func losesLease(f netfault.Fault) bool {
	switch f.(type) {
	case netfault.Latency:
		return false
	default:
		return true
	}
}

// LinkFault applies f to slot's current link to upstream. A fault that can
// cost the worker its database session is recorded as a session loss, and
// for a system whose claim is its session (contract.ClaimSession) as a
// lease loss, so the race checker does not mistake the worker's late
// actions for a race.
func (e *Env) LinkFault(slotName, upstream string, f netfault.Fault) error {
	inc, err := e.current(slotName)
	if err != nil {
		return err
	}
	l := inc.links[upstream]
	if l == nil {
		return fmt.Errorf("sim: no upstream %q (want one of %v)", upstream, Upstreams())
	}
	// The lease loss is recorded before the fault acts: Postgres frees the
	// session's locks the moment the connection drops, and another worker
	// may claim the item before Apply even returns. Recorded after, that
	// claim would look like two workers inside one item (seen in a soak).
	// A claim the worker makes on the session while it is being cut is
	// covered by the window LeaseLost opens until shortly after the fault
	// has acted.
	if upstream == Postgres && losesLease(f) {
		defer e.sessionLost(inc.name, f.String())()
	}
	if err := l.Apply(f); err != nil {
		if errors.Is(err, netfault.ErrSevered) {
			return nil // a crashed worker's link: nothing left to break
		}
		return err
	}
	target := inc.name + "/" + upstream
	e.rec.FaultOn(target, f.String())
	e.mu.Lock()
	e.faults[target+" "+f.String()] = true
	e.mu.Unlock()
	return nil
}

// HealLinks removes every link fault of every live incarnation.
func (e *Env) HealLinks() error {
	e.mu.Lock()
	incs := make([]*incarnation, 0, len(e.slots))
	for _, s := range e.slots {
		if s.cur != nil && !s.cur.severed {
			incs = append(incs, s.cur)
		}
	}
	active := e.faults
	e.faults = map[string]bool{}
	apiLinks := e.apiFaulted
	e.apiFaulted = nil
	e.mu.Unlock()
	var errs []error
	for _, l := range apiLinks {
		if err := l.Heal(); err != nil && !errors.Is(err, netfault.ErrSevered) && !errors.Is(err, netfault.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, inc := range incs {
		for _, up := range Upstreams() {
			if len(inc.links[up].Faults()) == 0 {
				continue
			}
			if err := inc.links[up].Heal(); err != nil && !errors.Is(err, netfault.ErrSevered) {
				errs = append(errs, err)
			}
		}
	}
	keys := make([]string, 0, len(active))
	for k := range active {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.rec.FaultOff(k, "heal")
	}
	return errors.Join(errs...)
}

// ActiveFaults lists the link faults on now, as "w1.2/postgres blackhole(down)".
func (e *Env) ActiveFaults() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.faults))
	for k := range e.faults {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ProviderFault adds f to the fakes' fault plans. A fault without an ID
// gets one, so that ClearProviderFaults can remove it alone.
func (e *Env) ProviderFault(f fakes.Fault) error {
	if f.ID == "" {
		e.mu.Lock()
		e.nfaults++
		f.ID = fmt.Sprintf("fault:%d", e.nfaults)
		e.mu.Unlock()
	}
	if err := e.world.AddFault(f); err != nil {
		return err
	}
	e.rec.FaultOn(providerTarget(f), describeFault(f))
	return nil
}

// ClearProviderFaults clears every provider fault but the deployed bugs
// (FixBugs fixes those).
func (e *Env) ClearProviderFaults() {
	e.mu.Lock()
	lagged := e.lagged
	e.lagged = false
	e.mu.Unlock()
	if lagged {
		e.world.Cloud().SetLag(e.opts.Lag)
		e.rec.FaultOff(fakes.ServiceCloud, "read-after-write lag")
	}
	for _, f := range e.world.Faults().Faults {
		if strings.HasPrefix(f.ID, bugPrefix) {
			continue
		}
		if e.world.ClearFault(f.ID) > 0 {
			e.rec.FaultOff(providerTarget(f), describeFault(f))
		}
	}
}

// SetProviderLag makes the fake cloud show a new VM to reads (describe,
// list, find by token) only d after it created it, until
// ClearProviderFaults restores Options.Lag.
func (e *Env) SetProviderLag(d time.Duration) {
	e.world.Cloud().SetLag(d)
	e.mu.Lock()
	e.lagged = d != e.opts.Lag
	e.mu.Unlock()
	e.rec.FaultOn(fakes.ServiceCloud, "read-after-write lag "+d.String())
}

// FixBugs deploys the fix of every deployed bug (see DeployFix).
func (e *Env) FixBugs(ctx context.Context) error {
	e.mu.Lock()
	names := make([]string, 0, len(e.bugs))
	for n := range e.bugs {
		names = append(names, n)
	}
	e.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		errs = append(errs, e.DeployFix(ctx, n))
	}
	return errors.Join(errs...)
}

const bugPrefix = "bug:"

func providerTarget(f fakes.Fault) string {
	t := f.Service
	if t == "" {
		t = "providers"
	}
	if f.Endpoint != "" {
		t += "/" + f.Endpoint
	}
	return t
}

func describeFault(f fakes.Fault) string {
	s := string(f.Mode)
	if f.Status != 0 {
		s += fmt.Sprintf(" %d", f.Status)
	}
	if f.Drop {
		s += " drop"
	}
	if f.Latency > 0 {
		s += " " + f.Latency.String()
	}
	if f.Owner != "" {
		s += " owner=" + f.Owner
	}
	return s
}

// DeployBug "deploys" an intransient bug: every request matching endpoint
// (a fakes endpoint name such as "CreateVM"; "" any) of service fails with a
// 4xx until DeployFix. Work that hits it must park, visibly.
func (e *Env) DeployBug(name, service, endpoint string) error {
	f := fakes.Fault{ID: bugPrefix + name, Service: service, Endpoint: endpoint, Mode: fakes.ModeIntransient, Message: "deployed bug " + name}
	if err := e.world.AddFault(f); err != nil {
		return err
	}
	e.mu.Lock()
	e.bugs[name] = f
	e.mu.Unlock()
	e.rec.DeployBug(name)
	return nil
}

// DeployFix removes the bug and resumes parked work, as an operator does
// after deploying a fix.
func (e *Env) DeployFix(ctx context.Context, name string) error {
	e.mu.Lock()
	_, ok := e.bugs[name]
	delete(e.bugs, name)
	e.mu.Unlock()
	if !ok {
		return nil
	}
	e.world.ClearFault(bugPrefix + name)
	e.rec.DeployFix(name)
	_, err := e.resume(ctx)
	return err
}

func (e *Env) resume(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	resp, err := e.sys.Serve(ctx, e.admin, contract.Request{Op: contract.OpResume})
	return resp.Resumed, err
}

// Backend selects which of a worker's Postgres sessions TerminateBackends
// ends.
type Backend string

const (
	AllBackends      Backend = "all"
	ListenerBackends Backend = "listener" // the worker's listening sessions (see TerminateBackends)
	WorkerBackends   Backend = "worker"   // every other session of the worker
)

// TerminateBackends runs pg_terminate_backend on slot's current incarnation's
// sessions of the given kind and returns how many it ended.
//
// A session is the worker's when its application_name is the incarnation's
// name, possibly with a suffix (the harness names each worker's pool so). A
// listener is a session named with the system's declared listener suffix
// (Liveness.ListenerApplicationName), else one whose last statement
// LISTENed; when the worker has no such session (a listener that pinged
// since is not told apart), ListenerBackends ends every session of the
// worker, the listener among them.
func (e *Env) TerminateBackends(ctx context.Context, slotName string, which Backend) (int, error) {
	inc, err := e.current(slotName)
	if err != nil {
		return 0, err
	}
	listening := `query ~* '(^|;)\s*listen\s'`
	args := []any{inc.name}
	if name := e.opts.Liveness.ListenerApplicationName; name != "" {
		listening = `application_name = $1 || ' ' || $2`
		args = append(args, name)
	}
	mine := `datname = current_database() AND (application_name = $1 OR application_name LIKE $1 || ' %')`
	var q string
	switch which {
	case ListenerBackends:
		if len(args) > 1 {
			// A declared listener is ended alone, or nothing is: ending
			// every session of a worker whose listener is not up yet (or
			// reconnecting) would cut its claim unrecorded.
			q = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE ` + mine + ` AND (` + listening + `)`
			break
		}
		q = `WITH l AS (SELECT pid FROM pg_stat_activity WHERE ` + mine + ` AND (` + listening + `)),
		          t AS (SELECT pid FROM l UNION ALL
		                SELECT pid FROM pg_stat_activity WHERE ` + mine + ` AND NOT EXISTS (SELECT FROM l))
		     SELECT count(pg_terminate_backend(pid)) FROM t`
	case WorkerBackends:
		q = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE ` + mine + ` AND NOT (` + listening + `)`
	case AllBackends:
		q = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE ` + mine
	default:
		return 0, fmt.Errorf("sim: unknown backend kind %q", which)
	}
	if len(args) == 1 {
		q = strings.ReplaceAll(q, "$2", "NULL")
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	// Recorded before the sessions end, as in LinkFault: the item a
	// terminated session held is free to claim at once. When none was
	// ended the loss is recorded all the same, which only ends intervals
	// of a worker that held no session. A listener fault on a system that
	// declares no listener name may end every session of the worker: it is
	// recorded as a loss too.
	if which != ListenerBackends || e.opts.Liveness.ListenerApplicationName == "" {
		defer e.sessionLost(inc.name, "terminate-backend("+string(which)+")")()
	}
	var n int
	if err := e.admin.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sim: terminate %s backends of %s: %w", which, inc.name, err)
	}
	e.rec.FaultOn(inc.name+"/postgres", fmt.Sprintf("terminate-backend(%s,%d)", which, n))
	return n, nil
}

// SetScheduled switches scheduled mode on or off (off lets every parked
// worker go).
func (e *Env) SetScheduled(on bool) { e.gate.SetScheduled(on) }

// Step, in scheduled mode, waits until the parked workers stop changing for
// quiet (zero: 20ms), lets one of them, drawn from the seeded scheduler
// stream, go on to its next point, and returns it. ok is false when no
// worker is parked.
func (e *Env) Step(ctx context.Context, quiet time.Duration) (p crash.Parked, ok bool) {
	if quiet <= 0 {
		quiet = 20 * time.Millisecond
	}
	ps := e.gate.Parked(ctx, quiet)
	if len(ps) == 0 {
		return crash.Parked{}, false
	}
	e.mu.Lock()
	p = ps[e.sched.IntN(len(ps))]
	e.mu.Unlock()
	e.gate.Release(p.Worker)
	return p, true
}

// converge is Finish's liveness phase: it heals every link, clears every
// provider fault and deployed bug, removes injected SQL errors, leaves
// scheduled mode, restarts crashed workers, resumes parked work, and waits
// until the system reports no active work, no work left and every instance
// at its desired generation. It returns false (not an error) when that does
// not happen within timeout.
func (e *Env) converge(ctx context.Context, timeout time.Duration) (bool, error) {
	e.gate.SetScheduled(false)
	if err := e.HealLinks(); err != nil {
		return false, err
	}
	e.ClearProviderFaults()
	if err := e.FixBugs(ctx); err != nil {
		return false, err
	}
	if err := e.ClearSQLErrors(ctx); err != nil {
		return false, err
	}
	for _, name := range e.Workers() {
		inc, err := e.current(name)
		if err != nil {
			return false, err
		}
		e.gate.Disarm(inc.name)
		select {
		case <-inc.done:
		default:
			if !e.gate.Crashed(inc.name) {
				continue
			}
		}
		if err := e.start(ctx, name); err != nil {
			return false, err
		}
	}
	return e.awaitSettled(ctx, timeout)
}

// awaitSettled resumes parked work and waits, at most timeout, until the
// system has settled (see converge).
func (e *Env) awaitSettled(ctx context.Context, timeout time.Duration) (bool, error) {
	const poll = 50 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		if _, err := e.resume(ctx); err != nil && ctx.Err() != nil {
			return false, err
		}
		snap, err := e.Inspect(ctx)
		if err == nil && settled(snap) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(poll):
		}
	}
}

func settled(s contract.Snapshot) bool {
	if len(s.Work) > 0 {
		return false
	}
	for _, in := range s.Instances {
		if in.HasActiveWork || in.Deleting || in.ObservedGen != in.Generation {
			return false
		}
	}
	return true
}

// OnPoint runs f once when slot's current incarnation reaches the first
// point matching rule, before that point proceeds (to inject a fault at a
// precise place, such as cutting the database link right before COMMIT).
func (e *Env) OnPoint(slotName string, rule crash.Rule, f func()) error {
	inc, err := e.current(slotName)
	if err != nil {
		return err
	}
	if inc.child != nil {
		return errNoPoints("a hook at a point")
	}
	e.gate.OnPoint(inc.name, rule, f)
	return nil
}

// Await polls cond every 10ms until it is true, ctx ends or timeout passes,
// and reports whether it became true.
func Await(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}
