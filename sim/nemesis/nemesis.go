package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
)

// AllWorkers, as a Fault's Worker, hits every live worker at once.
const AllWorkers = "*"

// Fault is one fault to inject, as plain data: what a program saves, a
// report prints and a replay injects again.
type Fault struct {
	Kind   string `json:"kind"`             // a Kind's name
	Worker string `json:"worker,omitempty"` // a worker slot ("w1"), or AllWorkers
	// Target is what the fault aims at; the kind says what it holds: a crash
	// rule's name (Points), an upstream, a provider endpoint ("cloud:CreateVM")
	// or service ("cloud"), a table.
	Target string `json:"target,omitempty"`
	Param  string `json:"param,omitempty"` // the kind's variant: a direction, a status, an SQLSTATE
	Owner  string `json:"owner,omitempty"` // provider faults: only requests for this instance
	N      int    `json:"n,omitempty"`     // a count the kind names: times, bytes, milliseconds
}

func (f Fault) String() string {
	parts := []string{f.Kind}
	for _, s := range []string{f.Worker, f.Target, f.Param} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if f.Owner != "" {
		parts = append(parts, "owner="+f.Owner)
	}
	if f.N != 0 {
		parts = append(parts, "n="+strconv.Itoa(f.N))
	}
	return strings.Join(parts, " ")
}

// Class groups kinds by what they break; a heal undoes a whole class.
type Class string

const (
	ClassCrash    Class = "crash"    // worker incarnations crash or are killed
	ClassNetwork  Class = "network"  // links between workers and upstreams, database sessions
	ClassProvider Class = "provider" // provider answers: transient, ambiguous, slow, down
	ClassDeploy   Class = "deploy"   // an intransient bug deployed until its fix
	ClassPostgres Class = "postgres" // the database server and errors it raises
)

// Classes lists every class, in a fixed order.
func Classes() []Class {
	return []Class{ClassCrash, ClassNetwork, ClassProvider, ClassDeploy, ClassPostgres}
}

// Kind is one kind of fault.
type Kind interface {
	// Name is the kind's stable name, Fault.Kind.
	Name() string
	// Class is what the kind breaks.
	Class() Class
	// Doc says in a line what the fault does.
	Doc() string
	// Draw draws one fault of this kind from s, with d.
	Draw(d Drawer, s Space) Fault
	// Check reports what is wrong with f's parameters (a saved program may
	// hold anything), nil when it can be injected.
	Check(f Fault, s Space) error
	// Available reports whether the kind can run on e: nil, or an error
	// matching sim.ErrUnavailable that says why not.
	Available(e *sim.Env) error
	// Inject applies f to e now.
	Inject(ctx context.Context, e *sim.Env, f Fault) error
}

// Catalogue lists every fault kind, in a fixed order.
func Catalogue() []Kind {
	return []Kind{
		crashKind{}, killKind{},
		linkKind{name: KindLinkLatency}, linkKind{name: KindLinkBlackhole}, linkKind{name: KindLinkReset},
		linkKind{name: KindLinkCut}, linkKind{name: KindLinkPartition},
		terminateKind{name: KindTerminateWorker, which: sim.WorkerBackends},
		terminateKind{name: KindTerminateListener, which: sim.ListenerBackends},
		crashRequestKind{},
		transientKind{}, ambiguousKind{}, slowKind{}, outageKind{}, timeoutEdgeKind{}, lagKind{},
		bugKind{},
		restartKind{}, sqlErrorKind{},
	}
}

// KindNames lists the catalogue's kind names, in Catalogue order.
func KindNames() []string {
	var out []string
	for _, k := range Catalogue() {
		out = append(out, k.Name())
	}
	return out
}

// KindNamed returns the kind called name.
func KindNamed(name string) (Kind, bool) {
	for _, k := range Catalogue() {
		if k.Name() == name {
			return k, true
		}
	}
	return nil, false
}

// ErrUnknownKind is wrapped by errors about a Fault whose Kind is not in the
// catalogue.
var ErrUnknownKind = errors.New("nemesis: unknown fault kind")

// Check reports what is wrong with f (an unknown kind, bad parameters).
func Check(f Fault, s Space) error {
	k, ok := KindNamed(f.Kind)
	if !ok {
		return fmt.Errorf("%w %q (want one of %s)", ErrUnknownKind, f.Kind, strings.Join(KindNames(), ", "))
	}
	if err := k.Check(f, s); err != nil {
		return fmt.Errorf("nemesis: %s: %w", f, err)
	}
	return nil
}

// Inject applies f to e. A kind unavailable on e returns an error matching
// sim.ErrUnavailable, so the caller can report the fault as not run.
func Inject(ctx context.Context, e *sim.Env, f Fault) error {
	k, ok := KindNamed(f.Kind)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, f.Kind)
	}
	if err := k.Available(e); err != nil {
		return fmt.Errorf("nemesis: %s: %w", f, err)
	}
	if err := k.Inject(ctx, e, f); err != nil {
		return fmt.Errorf("nemesis: %s: %w", f, err)
	}
	return nil
}

