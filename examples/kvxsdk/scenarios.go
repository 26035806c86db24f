package kvxsdk

import (
	"context"
	"fmt"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/nemesis"
)

// Scenarios are named regression scenarios for failure modes that come
// with the SDKs, in the shape of package scenarios' own: a team on
// client-go runs them beside scenarios.NamedScenarios (scenarios.RunScenario).
func Scenarios() []scenarios.Named {
	return []scenarios.Named{
		{
			Name: "kube-create-answer-lost",
			Doc: "the Kubernetes API creates a provision's deployment, then drops the connection before the answer; " +
				"client-go does not retry the POST, so the worker's retry meets AlreadyExists and must read it as done",
			Run: func(ctx context.Context, e *sim.Env) error {
				err := nemesis.Inject(ctx, e, nemesis.Fault{Kind: nemesis.KindProviderAmbiguous,
					Target: nemesis.Call(fakes.ServiceKube, fakes.KubeCreate), Param: "drop", N: 1})
				if err != nil {
					return err
				}
				if _, err := e.Serve(ctx, "user", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
					return fmt.Errorf("create i1: %w", err)
				}
				// Reached once the dropped create took effect and a retry of
				// it came in.
				reached := sim.Await(ctx, 10*time.Second, func() bool {
					n, dropped := 0, false
					for _, r := range e.Providers().Kube().Snapshot().Requests {
						if r.Endpoint == fakes.KubeCreate && r.Owner == "i1" {
							n++
							dropped = dropped || r.Fault != "" && r.Effect
						}
					}
					return dropped && n >= 2
				})
				if !reached {
					return fmt.Errorf("%w: no retry of a dropped create", scenarios.ErrNotReached)
				}
				return nil
			},
		},
	}
}
