package fakes

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what a fault does to a matching request.
type Mode string

const (
	// ModeFailBefore answers Status (default 503; 429 for throttling) before
	// the request has any effect. With Drop the connection is closed
	// instead; with Hang the server holds the request until the client gives
	// up (or Latency elapses), then drops it: a timeout with no effect.
	ModeFailBefore Mode = "fail-before"
	// ModeFailAfter lets the request take effect (recorded with
	// Effect=true), then answers Status (default 500), or drops the
	// connection (Drop), or holds it until the client times out (Hang): the
	// ambiguous case. Billing stores a fail-after status answer as the key's
	// idempotent response and replays it, as Stripe does; after Drop or Hang
	// it stores the real answer.
	ModeFailAfter Mode = "fail-after"
	// ModeLatency delays the request by Latency before it is handled. The
	// delay does not stop when the client gives up: the request still takes
	// effect, as on a real server. Latency faults add up, and combine with
	// one other fault.
	ModeLatency Mode = "latency"
	// ModeIntransient answers Status (default 422) with Code (default
	// "deployed_bug") before any effect, for every matching request until
	// cleared: "a bug was deployed" until "the fix was deployed".
	ModeIntransient Mode = "intransient"
	// ModeDown is the service being down: Status (default 503, code
	// "service_unavailable") or a dropped connection (Drop), before any
	// effect.
	ModeDown Mode = "down"
)

// Fault is one rule of a fault plan. Empty match fields match anything.
type Fault struct {
	// ID names the fault so that it can be cleared alone; zero: unnamed.
	ID string `json:"id,omitempty"`
	// Service is a Spec's name ("cloud", "billing", "kube", "email"); zero:
	// any.
	Service string `json:"service,omitempty"`
	// Endpoint is e.g. "CreateVM", "CreateCharge", "Apply" (the Record
	// endpoint names); zero: any.
	Endpoint string `json:"endpoint,omitempty"`
	// Owner is the owning instance the request names; zero: any.
	Owner string `json:"owner,omitempty"`
	// Caller is the worker incarnation (X-Workproof-Caller); zero: any.
	Caller string `json:"caller,omitempty"`
	Mode   Mode   `json:"mode"`
	// Status overrides the mode's default status; zero: the default.
	Status int `json:"status,omitempty"`
	// Code and Message override the error body; zero: the mode's default.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Drop closes the connection without an answer (fail-before,
	// fail-after, down).
	Drop bool `json:"drop,omitempty"`
	// Hang holds the request until the client disconnects (or Latency
	// elapses when set, or the server closes), then drops it (fail-before,
	// fail-after).
	Hang bool `json:"hang,omitempty"`
	// Latency is the delay of ModeLatency, and the bound of a Hang; JSON: a
	// Go duration string ("250ms").
	Latency time.Duration `json:"-"`
	// Times is how many requests the fault fires on before it removes
	// itself; zero: until cleared. With a Service of "" each service counts
	// separately.
	Times int `json:"times,omitempty"`
	// Probability that a matching request triggers the fault, drawn from
	// the plan's seeded stream; zero or 1: always.
	Probability float64 `json:"probability,omitempty"`
}

type faultJSON struct {
	faultAlias
	Latency string `json:"latency,omitempty"`
}

type faultAlias Fault

