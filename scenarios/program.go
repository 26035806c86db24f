package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"pgregory.net/rapid"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/nemesis"
)

// Action is one step of a property-based program. It is plain data, so a
// counterexample can be printed, saved and replayed.
type Action struct {
	Kind     string         `json:"kind"`
	Instance string         `json:"instance,omitempty"`
	Size     string         `json:"size,omitempty"`
	Fault    *nemesis.Fault `json:"fault,omitempty"` // ActFault: a fault of the catalogue
	Heal     nemesis.Class  `json:"heal,omitempty"`  // ActHeal: the class healed
	N        int            `json:"n,omitempty"`     // ActWait: milliseconds
}

// Action kinds.
const (
	ActCreate = "create"
	ActResize = "resize"
	ActDelete = "delete"
	ActGet    = "get"
	ActRace   = "race"  // two changes of one instance at once, meeting before their first write
	ActFault  = "fault" // inject Fault (package sim/nemesis)
	ActHeal   = "heal"  // heal every fault of class Heal (restart crashed workers, heal links, …)
	ActWait   = "wait"  // let the workers run N ms
)

func (a Action) String() string {
	switch a.Kind {
	case ActFault:
		if a.Fault != nil {
			return a.Fault.String()
		}
	case ActHeal:
		return "heal " + string(a.Heal)
	case ActWait:
		return fmt.Sprintf("wait %dms", a.N)
	}
	return strings.Join(slices.DeleteFunc([]string{a.Kind, a.Instance, a.Size}, func(s string) bool { return s == "" }), " ")
}

// Program is a drawn scenario: how many workers, and the actions in order.
// After the actions the harness heals everything, converges and checks.
type Program struct {
	Family  string   `json:"family"`
	Workers int      `json:"workers"`
	Actions []Action `json:"actions"`
}

// String prints the program one action a line, numbered.
func (p Program) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s program, %d workers, %d actions:\n", p.Family, p.Workers, len(p.Actions))
	for i, a := range p.Actions {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, a)
	}
	return b.String()
}

// Bounds of a program a harness accepts (a saved one may hold anything).
const (
	MaxInstances = 64 // the instance ids a drawn program uses: i1 to iN
	MaxWorkers   = 16
	MaxActions   = 1000
	MaxWait      = 60_000 // ms
)

// Check reports the first thing wrong with p, naming the action: a saved
// program is read from a file, so every field is bounded.
func (p Program) Check() error {
	if p.Workers < 1 || p.Workers > MaxWorkers {
		return fmt.Errorf("program: workers %d outside [1, %d]", p.Workers, MaxWorkers)
	}
	if len(p.Actions) == 0 || len(p.Actions) > MaxActions {
		return fmt.Errorf("program: %d actions, want 1 to %d", len(p.Actions), MaxActions)
	}
	space := nemesis.NewSpace(p.Workers)
	for i, a := range p.Actions {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("program: action %d (%s): %s", i+1, a, fmt.Sprintf(format, args...))
		}
		switch a.Kind {
		case ActCreate, ActResize, ActRace:
			if !slices.Contains(sizes, a.Size) {
				return bad("size %q (want one of %v)", a.Size, sizes)
			}
			fallthrough
		case ActDelete, ActGet:
			if a.Instance == "" || len(a.Instance) > 64 {
				return bad("instance id %q must be 1 to 64 characters", a.Instance)
			}
		case ActFault:
			if a.Fault == nil {
				return bad("no fault")
			}
			if err := nemesis.Check(*a.Fault, space); err != nil {
				return bad("%v", err)
			}
		case ActHeal:
			if !slices.Contains(nemesis.Classes(), a.Heal) {
				return bad("heal %q (want one of %v)", a.Heal, nemesis.Classes())
			}
		case ActWait:
			if a.N < 0 || a.N > MaxWait {
				return bad("wait %d ms outside [0, %d]", a.N, MaxWait)
			}
		default:
			return bad("unknown kind %q", a.Kind)
		}
	}
	return nil
}

// needsPrivateServer reports whether p restarts Postgres, which needs a
// server private to the run.
func (p Program) needsPrivateServer() bool {
	return slices.ContainsFunc(p.Actions, func(a Action) bool {
		return a.Fault != nil && a.Fault.Kind == nemesis.KindPostgresRestart
	})
}

