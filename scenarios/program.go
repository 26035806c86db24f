package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"pgregory.net/rapid"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/netfault"
)

// Action is one step of a property-based program. It is plain data, so a
// counterexample can be printed, saved and replayed.
type Action struct {
	Kind     string `json:"kind"`
	Instance string `json:"instance,omitempty"`
	Size     string `json:"size,omitempty"`
	Worker   string `json:"worker,omitempty"`
	Target   string `json:"target,omitempty"` // upstream, service, or backend kind
	Fault    string `json:"fault,omitempty"`  // a key of linkFaults, providerFaults, crashRules or bugs
	N        int    `json:"n,omitempty"`      // times (provider faults) or milliseconds (wait)
}

// Action kinds.
const (
	ActCreate    = "create"
	ActResize    = "resize"
	ActDelete    = "delete"
	ActGet       = "get"
	ActRace      = "race"      // two changes of one instance at once, meeting before their first write
	ActCrash     = "crash"     // arm a crash of Worker at the point rule Fault
	ActKill      = "kill"      // SIGKILL Worker now
	ActRestart   = "restart"   // restart Worker if it crashed
	ActLink      = "link"      // network fault Fault on Worker's link to Target
	ActHeal      = "heal"      // heal every link
	ActTerminate = "terminate" // pg_terminate_backend of Worker's Target ("worker" or "listener") sessions
	ActProvider  = "provider"  // provider fault Fault, N times
	ActBug       = "bug"       // deploy the intransient bug Fault
	ActFix       = "fix"       // deploy the fix of every bug
	ActWait      = "wait"      // let the workers run N ms
)

func (a Action) String() string {
	var b strings.Builder
	b.WriteString(a.Kind)
	for _, kv := range [][2]string{{"", a.Instance}, {"", a.Size}, {"", a.Worker}, {"", a.Target}, {"", a.Fault}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[1])
		}
	}
	if a.N != 0 {
		if a.Kind == ActWait {
			fmt.Fprintf(&b, " %dms", a.N)
		} else {
			fmt.Fprintf(&b, " x%d", a.N)
		}
	}
	return b.String()
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

// The vocabularies of draws. Every draw picks from a sorted slice, never
// from a map, so a seed always draws the same program.
var (
	instanceIDs = []string{"i1", "i2", "i3"}
	sizes       = []string{"large", "medium", "small"}
	upstreams   = sim.Upstreams()
)

// crashRules are the points a drawn crash aims at: the places where
// work-table workers lose or repeat effects.
var crashRules = map[string]crash.Rule{
	"before-commit":            {At: "sql:commit"},
	"after-vm-before-db":       {After: "cloud:CreateVM:done", At: "sql:"},
	"after-vm-created":         {At: "cloud:CreateVM:done"},
	"before-charge":            {At: "billing:CreateCharge"},
	"after-charge":             {At: "billing:CreateCharge:done"},
	"at-kube":                  {At: "kube:"},
	"after-email":              {At: "email:Send:done"},
	"after-terminate":          {At: "cloud:TerminateVM:done"},
	"at-instance-update":       {At: "sql:update instances"},
	"at-instance-delete":       {At: "sql:delete instances"},
	"at-enqueue":               {At: "sql:insert work"},
	"after-claim":              {After: "sql:delete work", At: "sql:"},
	"after-charge-before-sql":  {After: "billing:CreateCharge:done", At: "sql:"},
	"after-apply-before-later": {After: "kube:Apply:done", At: ""},
}

var linkFaults = map[string]netfault.Fault{
	"latency":         netfault.Latency{Delay: 200 * time.Millisecond},
	"blackhole-down":  netfault.Blackhole{Dir: netfault.Downstream},
	"blackhole-up":    netfault.Blackhole{Dir: netfault.Upstream},
	"reset":           netfault.Reset{},
	"cut-answer":      netfault.CutAfter{Bytes: 0, Dir: netfault.Downstream},
	"cut-request-64B": netfault.CutAfter{Bytes: 64, Dir: netfault.Upstream},
	"partition":       netfault.Partition{},
}

var providerFaults = map[string]fakes.Fault{
	"cloud-create-503":       {Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailBefore, Status: 503},
	"cloud-create-500-after": {Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailAfter},
	"cloud-create-drop":      {Service: "cloud", Endpoint: "CreateVM", Mode: fakes.ModeFailAfter, Drop: true},
	"cloud-terminate-drop":   {Service: "cloud", Endpoint: "TerminateVM", Mode: fakes.ModeFailAfter, Drop: true},
	"billing-charge-429":     {Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailBefore, Status: 429},
	"billing-charge-500":     {Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailAfter},
	"billing-charge-drop":    {Service: "billing", Endpoint: "CreateCharge", Mode: fakes.ModeFailAfter, Drop: true},
	"kube-apply-503":         {Service: "kube", Endpoint: "Apply", Mode: fakes.ModeFailBefore, Status: 503},
	"kube-apply-drop":        {Service: "kube", Endpoint: "Apply", Mode: fakes.ModeFailAfter, Drop: true},
	"email-send-drop":        {Service: "email", Endpoint: "Send", Mode: fakes.ModeFailAfter, Drop: true},
	"cloud-slow":             {Service: "cloud", Mode: fakes.ModeLatency, Latency: 300 * time.Millisecond},
}