// MarshalJSON writes Latency as a duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{faultAlias: faultAlias(f)}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Latency as a duration string or integer nanoseconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j struct {
		faultAlias
		Latency json.RawMessage `json:"latency,omitempty"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault(j.faultAlias)
	f.Latency = 0
	if len(j.Latency) > 0 && string(j.Latency) != "null" {
		var s string
		if json.Unmarshal(j.Latency, &s) == nil {
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("fault latency: %w", err)
			}
			f.Latency = d
		} else {
			var n int64
			if err := json.Unmarshal(j.Latency, &n); err != nil {
				return fmt.Errorf("fault latency: want a duration string or nanoseconds: %w", err)
			}
			f.Latency = time.Duration(n)
		}
	}
	return nil
}

// ErrInvalidFault is wrapped by every fault-plan validation error.
var ErrInvalidFault = errors.New("invalid fault")

// Validate reports the first problem with f.
func (f Fault) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidFault, f.ID, fmt.Sprintf(format, a...))
	}
	switch f.Mode {
	case ModeFailBefore, ModeFailAfter, ModeLatency, ModeIntransient, ModeDown:
	default:
		return bad("unknown mode %q", f.Mode)
	}
	if _, ok := SpecNamed(f.Service); !ok && f.Service != "" {
		return bad("unknown service %q (want one of %v)", f.Service, ServiceNames())
	}
	if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
		return bad("status %d is not a 4xx or 5xx", f.Status)
	}
	if f.Latency < 0 || f.Times < 0 {
		return bad("negative latency or times")
	}
	if f.Probability < 0 || f.Probability > 1 || f.Probability != f.Probability {
		return bad("probability %v outside [0, 1]", f.Probability)
	}
	if f.Mode == ModeLatency && f.Latency == 0 {
		return bad("latency mode without latency")
	}
	if f.Drop && f.Hang {
		return bad("drop and hang both set")
	}
	if (f.Drop || f.Hang) && (f.Mode == ModeLatency || f.Mode == ModeIntransient) {
		return bad("drop/hang do not apply to %s", f.Mode)
	}
	if f.Hang && f.Mode == ModeDown {
		return bad("hang does not apply to down")
	}
	return nil
}

// Plan is a fault plan as data: what a run injected, serialisable so that
// the run can be replayed.
type Plan struct {
	// Seed seeds the stream Probability is drawn from (each service draws
	// from its own stream derived from it).
	Seed   uint64  `json:"seed,omitempty"`
	Faults []Fault `json:"faults,omitempty"`
}

// Validate reports the first invalid fault.
func (p Plan) Validate() error {
	for _, f := range p.Faults {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// faultSet is one server's active plan.
type faultSet struct {
	service string
	any     atomic.Bool // fast path: no fault at all

	mu     sync.Mutex
	seed   uint64
	faults []Fault // Times is the remaining count
	rng    *rand.Rand
}

func newFaultSet(service string) *faultSet { return &faultSet{service: service} }

func (fs *faultSet) streamFor(seed uint64) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(fs.service))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

func (fs *faultSet) set(p Plan) error {
	if err := p.Validate(); err != nil {
		return err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.seed = p.Seed
	fs.rng = fs.streamFor(p.Seed)
	fs.faults = fs.faults[:0]
	for _, f := range p.Faults {
		if f.Service == "" || f.Service == fs.service {
			f.Service = fs.service // so that a merged plan names each copy
			fs.faults = append(fs.faults, f)
		}
	}
	fs.any.Store(len(fs.faults) > 0)
	return nil
}

func (fs *faultSet) add(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Service != "" && f.Service != fs.service {
		return nil
	}
	f.Service = fs.service
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.rng == nil {
		fs.rng = fs.streamFor(fs.seed)
	}
	fs.faults = append(fs.faults, f)
	fs.any.Store(true)
	return nil
}

func (fs *faultSet) clear(id string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	kept := fs.faults[:0]
	for _, f := range fs.faults {
		if id == "" || f.ID == id {
			n++
			continue
		}
		kept = append(kept, f)
	}
	clear(fs.faults[len(kept):])
	fs.faults = kept
	fs.any.Store(len(kept) > 0)
	return n
}

func (fs *faultSet) plan() Plan {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := Plan{Seed: fs.seed}
	if len(fs.faults) > 0 {
		p.Faults = append([]Fault(nil), fs.faults...)
	}
	return p
}

// decision is what the plan does to one request, decided when it arrives.
type decision struct {
	latency time.Duration
	before  *Fault // fail-before, intransient or down
	after   *Fault // fail-after
	modes   []string
}

func (d decision) label() string { return strings.Join(d.modes, "+") }

// decide draws the faults for one request: every matching latency fault,
// plus the first matching fault of another mode, in plan order.
func (fs *faultSet) decide(endpoint, owner, caller string) decision {
	var d decision
	if !fs.any.Load() {
		return d
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	removed := false
	for i := range fs.faults {
		f := &fs.faults[i]
		if (f.Endpoint != "" && f.Endpoint != endpoint) ||
			(f.Owner != "" && f.Owner != owner) ||
			(f.Caller != "" && f.Caller != caller) {
			continue
		}
		terminal := f.Mode != ModeLatency
		if terminal && (d.before != nil || d.after != nil) {
			continue
		}
		if f.Probability > 0 && f.Probability < 1 && fs.rng.Float64() >= f.Probability {
			continue
		}
		c := *f
		switch f.Mode {
		case ModeLatency:
			d.latency += f.Latency
		case ModeFailAfter:
			d.after = &c
		default:
			d.before = &c
		}
		d.modes = append(d.modes, string(f.Mode))
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				f.Mode = "" // removed below
				removed = true
			}
		}
	}
	if removed {
		kept := fs.faults[:0]
		for _, f := range fs.faults {
			if f.Mode != "" {
				kept = append(kept, f)
			}
		}
		clear(fs.faults[len(kept):])
		fs.faults = kept
		fs.any.Store(len(kept) > 0)
	}
	return d
}
