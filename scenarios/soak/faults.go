package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/netfault"
)

// Nemesis actions, as counted in the report's Faults and named in its
// Events.
const (
	actLinkLatency       = "link-latency"
	actLinkBlackhole     = "link-blackhole"
	actLinkReset         = "link-reset"
	actLinkCut           = "link-cut"
	actLinkPartition     = "link-partition"
	actHealLinks         = "heal-links"
	actProviderTransient = "provider-transient"
	actProviderAmbiguous = "provider-ambiguous"
	actCrash             = "crash-armed"
	actKill              = "kill"
	actRestart           = "restart"
	actTermListener      = "terminate-listener"
	actTermWorker        = "terminate-worker"
	actDeployBug         = "deploy-bug"
	actDeployFix         = "deploy-fix"
)

// Profile is a named mix of faults for Run. Its nemesis acts every
// Gap on average (a uniform draw in [Gap/2, 3Gap/2]), choosing one action
// by weight; link faults are healed together a drawn hold time after the
// first of them, crashed and killed workers are restarted after a drawn
// downtime, a deployed bug is fixed after a drawn time. Every draw comes
// from the soak's seeded nemesis stream; toxiproxy's own randomness is
// never used.
type Profile struct {
	Name string
	// Doc says what the profile injects, for --help.
	Doc string
	// Gap is the mean time between two actions; zero: no faults at all.
	Gap time.Duration

	actions []weighted
	hold    [2]time.Duration // link faults held for a draw in this range
	down    [2]time.Duration // downtime of a crashed or killed worker
	bugFor  [2]time.Duration // time until a deployed bug is fixed
}

type weighted struct {
	kind   string
	weight int
}

// Profiles returns the profiles, mildest first.
func Profiles() []Profile {
	return []Profile{
		{
			Name: "none",
			Doc:  "no faults: traffic only (a baseline for throughput)",
		},
		{
			Name: "mild",
			Doc: "every ~1.5s one of: latency on a random worker's link to Postgres or a provider, " +
				"transient provider errors (503/429/dropped, before any effect), an ambiguous provider " +
				"answer (effect applied, answer lost), a LISTEN session terminated, a worker crash at a " +
				"random point (restarted within 1s)",
			Gap: 1500 * time.Millisecond,
			actions: []weighted{
				{actLinkLatency, 4}, {actProviderTransient, 3}, {actProviderAmbiguous, 1},
				{actTermListener, 1}, {actCrash, 1},
			},
			hold: [2]time.Duration{500 * time.Millisecond, 3 * time.Second},
			down: [2]time.Duration{200 * time.Millisecond, time.Second},
		},
		{
			Name: "chaos",
			Doc: "every ~0.4s one of: link latency, blackhole, reset, cut mid-stream or partition on a " +
				"random worker × upstream; transient and ambiguous provider faults (500, dropped or hung " +
				"answers after the effect); worker crashes at random points and kills, restarted within " +
				"1.5s; worker and LISTEN sessions terminated; an intransient bug deployed, then fixed",
			Gap: 400 * time.Millisecond,
			actions: []weighted{
				{actLinkLatency, 3}, {actLinkBlackhole, 1}, {actLinkReset, 1}, {actLinkCut, 1}, {actLinkPartition, 1},
				{actProviderTransient, 3}, {actProviderAmbiguous, 2},
				{actCrash, 3}, {actKill, 1}, {actTermListener, 1}, {actTermWorker, 1}, {actDeployBug, 1},
			},
			hold:   [2]time.Duration{300 * time.Millisecond, 2500 * time.Millisecond},
			down:   [2]time.Duration{100 * time.Millisecond, 1500 * time.Millisecond},
			bugFor: [2]time.Duration{2 * time.Second, 6 * time.Second},
		},
	}
}