var bugs = map[string][2]string{ // name → service, endpoint
	"cloud-create-422":    {"cloud", "CreateVM"},
	"cloud-terminate-422": {"cloud", "TerminateVM"},
	"kube-apply-422":      {"kube", "Apply"},
	"billing-charge-422":  {"billing", "CreateCharge"},
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Families of property programs: each draws user requests plus one kind of
// fault, so a failure points at its cause.
const (
	FamilyNamed    = "named"    // the named regression scenarios
	FamilyCrash    = "crash"    // worker crashes at chosen points, kills, restarts
	FamilyNetwork  = "network"  // link faults between workers and Postgres or providers, backend kills
	FamilyProvider = "provider" // transient, ambiguous and intransient provider faults, bug and fix
	FamilyChaos    = "chaos"    // all of the above at once
)

// Families returns every family, in the order Verify runs them.
func Families() []string {
	return []string{FamilyNamed, FamilyCrash, FamilyNetwork, FamilyProvider, FamilyChaos}
}

var familyKinds = map[string][]string{
	FamilyCrash:    {ActCrash, ActKill, ActRestart},
	FamilyNetwork:  {ActLink, ActHeal, ActTerminate},
	FamilyProvider: {ActProvider, ActBug, ActFix},
	FamilyChaos:    {ActCrash, ActKill, ActRestart, ActLink, ActHeal, ActTerminate, ActProvider, ActBug, ActFix},
}

var userKinds = []string{ActCreate, ActCreate, ActResize, ActDelete, ActGet, ActRace, ActWait, ActWait}

// ProgramGen draws programs of family with 1 to steps actions for workers
// workers.
func ProgramGen(family string, workers, steps int) *rapid.Generator[Program] {
	faultKinds := familyKinds[family]
	kinds := append(slices.Clone(userKinds), faultKinds...)
	kinds = append(kinds, faultKinds...) // faults as likely as requests
	var slots []string
	for i := 1; i <= workers; i++ {
		slots = append(slots, fmt.Sprintf("w%d", i))
	}
	action := rapid.Custom(func(t *rapid.T) Action {
		a := Action{Kind: rapid.SampledFrom(kinds).Draw(t, "kind")}
		switch a.Kind {
		case ActCreate, ActResize, ActRace:
			a.Instance = rapid.SampledFrom(instanceIDs).Draw(t, "instance")
			a.Size = rapid.SampledFrom(sizes).Draw(t, "size")
		case ActDelete, ActGet:
			a.Instance = rapid.SampledFrom(instanceIDs).Draw(t, "instance")
		case ActCrash:
			a.Worker = rapid.SampledFrom(slots).Draw(t, "worker")
			a.Fault = rapid.SampledFrom(keys(crashRules)).Draw(t, "point")
		case ActKill, ActRestart:
			a.Worker = rapid.SampledFrom(slots).Draw(t, "worker")
		case ActLink:
			a.Worker = rapid.SampledFrom(slots).Draw(t, "worker")
			a.Target = rapid.SampledFrom(upstreams).Draw(t, "upstream")
			a.Fault = rapid.SampledFrom(keys(linkFaults)).Draw(t, "fault")
		case ActTerminate:
			a.Worker = rapid.SampledFrom(slots).Draw(t, "worker")
			a.Target = rapid.SampledFrom([]string{string(sim.ListenerBackends), string(sim.WorkerBackends)}).Draw(t, "backend")
		case ActProvider:
			a.Fault = rapid.SampledFrom(keys(providerFaults)).Draw(t, "fault")
			a.N = rapid.IntRange(1, 3).Draw(t, "times")
		case ActBug:
			a.Fault = rapid.SampledFrom(keys(bugs)).Draw(t, "bug")
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
				Instance: rapid.SampledFrom(instanceIDs).Draw(t, "instance"),
				Size:     rapid.SampledFrom(sizes).Draw(t, "size")},
			{Kind: ActWait, N: rapid.SampledFrom([]int{100, 400}).Draw(t, "ms")},
		}
	})
	faults := map[string]bool{}
	for _, k := range faultKinds {
		faults[k] = k != ActHeal && k != ActRestart && k != ActFix
	}
	return rapid.Custom(func(t *rapid.T) Program {
		var acts []Action
		for _, a := range rapid.SliceOfN(action, 1, steps).Draw(t, "actions") {
			acts = append(acts, a)
			if faults[a.Kind] && rapid.Bool().Draw(t, "triggered") {
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
	case ActCrash:
		r, ok := crashRules[a.Fault]
		if !ok {
			return fmt.Errorf("unknown crash point %q", a.Fault)
		}
		return e.Crash(a.Worker, r)
	case ActKill:
		if !e.Crashed(a.Worker) {
			return e.Kill(a.Worker)
		}
	case ActRestart:
		if e.Crashed(a.Worker) {
			return e.Restart(ctx, a.Worker)
		}
	case ActLink:
		f, ok := linkFaults[a.Fault]
		if !ok {
			return fmt.Errorf("unknown link fault %q", a.Fault)
		}
		if e.Crashed(a.Worker) {
			return nil
		}
		return e.LinkFault(a.Worker, a.Target, f)
	case ActHeal:
		return e.HealLinks()
	case ActTerminate:
		if e.Crashed(a.Worker) {
			return nil
		}
		_, err := e.TerminateBackends(ctx, a.Worker, sim.Backend(a.Target))
		return err
	case ActProvider:
		f, ok := providerFaults[a.Fault]
		if !ok {
			return fmt.Errorf("unknown provider fault %q", a.Fault)
		}
		f.ID, f.Times = a.Fault, max(a.N, 1)
		return e.ProviderFault(f)
	case ActBug:
		b, ok := bugs[a.Fault]
		if !ok {
			return fmt.Errorf("unknown bug %q", a.Fault)
		}
		return e.DeployBug(a.Fault, b[0], b[1])
	case ActFix:
		for _, name := range keys(bugs) {
			if err := e.DeployFix(ctx, name); err != nil {
				return err
			}
		}
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
		e.Gate().OnPoint(sim.APIActor(client), crash.Rule{At: "sql:update"}, meet)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = e.Serve(ctx, client, req)
		}()
	}
	wg.Wait()
}
