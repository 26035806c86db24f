package nemesis

import (
	"strings"

	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/crash"
)

// Spot is one point of a traced workload that a fault can aim at, in the
// terms of the catalogue: what kind of point it is decides which faults
// make sense right before it.
type Spot struct {
	// API says the point is a request handler's (an API client's); else it
	// is a worker's, inside a work item.
	API bool
	// Point is its name: "sql:commit", "cloud:CreateVM", "cloud:CreateVM:done".
	Point string
}

// Aimed is one fault the explorer can inject right before a spot.
type Aimed struct {
	// Name is stable for a spot: it is part of an experiment's id.
	Name string
	// Fault is what to inject; its Worker is filled in by whoever reaches
	// the spot (the worker slot, or for an API spot the client). A KindCrash
	// or KindCrashRequest fault crashes the reacher at the spot itself.
	Fault Fault
}

// Menu lists the faults of the catalogue that aim at spot, in a fixed
// order: a crash right there, always; after a provider's answer a Postgres
// restart; before an effectful provider call its
// transient, ambiguous, timed-out, down and buggy answers; before a read
// its transient answers; before a statement a lost answer, a reset
// connection, a terminated session, a Postgres restart, and for a write a
// serialization failure and a statement timeout raised by the server.
func Menu(s Space, spot Spot) []Aimed {
	if spot.API {
		out := []Aimed{{Name: "crash", Fault: Fault{Kind: KindCrashRequest}}}
		if isSQL(spot.Point) {
			out = append(out,
				Aimed{Name: "cut-answer", Fault: Fault{Kind: KindLinkCut, Target: sim.Postgres, Param: "down"}},
				Aimed{Name: "restart", Fault: Fault{Kind: KindPostgresRestart}})
		}
		return out
	}
	out := []Aimed{{Name: "crash", Fault: Fault{Kind: KindCrash}}}
	switch {
	case isSQL(spot.Point):
		out = append(out,
			Aimed{Name: "cut-answer", Fault: Fault{Kind: KindLinkCut, Target: sim.Postgres, Param: "down"}},
			Aimed{Name: "reset", Fault: Fault{Kind: KindLinkReset, Target: sim.Postgres}},
			Aimed{Name: "terminate", Fault: Fault{Kind: KindTerminateWorker}},
			Aimed{Name: "restart", Fault: Fault{Kind: KindPostgresRestart}})
		if isWrite(spot.Point) {
			out = append(out,
				Aimed{Name: "sql-" + sim.SQLSerializationFailure, Fault: Fault{Kind: KindSQLError, Param: sim.SQLSerializationFailure, N: 1}},
				Aimed{Name: "sql-" + sim.SQLStatementTimeout, Fault: Fault{Kind: KindSQLError, Param: sim.SQLStatementTimeout, N: 1}})
		}
	case strings.HasSuffix(spot.Point, crash.DoneSuffix):
		// After an answer the effect is done and nothing of the worker's
		// knows it: a crash (above), or the database's own crash — which
		// also loses whatever a commit before it did not make durable.
		out = append(out, Aimed{Name: "restart", Fault: Fault{Kind: KindPostgresRestart}})
	default:
		ep, ok := s.call(spot.Point)
		if !ok {
			break
		}
		t := ep.Point()
		out = append(out,
			Aimed{Name: "transient-503", Fault: Fault{Kind: KindProviderTransient, Target: t, Param: "503", N: 1}},
			Aimed{Name: "transient-hang", Fault: Fault{Kind: KindProviderTransient, Target: t, Param: "hang", N: 1}})
		if ep.Mutation {
			out = append(out,
				Aimed{Name: "ambiguous-500", Fault: Fault{Kind: KindProviderAmbiguous, Target: t, Param: "500", N: 1}},
				Aimed{Name: "ambiguous-drop", Fault: Fault{Kind: KindProviderAmbiguous, Target: t, Param: "drop", N: 1}},
				Aimed{Name: "timeout-under", Fault: Fault{Kind: KindProviderTimeoutEdge, Target: t, Param: "under", N: 1}},
				Aimed{Name: "timeout-over", Fault: Fault{Kind: KindProviderTimeoutEdge, Target: t, Param: "over", N: 1}},
				Aimed{Name: "outage", Fault: Fault{Kind: KindProviderOutage, Target: t, Param: "503"}},
				Aimed{Name: "bug", Fault: Fault{Kind: KindDeployBug, Target: t}})
		}
	}
	return out
}

func isSQL(point string) bool { return strings.HasPrefix(point, sqlAny) }

func isWrite(point string) bool {
	for _, v := range []string{"insert", "update", "delete"} {
		if strings.HasPrefix(point, sqlAny+v) {
			return true
		}
	}
	return false
}

// call returns the endpoint a call point names ("cloud:CreateVM").
func (s Space) call(point string) (endpointInfo, bool) {
	service, name, ok := strings.Cut(point, ":")
	if !ok {
		return endpointInfo{}, false
	}
	for _, spec := range s.Specs {
		if spec.Name != service {
			continue
		}
		if e, ok := spec.Endpoint(name); ok {
			return endpointInfo{service: service, name: name, Mutation: e.Mutation}, true
		}
	}
	return endpointInfo{}, false
}

type endpointInfo struct {
	service, name string
	Mutation      bool
}

func (e endpointInfo) Point() string { return Call(e.service, e.name) }