// waitsOut reports whether p injects a fault after which the system may
// have to wait out one of its own bounds (a fence, a takeover, a call's
// timeout, a restart): a worker or its session ends mid-item, a link or a
// provider goes silent. Such programs take seconds, most others a fraction
// of one, so a Run starts them first (prioLong). A guess from the program
// alone: whether a fault meets a worker at all is up to the run.
func (p Program) waitsOut() bool {
	return slices.ContainsFunc(p.Actions, func(a Action) bool {
		if a.Fault == nil {
			return false
		}
		switch a.Fault.Kind {
		case nemesis.KindCrash, nemesis.KindKill, nemesis.KindTerminateWorker, nemesis.KindPostgresRestart,
			nemesis.KindLinkBlackhole, nemesis.KindLinkCut, nemesis.KindLinkPartition, nemesis.KindLinkReset,
			nemesis.KindProviderTimeoutEdge, nemesis.KindProviderOutage:
			return true
		case nemesis.KindProviderTransient, nemesis.KindProviderAmbiguous:
			return a.Fault.Param == "drop" || a.Fault.Param == "hang"
		}
		return false
	})
}

// The vocabularies of draws. Every draw picks from a sorted slice, never
// from a map, so a seed always draws the same program.
var sizes = []string{"large", "medium", "small"}

// DefaultInstances is how many instance ids a drawn program uses unless
// told otherwise; a seed draws the program it drew before only with the
// same count.
const DefaultInstances = 3

// instanceIDs is i1 to in, sorted as drawn.
func instanceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i%d", i+1)
	}
	return ids
}

// Families of property programs: each draws user requests plus faults of
// some classes of the catalogue, so a failure points at its cause.
const (
	FamilyNamed    = "named"    // the named regression scenarios
	FamilyCrash    = "crash"    // worker crashes at chosen points, kills, restarts
	FamilyNetwork  = "network"  // link faults between workers and Postgres or providers, backend kills
	FamilyProvider = "provider" // transient, ambiguous, slow and intransient provider faults, outages, bug and fix
	FamilyChaos    = "chaos"    // all of the above at once, and Postgres restarts and SQL errors
)

// Families returns every family, in the order Verify and the gate run them:
// the named regressions, systematic exploration, then the drawn programs.
func Families() []string {
	return []string{FamilyNamed, FamilyExplore, FamilyCrash, FamilyNetwork, FamilyProvider, FamilyChaos}
}

// family is a weighting over the catalogue: which kinds it draws, how
// often, and which classes a drawn heal may undo.
type family struct {
	faults []weighted // kind names of sim/nemesis
	heals  []nemesis.Class
}

type weighted struct {
	kind   string
	weight int
}

func families() map[string]family {
	crash := family{
		faults: []weighted{{nemesis.KindCrash, 3}, {nemesis.KindKill, 1}},
		heals:  []nemesis.Class{nemesis.ClassCrash},
	}
	network := family{
		faults: []weighted{
			{nemesis.KindLinkLatency, 1}, {nemesis.KindLinkBlackhole, 1}, {nemesis.KindLinkReset, 1}, {nemesis.KindLinkCut, 1},
			{nemesis.KindLinkPartition, 1}, {nemesis.KindTerminateWorker, 1}, {nemesis.KindTerminateListener, 1},
		},
		heals: []nemesis.Class{nemesis.ClassNetwork},
	}
	provider := family{
		faults: []weighted{
			{nemesis.KindProviderTransient, 2}, {nemesis.KindProviderAmbiguous, 2}, {nemesis.KindProviderSlow, 1},
			{nemesis.KindProviderOutage, 1}, {nemesis.KindProviderTimeoutEdge, 1}, {nemesis.KindDeployBug, 1},
		},
		heals: []nemesis.Class{nemesis.ClassProvider, nemesis.ClassDeploy},
	}
	chaos := family{heals: nemesis.Classes()}
	for _, f := range []family{crash, network, provider} {
		chaos.faults = append(chaos.faults, f.faults...)
	}
	chaos.faults = append(chaos.faults, weighted{nemesis.KindPostgresRestart, 1}, weighted{nemesis.KindSQLError, 1})
	return map[string]family{FamilyCrash: crash, FamilyNetwork: network, FamilyProvider: provider, FamilyChaos: chaos}
}

// isPropertyFamily reports whether name is a family of drawn programs.
func isPropertyFamily(name string) bool { _, ok := families()[name]; return ok }

// rapidDrawer draws a fault's parameters from rapid, so they shrink.
type rapidDrawer struct{ t *rapid.T }

func (d rapidDrawer) Draw(label string, n int) int { return rapid.IntRange(0, n-1).Draw(d.t, label) }

var userKinds = []string{ActCreate, ActCreate, ActResize, ActDelete, ActGet, ActRace, ActWait, ActWait}

