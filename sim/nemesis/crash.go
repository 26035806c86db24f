package nemesis

import (
	"context"
	"fmt"

	"github.com/workproof/workproof/sim"
)

// Kind names of crash faults.
const (
	KindCrash = "crash" // a worker crashes at a point
	KindKill  = "kill"  // a worker is killed now, wherever it is
	// KindCrashRequest crashes a request handler (an API process) at a
	// point of the next request of client Worker.
	KindCrashRequest = "crash-request"
)

// crashKind arms a crash: the worker (every worker, for AllWorkers) freezes
// at the first point matching the rule named by Target, its links severed.
type crashKind struct{ always }

func (crashKind) Name() string { return KindCrash }
func (crashKind) Class() Class { return ClassCrash }
func (crashKind) Doc() string {
	return "a worker crashes at a point (before or after a provider call, before a commit or a write, or a point its trace reached): its links are severed, Postgres rolls back, none of its deferred code runs"
}

func (crashKind) Draw(d Drawer, s Space) Fault {
	names := pointNames(s)
	// A third of the crashes, when the run's points are known, aim at one a
	// worker really passed: system-agnostic, unlike the named points.
	if len(s.Reached) > 0 && d.Draw("reached", 3) == 0 {
		names = nil
		for _, p := range s.Reached {
			names = append(names, At(p, 1))
		}
	}
	return Fault{Kind: KindCrash, Worker: s.drawWorker(d, true), Target: pick(d, "point", names)}
}

func (crashKind) Check(f Fault, s Space) error {
	if err := s.checkWorker(f.Worker, true); err != nil {
		return err
	}
	_, err := Rule(s, f.Target)
	return err
}

func (crashKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	r, err := Rule(NewSpace(len(e.Workers())), f.Target)
	if err != nil {
		return err
	}
	return each(e, f.Worker, func(w string) error { return e.Crash(w, r) })
}

// killKind is a SIGKILL: the worker freezes at its next point.
type killKind struct{ always }

func (killKind) Name() string { return KindKill }
func (killKind) Class() Class { return ClassCrash }
func (killKind) Doc() string {
	return "a worker is killed now, wherever it is (a SIGKILL): it freezes at its next point with its links severed"
}
func (killKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindKill, Worker: s.drawWorker(d, false)}
}
func (killKind) Check(f Fault, s Space) error { return s.checkWorker(f.Worker, true) }
func (killKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	return each(e, f.Worker, e.Kill)
}

// crashRequestKind crashes the handler of a client's next request at a
// point: its database link is severed, so a handler that writes in two
// transactions is left half done, and the request's outcome is unknown.
type crashRequestKind struct{ always }

func (crashRequestKind) Name() string { return KindCrashRequest }
func (crashRequestKind) Class() Class { return ClassCrash }
func (crashRequestKind) Doc() string {
	return "the request handler of a client (Worker: the client, e.g. \"user\") crashes at a point of its next request: its database link is severed, its open transaction rolls back, the request's outcome is unknown"
}
func (crashRequestKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindCrashRequest, Worker: "user", Target: pick(d, "point", []string{"sql:commit", "sql:insert", "sql:update", "any"})}
}
func (crashRequestKind) Check(f Fault, s Space) error {
	if f.Worker == "" || f.Worker == AllWorkers {
		return fmt.Errorf("crash-request needs the client whose request crashes (Worker), got %q", f.Worker)
	}
	_, err := Rule(s, f.Target)
	return err
}
func (crashRequestKind) Inject(_ context.Context, e *sim.Env, f Fault) error {
	r, err := Rule(NewSpace(len(e.Workers())), f.Target)
	if err != nil {
		return err
	}
	client := f.Worker
	e.Gate().OnPoint(sim.APIActor(client), r, func() { e.CrashRequest(client) })
	return nil
}
