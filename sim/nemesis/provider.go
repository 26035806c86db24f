package nemesis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim"
)

// Kind names of provider faults.
const (
	KindProviderTransient   = "provider-transient"    // fails before any effect (503, 429, dropped), N times
	KindProviderAmbiguous   = "provider-ambiguous"    // takes effect, then 500, dropped or hung, N times
	KindProviderSlow        = "provider-slow"         // N ms of latency on every request until healed
	KindProviderOutage      = "provider-outage"       // down (503 or dropped) until healed
	KindProviderTimeoutEdge = "provider-timeout-edge" // latency just under or just over the system's timeout, N times
	KindProviderLag         = "provider-lag"          // the cloud shows new VMs to reads only N ms after creating them, until healed
	KindDeployBug           = "deploy-bug"            // an intransient 4xx on an endpoint until the fix is deployed
)

var (
	transientParams = []string{"503", "429", "drop", "hang"}
	ambiguousParams = []string{"500", "drop", "hang"}
	slowMillis      = []int{100, 300, 1000}
	outageParams    = []string{"503", "drop"}
	edgeParams      = []string{"under", "over"}
	times           = []int{1, 2, 3}
	lagMillis       = []int{500, 2000}
)

// targets lists what a provider fault may aim at: every effectful endpoint,
// and (when services) every service as a whole.
func (s Space) targets(services bool) []string {
	var out []string
	for _, e := range s.mutations() {
		out = append(out, e.Point())
	}
	if services {
		out = append(out, s.services()...)
	}
	return out
}

// providerFault builds the fakes.Fault of f on e; its Target was checked.
// A Worker narrows it to that worker's current incarnation's requests.
func providerFault(e *sim.Env, f Fault) (fakes.Fault, error) {
	s := NewSpace(0)
	service, endpoint, err := s.endpoint(f.Target)
	if err != nil {
		return fakes.Fault{}, err
	}
	pf := fakes.Fault{Service: service, Endpoint: endpoint, Owner: f.Owner}
	if f.Worker != "" {
		if pf.Caller, err = e.Incarnation(f.Worker); err != nil {
			return fakes.Fault{}, err
		}
	}
	return pf, nil
}

func checkProviderWorker(f Fault, s Space) error {
	if f.Worker == "" {
		return nil
	}
	return s.checkWorker(f.Worker, false)
}

func checkTarget(f Fault, s Space) error {
	if _, _, err := s.endpoint(f.Target); err != nil {
		return err
	}
	return checkProviderWorker(f, s)
}

// status turns a "503"-style Param into a status (0 for "drop" or "hang").
func status(p string) int { n, _ := strconv.Atoi(p); return n }

// transientKind fails requests before they have any effect: a correct
// worker retries with backoff.
type transientKind struct{ always }

func (transientKind) Name() string { return KindProviderTransient }
func (transientKind) Class() Class { return ClassProvider }
func (transientKind) Doc() string {
	return "a provider fails its next N requests (to an endpoint or any) before any effect: 503, 429, a dropped connection, or a hang until the client gives up (a timeout with no effect)"
}
func (transientKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindProviderTransient, Target: pick(d, "target", s.targets(true)),
		Param: pick(d, "answer", transientParams), N: pick(d, "times", times)}
}
func (transientKind) Check(f Fault, s Space) error {
	if err := checkTarget(f, s); err != nil {
		return err
	}
	if err := checkN(f.N, 1, 1000, "times"); err != nil {
		return err
	}
	return checkParam(f.Param, transientParams)
}
func (transientKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	pf.Mode, pf.Times, pf.Status, pf.Drop, pf.Hang = fakes.ModeFailBefore, f.N, status(f.Param), f.Param == "drop", f.Param == "hang"
	return e.ProviderFault(pf)
}

// ambiguousKind lets requests take effect and then loses or spoils the
// answer: the worker cannot know whether its call happened.
type ambiguousKind struct{ always }

func (ambiguousKind) Name() string { return KindProviderAmbiguous }
func (ambiguousKind) Class() Class { return ClassProvider }
func (ambiguousKind) Doc() string {
	return "a provider's next N requests to an effectful endpoint take effect, then answer 500, drop the connection or hang until the client gives up: the ambiguous case"
}
func (ambiguousKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindProviderAmbiguous, Target: pick(d, "target", s.targets(false)),
		Param: pick(d, "answer", ambiguousParams), N: pick(d, "times", times[:2])}
}
func (ambiguousKind) Check(f Fault, s Space) error {
	if err := checkTarget(f, s); err != nil {
		return err
	}
	if err := checkN(f.N, 1, 1000, "times"); err != nil {
		return err
	}
	return checkParam(f.Param, ambiguousParams)
}
func (ambiguousKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	pf.Mode, pf.Times = fakes.ModeFailAfter, f.N
	switch f.Param {
	case "drop":
		pf.Drop = true
	case "hang":
		pf.Hang = true
	default:
		pf.Status = status(f.Param)
	}
	return e.ProviderFault(pf)
}

// slowKind delays every matching request until healed.
type slowKind struct{ always }