// ProgramGen draws programs of family with 1 to steps actions for workers
// workers, on instances instance ids (zero: DefaultInstances).
func ProgramGen(family string, workers, steps, instances int) *rapid.Generator[Program] {
	fam := families()[family]
	if instances <= 0 {
		instances = DefaultInstances
	}
	ids := instanceIDs(instances)
	space := nemesis.NewSpace(workers)
	// Every entry once per unit of weight; faults, as a whole, about as
	// likely as requests.
	kinds := slices.Clone(userKinds)
	var faultKinds []string
	for _, w := range fam.faults {
		for range w.weight {
			faultKinds = append(faultKinds, w.kind)
		}
	}
	for range len(fam.faults) {
		kinds = append(kinds, ActFault)
	}
	for range fam.heals {
		kinds = append(kinds, ActHeal)
	}
	action := rapid.Custom(func(t *rapid.T) Action {
		a := Action{Kind: rapid.SampledFrom(kinds).Draw(t, "kind")}
		switch a.Kind {
		case ActCreate, ActResize, ActRace:
			a.Instance = rapid.SampledFrom(ids).Draw(t, "instance")
			a.Size = rapid.SampledFrom(sizes).Draw(t, "size")
		case ActDelete, ActGet:
			a.Instance = rapid.SampledFrom(ids).Draw(t, "instance")
		case ActFault:
			k, _ := nemesis.KindNamed(rapid.SampledFrom(faultKinds).Draw(t, "fault"))
			f := k.Draw(rapidDrawer{t}, space)
			a.Fault = &f
		case ActHeal:
			a.Heal = rapid.SampledFrom(fam.heals).Draw(t, "heal")
		case ActWait:
			a.N = rapid.SampledFrom([]int{20, 100, 400}).Draw(t, "ms")
		}
		return a
	})
	// A fault is drawn together with the request that meets it: a crash
	// armed at a point, or a link cut, proves nothing unless some work
	// then runs through it. Drawn independently, most faults met no work.
	trigger := rapid.Custom(func(t *rapid.T) []Action {
		return []Action{
			{Kind: rapid.SampledFrom([]string{ActCreate, ActCreate, ActResize, ActDelete}).Draw(t, "trigger"),
				Instance: rapid.SampledFrom(ids).Draw(t, "instance"),
				Size:     rapid.SampledFrom(sizes).Draw(t, "size")},
			{Kind: ActWait, N: rapid.SampledFrom([]int{100, 400}).Draw(t, "ms")},
		}
	})
	return rapid.Custom(func(t *rapid.T) Program {
		var acts []Action
		for _, a := range rapid.SliceOfN(action, 1, steps).Draw(t, "actions") {
			acts = append(acts, a)
			if a.Kind == ActFault && rapid.Bool().Draw(t, "triggered") {
				acts = append(acts, trigger.Draw(t, "then")...)
			}
		}
		if len(acts) > steps {
			acts = acts[:steps]
		}
		for i := range acts { // a size on a delete is noise in a printed program
			if acts[i].Kind == ActDelete || acts[i].Kind == ActGet {
				acts[i].Size = ""
			}
		}
		return Program{Family: family, Workers: workers, Actions: acts}
	})
}

// Execute runs p's actions on e, in order. Request errors are expected (a
// busy instance, a fault) and recorded in the history; an error is returned
// only when the harness itself fails.
func Execute(ctx context.Context, e *sim.Env, p Program) error {
	for i, a := range p.Actions {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := execute(ctx, e, i, a); err != nil {
			return fmt.Errorf("action %d (%s): %w", i+1, a, err)
		}
	}
	return nil
}

func execute(ctx context.Context, e *sim.Env, i int, a Action) error {
	switch a.Kind {
	case ActCreate, ActResize, ActDelete, ActGet:
		_, _ = e.Serve(ctx, "user", contract.Request{Op: contract.Op(a.Kind), Instance: a.Instance, Size: a.Size})
	case ActRace:
		race(ctx, e, i, a)
	case ActFault:
		if a.Fault == nil {
			return errors.New("fault action without a fault")
		}
		return nemesis.Inject(ctx, e, *a.Fault)
	case ActHeal:
		return nemesis.Heal(ctx, e, a.Heal)
	case ActWait:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(a.N) * time.Millisecond):
		}
	default:
		return fmt.Errorf("unknown action kind %q", a.Kind)
	}
	return nil
}

// race sends two changes of one instance at once from two clients; both
// meet right before their first write, so a check made by an earlier read
// is stale for both.
func race(ctx context.Context, e *sim.Env, i int, a Action) {
	meet := rendezvous(2, 500*time.Millisecond)
	reqs := []contract.Request{
		{Op: contract.OpResize, Instance: a.Instance, Size: a.Size},
		{Op: contract.OpDelete, Instance: a.Instance},
	}
	if a.Size == "large" { // two resizes
		reqs[1] = contract.Request{Op: contract.OpResize, Instance: a.Instance, Size: "small"}
	}
	var wg sync.WaitGroup
	for j, req := range reqs {
		client := fmt.Sprintf("user.%d%c", i+1, 'a'+j)
		e.Gate().OnPoint(sim.APIActor(client), nemesis.AtSQL("update"), meet)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = e.Serve(ctx, client, req)
		}()
	}
	wg.Wait()
}
