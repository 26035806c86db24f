package soak

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/nemesis"
)

// Nemesis events that are not faults of the catalogue, as counted in the
// report's Faults and named in its Events (a fault is counted under its
// kind's name).
const (
	actHeal    = "heal"    // a class of faults healed after its hold
	actRestart = "restart" // a crashed or killed worker restarted
)

// Profile is a named mix of faults for Run: a weighting over the kinds of
// the one fault catalogue (package sim/nemesis). Its nemesis acts every Gap
// on average (a uniform draw in [Gap/2, 3Gap/2]), choosing one kind by
// weight and drawing its parameters; network faults are healed together a
// drawn hold time after the first of them, as are provider outages and
// slowdowns, and injected SQL errors; crashed and killed workers are
// restarted after a drawn downtime; a deployed bug is fixed after a drawn
// time. Every draw comes from the soak's seeded nemesis stream; toxiproxy's
// own randomness is never used.
type Profile struct {
	Name string
	// Doc says what the profile injects, for --help.
	Doc string
	// Gap is the mean time between two actions; zero: no faults at all.
	Gap time.Duration

	kinds  []weighted
	hold   [2]time.Duration // network, provider and Postgres faults held for a draw in this range
	down   [2]time.Duration // downtime of a crashed or killed worker
	bugFor [2]time.Duration // time until a deployed bug is fixed
}

