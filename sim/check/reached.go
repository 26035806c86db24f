package check

import (
	"slices"

	"github.com/workproof/workproof/sim/history"
)

// Interesting paths a run can show it exercised (Antithesis "sometimes").
const (
	PathBusy             = "busy-answered"               // a change was refused as busy
	PathUnknownRequest   = "unknown-request-outcome"     // a request ended Info (or stayed pending)
	PathReplayed         = "replayed-idempotent-request" // a provider answered from an idempotency record
	PathProviderFault    = "provider-fault"              // a fault-plan rule fired on a provider request
	PathAmbiguousFault   = "ambiguous-provider-fault"    // a request took effect but its answer was lost or an error
	PathWorkerCrash      = "worker-crash"                // a worker incarnation crashed
	PathLeaseLost        = "lease-lost"                  // a worker's database session was cut, and with it its claim
	PathSessionLost      = "session-lost"                // a worker's database session was cut; its claim (a row) outlived it
	PathCrashInsideItem  = "crash-inside-item"           // a crash or lease loss ended an item interval
	PathNetworkFault     = "network-fault"               // a fault was switched on
	PathDeployFix        = "deploy-fix"                  // a bug was deployed and later fixed
	PathParkedWork       = "parked-work"                 // a worker parked an item, or parked work remained
	PathRetriedWork      = "retried-work"                // a worker left an item to retry
	PathItemRedone       = "item-redone"                 // an item was entered by more than one incarnation
	PathResumed          = "resumed-parked-work"         // an operator resume released parked work
	PathRefunded         = "refunded-charge"             // a charge was refunded
	PathVMTerminated     = "vm-terminated"               // a VM was terminated
	PathConcurrentChange = "concurrent-requests"         // two change requests on one instance overlapped in time
)

// Paths lists every path name Reached can report, in report order.
func Paths() []string {
	return []string{
		PathBusy, PathUnknownRequest, PathConcurrentChange, PathReplayed, PathProviderFault,
		PathAmbiguousFault, PathWorkerCrash, PathLeaseLost, PathSessionLost, PathCrashInsideItem, PathNetworkFault,
		PathDeployFix, PathParkedWork, PathRetriedWork, PathItemRedone, PathResumed, PathRefunded,
		PathVMTerminated,
	}
}

// Reached returns the paths the input shows were exercised, in Paths order.
func Reached(in Input) []string { return newView(in).reached() }

func (v *view) reached() []string {
	in := v.in
	hit := map[string]bool{}
	for _, o := range in.History.Ops {
		switch {
		case o.Outcome == history.Fail && o.ErrKind == history.ErrKindBusy:
			hit[PathBusy] = true
		case outcome(o) == history.Info:
			hit[PathUnknownRequest] = true
		case o.Outcome == history.OK && o.Response.Resumed > 0:
			hit[PathResumed] = true
		}
	}
	for _, ops := range v.ops {
		for i, a := range ops {
			for _, b := range ops[i+1:] {
				if a.IsChange() && b.IsChange() && b.Invoke.Before(completeOf(a)) {
					hit[PathConcurrentChange] = true
				}
			}
		}
	}
	for _, r := range in.Ledger.Requests {
		if r.Replayed {
			hit[PathReplayed] = true
		}
		if r.Fault != "" {
			hit[PathProviderFault] = true
		}
		if r.Effect && (r.Status == 0 || r.Status >= 500) {
			hit[PathAmbiguousFault] = true
		}
	}
	bug := false
	for _, e := range in.History.Events {
		switch e.Kind {
		case history.EventCrash:
			hit[PathWorkerCrash] = true
		case history.EventLeaseLost:
			hit[PathLeaseLost] = true
		case history.EventSessionLost:
			hit[PathSessionLost] = true
		case history.EventFaultOn:
			hit[PathNetworkFault] = true
		case history.EventDeployBug:
			bug = true
		case history.EventDeployFix:
			if bug {
				hit[PathDeployFix] = true
			}
		}
	}
	workers := map[string]map[string]bool{}
	for _, iv := range in.History.Intervals {
		switch iv.Outcome {
		case "parked":
			hit[PathParkedWork] = true
		case "retry":
			hit[PathRetriedWork] = true
		case history.IntervalCrashed, history.IntervalLeaseLost:
			hit[PathCrashInsideItem] = true
		}
		if workers[iv.Item] == nil {
			workers[iv.Item] = map[string]bool{}
		}
		workers[iv.Item][iv.Worker] = true
		if len(workers[iv.Item]) > 1 {
			hit[PathItemRedone] = true
		}
	}
	for _, w := range in.State.Work {
		if w.Parked {
			hit[PathParkedWork] = true
		}
	}
	for _, c := range in.Ledger.Charges {
		if c.Refunded {
			hit[PathRefunded] = true
		}
	}
	for _, vm := range in.Ledger.VMs {
		if vm.State == "terminated" {
			hit[PathVMTerminated] = true
		}
	}
	var out []string
	for _, p := range Paths() {
		if hit[p] {
			out = append(out, p)
		}
	}
	return slices.Clip(out)
}
