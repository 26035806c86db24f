package kvxsdk

import (
	"context"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim/check"
)

// Mutant is a bug that only exists with the real SDKs: each is kvxsdk with
// one step written the way the SDK makes easy and wrong. A unit test with
// the SDK's own retries passes for every one of them.
type Mutant struct {
	Name   string          // stable: reports and test names use it
	Breaks check.Invariant // the invariant it breaks
	Doc    string          // the bug, and what exposes it
	// CaughtBy names the named scenario that catches it: one of package
	// scenarios' (written for the same failure in kvx's own mutants) or of
	// Scenarios (written for this one).
	CaughtBy string
	New      func() contract.System
}

// Mutants returns the SDK-only mutants, in a stable order.
func Mutants() []Mutant {
	return []Mutant{
		{
			Name:   "StripeGeneratedKey",
			Breaks: check.InvDoubleBilling,
			Doc: "The PaymentIntent is created without SetIdempotencyKey, relying on the key stripe-go generates " +
				"for every POST. stripe-go keeps it across its own retries (and Go's transport re-sends it on a " +
				"dropped kept-alive connection), so a unit test of one call looks idempotent; but a worker that " +
				"charged and then crashed or lost its commit retries the item with a fresh key: a second charge " +
				"for one event.",
			CaughtBy: "crash-after-charge-before-commit",
			New: func() contract.System {
				return New(Options{Steps: func(p *Provider) kvx.Steps {
					return kvx.Steps{Charge: func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
						return p.ChargeWith(ctx, e, c, "")
					}}
				}})
			},
		},
		{
			Name:   "EC2NilClientToken",
			Breaks: check.InvOrphan,
			Doc: "RunInstances leaves ClientToken nil. aws-sdk-go-v2 fills it with a fresh UUID once per call and " +
				"keeps it across its own retries (a 503, a dropped connection), so the call looks idempotent; " +
				"but the worker's own retry of the item — after a crash between the create and the commit — is " +
				"a new call with a new token: a second running VM for the instance.",
			CaughtBy: "crash-after-vm-before-commit",
			New: func() contract.System {
				return New(Options{Steps: func(p *Provider) kvx.Steps {
					return kvx.Steps{CreateVM: func(ctx context.Context, e *kvx.Env, c kvx.Change) (fakes.VM, error) {
						return p.RunVM(ctx, e, c, nil)
					}}
				}})
			},
		},
		{
			Name:   "KubeAlreadyExistsFails",
			Breaks: check.InvConvergence,
			Doc: "The provision's Create treats AlreadyExists as a failure. client-go does not retry a POST whose " +
				"connection dropped, so when a create took effect and its answer was lost (or the worker crashed " +
				"after it), every retry of the item meets AlreadyExists and fails: the instance never becomes " +
				"ready and its work never completes. The drawn crash family finds it too, when it draws a crash " +
				"after the create.",
			CaughtBy: "kube-create-answer-lost",
			New: func() contract.System {
				return New(Options{Steps: func(p *Provider) kvx.Steps {
					return kvx.Steps{ApplyDeployment: p.CreateDeployment(func(err error) error { return err })}
				}})
			},
		},
	}
}