type weighted struct {
	kind   string // a nemesis kind name
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
			kinds: []weighted{
				{nemesis.KindLinkLatency, 4}, {nemesis.KindProviderTransient, 3}, {nemesis.KindProviderAmbiguous, 1},
				{nemesis.KindTerminateListener, 1}, {nemesis.KindCrash, 1},
			},
			hold: [2]time.Duration{500 * time.Millisecond, 3 * time.Second},
			down: [2]time.Duration{200 * time.Millisecond, time.Second},
		},
		{
			Name: "chaos",
			Doc: "every ~0.4s one fault of the whole catalogue: link latency, blackhole, reset, cut or partition " +
				"on a random worker (or every worker) × upstream; transient, ambiguous, slow, timed-out and down " +
				"providers; worker crashes at random points and kills, restarted within 1.5s; worker and LISTEN " +
				"sessions terminated; SQL errors in a worker's session; an intransient bug deployed, then fixed; " +
				"and, on a server of the soak's own, Postgres restarts",
			Gap: 400 * time.Millisecond,
			kinds: []weighted{
				{nemesis.KindLinkLatency, 3}, {nemesis.KindLinkBlackhole, 1}, {nemesis.KindLinkReset, 1},
				{nemesis.KindLinkCut, 1}, {nemesis.KindLinkPartition, 1},
				{nemesis.KindProviderTransient, 3}, {nemesis.KindProviderAmbiguous, 2}, {nemesis.KindProviderSlow, 1},
				{nemesis.KindProviderOutage, 1}, {nemesis.KindProviderTimeoutEdge, 1},
				{nemesis.KindCrash, 3}, {nemesis.KindKill, 1}, {nemesis.KindTerminateListener, 1}, {nemesis.KindTerminateWorker, 1},
				{nemesis.KindDeployBug, 1}, {nemesis.KindSQLError, 1}, {nemesis.KindPostgresRestart, 1},
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

// restarts reports whether the profile may restart Postgres, which needs a
// server private to the soak.
func (p Profile) restarts() bool {
	return slices.ContainsFunc(p.kinds, func(w weighted) bool { return w.kind == nemesis.KindPostgresRestart })
}

// nemesis injects a fault profile into a soak's Env. It runs on one
// goroutine during traffic segments; between them a checkpoint heals
// everything, so each segment starts from a clean slate.
type nemesisLoop struct {
	s    *soak
	rng  *rand.Rand
	prof Profile

	healAt    map[nemesis.Class]time.Time // heal the class then; absent: nothing on
	restartAt map[string]time.Time        // crashed slot → when to restart it
	armed     map[string]string           // slot → incarnation armed with a crash
}

func newNemesis(s *soak, rng *rand.Rand) *nemesisLoop {
	return &nemesisLoop{s: s, rng: rng, prof: s.prof}
}

func (n *nemesisLoop) env() *sim.Env { return n.s.env }

// run acts until ctx ends.
func (n *nemesisLoop) run(ctx context.Context) {
	n.healAt, n.restartAt, n.armed = map[nemesis.Class]time.Time{}, map[string]time.Time{}, map[string]string{}
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
func (n *nemesisLoop) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

// fail logs a failed action; one that failed because the segment ended is
// not worth a word.
func (n *nemesisLoop) fail(ctx context.Context, action string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	n.s.log.Warn("soak: nemesis action failed", "action", action, "err", err)
	n.s.note("nemesis-error", action, err.Error())
}

// housekeep ends what is due: held faults of a class, and the downtime of
// crashed workers.
func (n *nemesisLoop) housekeep(ctx context.Context, now time.Time) {
	e := n.env()
	for _, c := range slices.Sorted(maps.Keys(n.healAt)) {
		if now.Before(n.healAt[c]) {
			continue
		}
		delete(n.healAt, c)
		if err := nemesis.Heal(ctx, e, c); err != nil {
			n.fail(ctx, actHeal, err)
		} else {
			n.s.note(actHeal, string(c), "")
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

func (n *nemesisLoop) draw() nemesis.Kind {
	total := 0
	for _, w := range n.prof.kinds {
		total += w.weight
	}
	r := n.rng.IntN(total)
	name := n.prof.kinds[len(n.prof.kinds)-1].kind
	for _, w := range n.prof.kinds {
		if r < w.weight {
			name = w.kind
			break
		}
		r -= w.weight
	}
	k, _ := nemesis.KindNamed(name)
	return k
}

// act draws one fault and injects it, then schedules its heal.
func (n *nemesisLoop) act(ctx context.Context) {
	e := n.env()
	k := n.draw()
	if k.Available(e) != nil {
		return // e.g. a Postgres restart on a shared server: the profile skips it
	}
	space := nemesis.NewSpace(len(e.Workers()))
	space.Reached = slices.Sorted(maps.Keys(e.Gate().Reached()))
	f := k.Draw(nemesis.RandDrawer{R: n.rng}, space)
	if f.Kind == nemesis.KindCrash && n.s.opts.Process != nil {
		// A worker process has no points to crash at: kill it now.
		f = nemesis.Fault{Kind: nemesis.KindKill, Worker: f.Worker}
		k, _ = nemesis.KindNamed(nemesis.KindKill)
	}
	if f.Kind == nemesis.KindCrash && !n.arm(f) {
		return
	}
	if f.Kind == nemesis.KindDeployBug && n.healAt[nemesis.ClassDeploy] != (time.Time{}) {
		return // one deployed bug at a time
	}
	if err := nemesis.Inject(ctx, e, f); err != nil {
		if !errors.Is(err, sim.ErrUnavailable) {
			n.fail(ctx, k.Name(), err)
		}
		return
	}
	n.s.note(k.Name(), f.Worker, f.String())
	switch c := k.Class(); c {
	case nemesis.ClassNetwork, nemesis.ClassPostgres:
		n.holdUntil(c, n.between(n.prof.hold[0], n.prof.hold[1]))
	case nemesis.ClassProvider:
		if f.Kind == nemesis.KindProviderSlow || f.Kind == nemesis.KindProviderOutage {
			n.holdUntil(c, n.between(n.prof.hold[0], n.prof.hold[1]))
		}
	case nemesis.ClassDeploy:
		n.holdUntil(c, n.between(n.prof.bugFor[0], n.prof.bugFor[1]))
	}
}

// holdUntil schedules the heal of class, unless one is pending: not
// extended by later faults, so every fault of the class heals at the first
// one's end and the system cycles between broken and whole instead of
// staying broken while faults keep coming.
func (n *nemesisLoop) holdUntil(c nemesis.Class, hold time.Duration) {
	if _, ok := n.healAt[c]; !ok {
		n.healAt[c] = time.Now().Add(hold)
	}
}

// arm keeps one armed crash per incarnation: it reports whether f may be
// injected, and records it.
func (n *nemesisLoop) arm(f nemesis.Fault) bool {
	e := n.env()
	slots := []string{f.Worker}
	if f.Worker == nemesis.AllWorkers {
		slots = e.Workers()
	}
	for _, w := range slots {
		inc, err := e.Incarnation(w)
		if err != nil || e.Crashed(w) || n.armed[w] == inc {
			return false
		}
	}
	for _, w := range slots {
		n.armed[w], _ = e.Incarnation(w)
	}
	return true
}