// ProfileNamed returns the profile called name.
func ProfileNamed(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// ProfileNames lists the profile names, mildest first.
func ProfileNames() []string {
	var out []string
	for _, p := range Profiles() {
		out = append(out, p.Name)
	}
	return out
}

// crashRules are the rules a crash is armed with: the moments the bug
// classes live at (after an effect, before the commit that records it),
// and "anywhere". A third of the crashes instead pick a point the workers
// actually passed.
var crashRules = []crash.Rule{
	{At: "sql:commit"},
	{At: "sql:"},
	{},
	{At: "cloud:"},
	{At: "cloud:CreateVM:done"},
	{After: "cloud:CreateVM:done", At: "sql:"},
	{After: "cloud:CreateVM:done", At: "sql:commit"},
	{At: "billing:CreateCharge:done"},
	{After: "billing:CreateCharge:done", At: "sql:commit"},
	{At: "kube:Apply:done"},
	{At: "cloud:TerminateVM:done"},
	{After: "email:Send:done", At: "sql:"},
}

// mutations are the effectful endpoints of each provider, for ambiguous
// faults ("" is any request of the service).
var mutations = map[string][]string{
	fakes.ServiceCloud:   {"CreateVM", "ResizeVM", "TerminateVM", ""},
	fakes.ServiceBilling: {"CreateCharge", "Refund", ""},
	fakes.ServiceKube:    {"Apply", "Delete", ""},
	fakes.ServiceEmail:   {"Send"},
}

var providers = []string{fakes.ServiceCloud, fakes.ServiceBilling, fakes.ServiceKube, fakes.ServiceEmail}

// bugs are where a deployed bug can sit: an endpoint every change needs.
var bugs = [][2]string{
	{fakes.ServiceCloud, "CreateVM"}, {fakes.ServiceCloud, "ResizeVM"}, {fakes.ServiceBilling, "CreateCharge"}, {fakes.ServiceKube, "Apply"},
}

// nemesis injects a fault profile into a soak's Env. It runs on one
// goroutine during traffic segments; between them a checkpoint heals
// everything, so each segment starts from a clean slate.
type nemesis struct {
	s    *soak
	rng  *rand.Rand
	prof Profile

	linksUntil time.Time // heal every link fault then; zero: none on
	bug        string    // deployed bug; "" none
	bugUntil   time.Time
	nbugs      int
	restartAt  map[string]time.Time // crashed slot → when to restart it
	armed      map[string]string    // slot → incarnation armed with a crash
}

func newNemesis(s *soak, rng *rand.Rand) *nemesis {
	return &nemesis{s: s, rng: rng, prof: s.prof}
}

func (n *nemesis) env() *sim.Env { return n.s.env }

// run acts until ctx ends.
func (n *nemesis) run(ctx context.Context) {
	n.linksUntil, n.bug, n.bugUntil = time.Time{}, "", time.Time{}
	n.restartAt, n.armed = map[string]time.Time{}, map[string]string{}
	if n.prof.Gap <= 0 {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	next := time.Now().Add(n.between(n.prof.Gap/2, n.prof.Gap*3/2))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		n.housekeep(ctx, now)
		if now.After(next) {
			n.act(ctx)
			next = now.Add(n.between(n.prof.Gap/2, n.prof.Gap*3/2))
		}
	}
}

// between draws a duration in [lo, hi].
func (n *nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// fail logs a failed action; one that failed because the segment ended is
// not worth a word.
func (n *nemesis) fail(ctx context.Context, action string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	n.s.log.Warn("soak: nemesis action failed", "action", action, "err", err)
	n.s.note("nemesis-error", action, err.Error())
}

// housekeep ends what is due: link faults, a deployed bug, and the
// downtime of crashed workers.
func (n *nemesis) housekeep(ctx context.Context, now time.Time) {
	e := n.env()
	if !n.linksUntil.IsZero() && now.After(n.linksUntil) {
		n.linksUntil = time.Time{}
		if err := e.HealLinks(); err != nil {
			n.fail(ctx, actHealLinks, err)
		} else {
			n.s.note(actHealLinks, "", "")
		}
	}
	if n.bug != "" && now.After(n.bugUntil) {
		bug := n.bug
		n.bug = ""
		if err := e.DeployFix(ctx, bug); err != nil {
			n.fail(ctx, actDeployFix, err)
		} else {
			n.s.note(actDeployFix, "", bug)
		}
	}
	for _, w := range e.Workers() {
		if !e.Crashed(w) {
			delete(n.restartAt, w)
			continue
		}
		at, ok := n.restartAt[w]
		if !ok {
			n.restartAt[w] = now.Add(n.between(n.prof.down[0], n.prof.down[1]))
			continue
		}
		if now.Before(at) {
			continue
		}
		delete(n.restartAt, w)
		if err := e.Restart(ctx, w); err != nil {
			n.fail(ctx, actRestart, err)
			continue
		}
		inc, _ := e.Incarnation(w)
		n.s.note(actRestart, w, inc)
	}
}

// live returns the slots whose current incarnation has not crashed.
func (n *nemesis) live() []string {
	var out []string
	for _, w := range n.env().Workers() {
		if !n.env().Crashed(w) {
			out = append(out, w)
		}
	}
	return out
}

func (n *nemesis) draw() string {
	total := 0
	for _, a := range n.prof.actions {
		total += a.weight
	}
	r := n.rng.IntN(total)
	for _, a := range n.prof.actions {
		if r < a.weight {
			return a.kind
		}
		r -= a.weight
	}
	return n.prof.actions[len(n.prof.actions)-1].kind
}

// act draws one action and does it.
func (n *nemesis) act(ctx context.Context) {
	kind := n.draw()
	switch kind {
	case actLinkLatency, actLinkBlackhole, actLinkReset, actLinkCut, actLinkPartition:
		n.linkFault(ctx, kind)
	case actProviderTransient:
		n.providerTransient(ctx)
	case actProviderAmbiguous:
		n.providerAmbiguous(ctx)
	case actCrash:
		n.crash(ctx)
	case actKill:
		n.kill(ctx)
	case actTermListener, actTermWorker:
		n.terminate(ctx, kind)
	case actDeployBug:
		n.deployBug(ctx)
	}
}

func (n *nemesis) direction() netfault.Direction {
	if n.rng.IntN(2) == 0 {
		return netfault.Downstream
	}
	return netfault.Upstream
}

func (n *nemesis) linkFault(ctx context.Context, kind string) {
	live := n.live()
	if len(live) == 0 {
		return
	}
	w := pick(n.rng, live)
	up := pick(n.rng, sim.Upstreams())
	var f netfault.Fault
	switch kind {
	case actLinkLatency:
		f = netfault.Latency{Delay: n.between(20*time.Millisecond, 300*time.Millisecond).Round(time.Millisecond), Dir: n.direction()}
	case actLinkBlackhole:
		f = netfault.Blackhole{Dir: n.direction()}
	case actLinkReset:
		f = netfault.Reset{}
	case actLinkCut:
		f = netfault.CutAfter{Bytes: n.rng.Int64N(4096), Dir: n.direction()}
	case actLinkPartition:
		f = netfault.Partition{}
	}
	hold := n.between(n.prof.hold[0], n.prof.hold[1])
	if err := n.env().LinkFault(w, up, f); err != nil {
		n.fail(ctx, kind, err)
		return
	}
	if n.linksUntil.IsZero() {
		// Not extended by later faults: every link heals at the first
		// fault's end, so links cycle between broken and whole instead of
		// staying broken while faults keep coming.
		n.linksUntil = time.Now().Add(hold)
	}
	inc, _ := n.env().Incarnation(w)
	n.s.note(kind, inc+"/"+up, f.String())
}

func (n *nemesis) providerTransient(ctx context.Context) {
	svc := pick(n.rng, providers)
	f := fakes.Fault{Service: svc, Mode: fakes.ModeFailBefore, Times: 1 + n.rng.IntN(3)}
	switch r := n.rng.IntN(100); {
	case r < 60:
		f.Status = 503
	case r < 85:
		f.Status = 429
	default:
		f.Drop = true
	}
	n.provider(ctx, actProviderTransient, f)
}

func (n *nemesis) providerAmbiguous(ctx context.Context) {
	svc := pick(n.rng, providers)
	f := fakes.Fault{Service: svc, Endpoint: pick(n.rng, mutations[svc]), Mode: fakes.ModeFailAfter, Times: 1}
	switch r := n.rng.IntN(100); {
	case r < 50:
		f.Status = 500
	case r < 80:
		f.Drop = true
	default:
		f.Hang = true // until the client gives up
	}
	n.provider(ctx, actProviderAmbiguous, f)
}

func (n *nemesis) provider(ctx context.Context, kind string, f fakes.Fault) {
	if err := n.env().ProviderFault(f); err != nil {
		n.fail(ctx, kind, err)
		return
	}
	target := f.Service
	if f.Endpoint != "" {
		target += "/" + f.Endpoint
	}
	detail := string(f.Mode)
	switch {
	case f.Drop:
		detail += " drop"
	case f.Hang:
		detail += " hang"
	default:
		detail += fmt.Sprintf(" %d", f.Status)
	}
	n.s.note(kind, target, fmt.Sprintf("%s ×%d", detail, f.Times))
}

func (n *nemesis) crash(ctx context.Context) {
	var free []string // live slots with no crash armed in this incarnation
	for _, w := range n.live() {
		inc, err := n.env().Incarnation(w)
		if err == nil && n.armed[w] != inc {
			free = append(free, w)
		}
	}
	if len(free) == 0 {
		return
	}
	w := pick(n.rng, free)
	var rule crash.Rule
	if n.rng.IntN(3) == 0 {
		if points := passedPoints(n.env()); len(points) > 0 {
			rule = crash.Rule{At: pick(n.rng, points)}
		}
	}
	if rule == (crash.Rule{}) {
		rule = pick(n.rng, crashRules)
	}
	if err := n.env().Crash(w, rule); err != nil {
		n.fail(ctx, actCrash, err)
		return
	}
	inc, _ := n.env().Incarnation(w)
	n.armed[w] = inc
	n.s.note(actCrash, inc, rule.String())
}

// passedPoints returns the worker points passed so far, sorted, so that a
// draw from them depends on the seed and the set, not on map order.
func passedPoints(e *sim.Env) []string {
	var out []string
	for p := range e.Gate().Reached() {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (n *nemesis) kill(ctx context.Context) {
	live := n.live()
	if len(live) == 0 {
		return
	}
	w := pick(n.rng, live)
	inc, _ := n.env().Incarnation(w)
	if err := n.env().Kill(w); err != nil {
		n.fail(ctx, actKill, err)
		return
	}
	n.s.note(actKill, inc, "")
}

func (n *nemesis) terminate(ctx context.Context, kind string) {
	live := n.live()
	if len(live) == 0 {
		return
	}
	w := pick(n.rng, live)
	which := sim.ListenerBackends
	if kind == actTermWorker {
		which = sim.WorkerBackends
	}
	k, err := n.env().TerminateBackends(ctx, w, which)
	if err != nil {
		n.fail(ctx, kind, err)
		return
	}
	inc, _ := n.env().Incarnation(w)
	n.s.note(kind, inc, fmt.Sprintf("%d sessions", k))
}

func (n *nemesis) deployBug(ctx context.Context) {
	if n.bug != "" {
		return
	}
	where := pick(n.rng, bugs)
	n.nbugs++
	name := fmt.Sprintf("soak-bug-%d-%s", n.nbugs, where[1])
	if err := n.env().DeployBug(name, where[0], where[1]); err != nil {
		n.fail(ctx, actDeployBug, err)
		return
	}
	n.bug, n.bugUntil = name, time.Now().Add(n.between(n.prof.bugFor[0], n.prof.bugFor[1]))
	n.s.note(actDeployBug, where[0]+"/"+where[1], name)
}