func (slowKind) Name() string { return KindProviderSlow }
func (slowKind) Class() Class { return ClassProvider }
func (slowKind) Doc() string {
	return "a provider answers every request (to an endpoint or any) N ms late until healed; the request takes effect even if the client gave up"
}
func (slowKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindProviderSlow, Target: pick(d, "target", s.targets(true)), N: pick(d, "ms", slowMillis)}
}
func (slowKind) Check(f Fault, s Space) error {
	if err := checkTarget(f, s); err != nil {
		return err
	}
	return checkN(f.N, 1, 60_000, "latency ms")
}
func (slowKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	pf.Mode, pf.Latency = fakes.ModeLatency, time.Duration(f.N)*time.Millisecond
	return e.ProviderFault(pf)
}

// outageKind takes a provider down for a long stretch: every call fails
// until healed, so retry caps and give-up paths are exercised.
type outageKind struct{ always }

func (outageKind) Name() string { return KindProviderOutage }
func (outageKind) Class() Class { return ClassProvider }
func (outageKind) Doc() string {
	return "a provider (or one endpoint) is down until healed: every request fails before any effect, 503 or a dropped connection"
}
func (outageKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindProviderOutage, Target: pick(d, "target", s.targets(true)), Param: pick(d, "answer", outageParams)}
}
func (outageKind) Check(f Fault, s Space) error {
	if err := checkTarget(f, s); err != nil {
		return err
	}
	return checkParam(f.Param, outageParams)
}
func (outageKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	pf.Mode, pf.Status, pf.Drop = fakes.ModeDown, status(f.Param), f.Param == "drop"
	return e.ProviderFault(pf)
}

// timeoutEdgeKind aims at the time the system waits for a provider: under,
// the request is slowed to just within it (a slow success, which a lease
// shorter than the call does not survive); over, the request takes effect
// at once and its answer is held until just after the client gave up (a
// timeout after the effect). The effect never lands after the client moved
// on: a provider applies one request before it answers it.
type timeoutEdgeKind struct{ always }

func (timeoutEdgeKind) Name() string { return KindProviderTimeoutEdge }
func (timeoutEdgeKind) Class() Class { return ClassProvider }
func (timeoutEdgeKind) Doc() string {
	return "a provider's next N requests to an effectful endpoint are slowed to just under the system's provider timeout (90%: a slow success), or take effect at once and answer just after it (110%: a timeout after the effect)"
}
func (timeoutEdgeKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindProviderTimeoutEdge, Target: pick(d, "target", s.targets(false)),
		Param: pick(d, "edge", edgeParams), N: pick(d, "times", times[:2])}
}
func (timeoutEdgeKind) Check(f Fault, s Space) error {
	if err := checkTarget(f, s); err != nil {
		return err
	}
	if err := checkN(f.N, 1, 100, "times"); err != nil {
		return err
	}
	return checkParam(f.Param, edgeParams)
}
func (timeoutEdgeKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	pf.Times = f.N
	if f.Param == "over" {
		pf.Mode, pf.Hang, pf.Latency = fakes.ModeFailAfter, true, e.ProviderTimeout()*11/10
	} else {
		pf.Mode, pf.Latency = fakes.ModeLatency, e.ProviderTimeout()*9/10
	}
	return e.ProviderFault(pf)
}

// lagKind makes the cloud's reads lag behind its writes (EC2's eventual
// consistency): a VM just created is "not found" for N ms.
type lagKind struct{ always }

func (lagKind) Name() string { return KindProviderLag }
func (lagKind) Class() Class { return ClassProvider }
func (lagKind) Doc() string {
	return "the cloud shows a new VM to describe, list and find-by-token only N ms after creating it (read-after-write lag), until healed"
}
func (lagKind) Draw(d Drawer, _ Space) Fault {
	return Fault{Kind: KindProviderLag, Target: fakes.ServiceCloud, N: pick(d, "ms", lagMillis)}
}
func (lagKind) Check(f Fault, _ Space) error {
	if f.Target != fakes.ServiceCloud {
		return fmt.Errorf("lag is the cloud's (target %q, want %q)", f.Target, fakes.ServiceCloud)
	}
	return checkN(f.N, 1, 60_000, "lag ms")
}
func (lagKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	e.SetProviderLag(time.Duration(f.N) * time.Millisecond)
	return nil
}

// bugKind deploys an intransient bug: the endpoint answers 422 until the
// fix is deployed. Work that meets it must park, visibly, and finish once
// the fix is out.
type bugKind struct{ always }

func (bugKind) Name() string { return KindDeployBug }
func (bugKind) Class() Class { return ClassDeploy }
func (bugKind) Doc() string {
	return "an intransient bug is deployed on an effectful endpoint (422 before any effect) until its fix: work must park with a reason, then finish"
}
func (bugKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindDeployBug, Target: pick(d, "target", s.targets(false))}
}
func (bugKind) Check(f Fault, s Space) error {
	_, ep, err := s.endpoint(f.Target)
	if err == nil && ep == "" {
		err = fmt.Errorf("a bug sits on an endpoint, not the whole of %q", f.Target)
	}
	return err
}
func (bugKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	pf, err := providerFault(e, f)
	if err != nil {
		return err
	}
	return e.DeployBug(BugName(f), pf.Service, pf.Endpoint)
}

// BugName names the bug a deploy-bug fault deploys.
func BugName(f Fault) string { return "bug@" + f.Target }
