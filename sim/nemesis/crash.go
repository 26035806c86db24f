package nemesis

import (
	"context"

	"github.com/workproof/workproof/sim"
)

// Kind names of crash faults.
const (
	KindCrash = "crash" // a worker crashes at a point
	KindKill  = "kill"  // a worker is killed now, wherever it is
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