// Heal undoes every fault of class on e now: crashed workers restart, links
// heal, provider faults clear, deployed bugs are fixed (and parked work
// resumed), injected SQL errors are removed. Env.Finish heals everything
// anyway; Heal is for a program or a soak that heals one class mid-run.
func Heal(ctx context.Context, e *sim.Env, class Class) error {
	switch class {
	case ClassCrash:
		for _, w := range e.Workers() {
			if e.Crashed(w) {
				if err := e.Restart(ctx, w); err != nil {
					return err
				}
			}
		}
		return nil
	case ClassNetwork:
		return e.HealLinks()
	case ClassProvider:
		e.ClearProviderFaults()
		return nil
	case ClassDeploy:
		return e.FixBugs(ctx)
	case ClassPostgres:
		return e.ClearSQLErrors(ctx)
	}
	return fmt.Errorf("nemesis: unknown class %q (want one of %v)", class, Classes())
}

// Drawer draws the parameters of a fault: an index in [0, n).
type Drawer interface {
	Draw(label string, n int) int
}

// RandDrawer draws from a seeded math/rand stream (the soak's).
type RandDrawer struct{ R *rand.Rand }

func (d RandDrawer) Draw(_ string, n int) int { return d.R.IntN(n) }

func pick[T any](d Drawer, label string, xs []T) T { return xs[d.Draw(label, len(xs))] }

// Space is what draws pick from: the run's worker slots, upstreams and
// providers, and the points its workers passed so far (optional: a crash
// then may also aim at one of them).
type Space struct {
	Workers   []string     // slot names, sorted ("w1", "w2")
	Upstreams []string     // sim.Upstreams()
	Specs     []fakes.Spec // fakes.Specs()
	Reached   []string     // crash points passed so far, sorted; zero: none known
}

// NewSpace is the space of a run with workers worker slots.
func NewSpace(workers int) Space {
	s := Space{Upstreams: sim.Upstreams(), Specs: fakes.Specs()}
	for i := 1; i <= workers; i++ {
		s.Workers = append(s.Workers, fmt.Sprintf("w%d", i))
	}
	return s
}

// mutations lists the effectful endpoints of every provider, in Specs order.
func (s Space) mutations() []fakes.Endpoint {
	var out []fakes.Endpoint
	for _, spec := range s.Specs {
		for _, e := range spec.Endpoints {
			if e.Mutation {
				out = append(out, e)
			}
		}
	}
	return out
}

// services lists the providers' names, in Specs order.
func (s Space) services() []string {
	var out []string
	for _, spec := range s.Specs {
		out = append(out, spec.Name)
	}
	return out
}

// endpoint resolves a Target naming an endpoint ("cloud:CreateVM") or a
// whole service ("cloud").
func (s Space) endpoint(target string) (service, endpoint string, err error) {
	service, endpoint, _ = strings.Cut(target, ":")
	i := slices.IndexFunc(s.Specs, func(sp fakes.Spec) bool { return sp.Name == service })
	if i < 0 {
		return "", "", fmt.Errorf("target %q: no provider %q (want one of %v)", target, service, s.services())
	}
	if endpoint != "" {
		if _, ok := s.Specs[i].Endpoint(endpoint); !ok {
			return "", "", fmt.Errorf("target %q: %s has no endpoint %q", target, service, endpoint)
		}
	}
	return service, endpoint, nil
}

// drawWorker draws a slot, or AllWorkers with one chance in len+1.
func (s Space) drawWorker(d Drawer, all bool) string {
	ws := s.Workers
	if all {
		ws = append(slices.Clone(ws), AllWorkers)
	}
	return pick(d, "worker", ws)
}

func (s Space) checkWorker(w string, all bool) error {
	if w == AllWorkers && all {
		return nil
	}
	if !slices.Contains(s.Workers, w) {
		return fmt.Errorf("worker %q is not one of %v", w, s.Workers)
	}
	return nil
}

// each runs f for every slot f.Worker names (all of them for AllWorkers),
// skipping crashed ones.
func each(e *sim.Env, worker string, f func(slot string) error) error {
	slots := []string{worker}
	if worker == AllWorkers {
		slots = e.Workers()
	}
	var errs []error
	for _, w := range slots {
		if e.Crashed(w) {
			continue
		}
		errs = append(errs, f(w))
	}
	return errors.Join(errs...)
}

func checkN(n, lo, hi int, what string) error {
	if n < lo || n > hi {
		return fmt.Errorf("%s %d outside [%d, %d]", what, n, lo, hi)
	}
	return nil
}

func checkParam(p string, want []string) error {
	if !slices.Contains(want, p) {
		return fmt.Errorf("param %q (want one of %v)", p, want)
	}
	return nil
}

// always is the Available of kinds every environment can run.
type always struct{}

func (always) Available(*sim.Env) error { return nil }
