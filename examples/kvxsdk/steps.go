package kvxsdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/stripe/stripe-go/v85"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/work"
)

// Namespace holds kvx's deployments; Image is what its VMs and pods run;
// FieldManager names kvxsdk's server-side applies.
const (
	Namespace    = "default"
	Image        = "kvx:1"
	FieldManager = "kvxsdk"
)

// Options assembles a system; the zero value is the reference.
type Options struct {
	// Steps override kvxsdk's steps (on top of kvx's), as kvx.Options.Steps
	// does; zero: the reference.
	Steps func(p *Provider) kvx.Steps
	// Clients tune the SDKs; zero: the defaults of ClientOptions.
	Clients ClientOptions
}

// New is kvx with its provider steps on the real SDKs.
func New(opts Options) *kvx.System {
	p := &Provider{opts: opts.Clients}
	steps := p.Steps()
	if opts.Steps != nil {
		over := opts.Steps(p)
		steps = merge(steps, over)
	}
	return kvx.New(kvx.Options{Steps: steps})
}

// merge lays over's non-nil provider steps over base.
func merge(base, over kvx.Steps) kvx.Steps {
	if over.CreateVM != nil {
		base.CreateVM = over.CreateVM
	}
	if over.ResizeVM != nil {
		base.ResizeVM = over.ResizeVM
	}
	if over.ApplyDeployment != nil {
		base.ApplyDeployment = over.ApplyDeployment
	}
	if over.Charge != nil {
		base.Charge = over.Charge
	}
	if over.TerminateVMs != nil {
		base.TerminateVMs = over.TerminateVMs
	}
	if over.DeleteDeployment != nil {
		base.DeleteDeployment = over.DeleteDeployment
	}
	if over.Classify != nil {
		base.Classify = over.Classify
	}
	return base
}

// Provider holds each worker incarnation's SDK clients, built from its Deps
// on its first call and kept for the incarnation's life (the SDK clients
// are safe for concurrent use and cheap to keep). A System serves many
// runs, whose incarnations reuse names ("w1.1"), so clients are keyed by
// the endpoints and HTTP clients they were built from.
type Provider struct {
	opts    ClientOptions
	mu      sync.Mutex
	clients map[clientKey]Clients
}

type clientKey struct {
	worker               string
	cloud, billing, kube contract.Service
}

// Clients returns the SDK clients of e's worker.
func (p *Provider) Clients(e *kvx.Env) (Clients, error) {
	d := e.Deps
	k := clientKey{d.Worker, d.Service(fakes.ServiceCloud), d.Service(fakes.ServiceBilling), d.Service(fakes.ServiceKube)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[k]; ok {
		return c, nil
	}
	c, err := NewClients(d, p.opts)
	if err != nil {
		return Clients{}, err
	}
	if p.clients == nil {
		p.clients = map[clientKey]Clients{}
	}
	p.clients[k] = c
	return c, nil
}

// Steps are kvxsdk's provider steps and error classification.
func (p *Provider) Steps() kvx.Steps {
	return kvx.Steps{
		CreateVM:         p.CreateVM,
		ResizeVM:         p.ResizeVM,
		ApplyDeployment:  p.CreateDeployment(Created),
		Charge:           p.Charge,
		TerminateVMs:     p.TerminateVMs,
		DeleteDeployment: p.DeleteDeployment,
		Classify:         Classify,
	}
}

// call makes one provider call with e's clients (see kvx.Env.Call).
func (p *Provider) call(ctx context.Context, e *kvx.Env, step string, f func(ctx context.Context, c Clients) error) error {
	c, err := p.Clients(e)
	if err != nil {
		return work.Intransient(step+": "+err.Error(), err)
	}
	return e.Call(ctx, step, func(ctx context.Context) error { return f(ctx, c) })
}

// ---- cloud ----------------------------------------------------------------------

// RunInput is the RunInstances of the change's VM, with token as its
// ClientToken (nil: the SDK fills one in, per call).
func RunInput(c kvx.Change, token *string) *ec2.RunInstancesInput {
	return &ec2.RunInstancesInput{
		ImageId:      aws.String(Image),
		InstanceType: types.InstanceType(c.Size), // kvx's sizes are the fake cloud's instance types
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		ClientToken:  token,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{{Key: aws.String(fakes.OwnerKey), Value: aws.String(c.ID)}}}},
	}
}

// CreateVM runs the change's VM with the change's client token, as kvx
// does: the token, never a describe, decides whether to create.
func (p *Provider) CreateVM(ctx context.Context, e *kvx.Env, c kvx.Change) (fakes.VM, error) {
	return p.RunVM(ctx, e, c, aws.String(e.Steps.VMToken(e, c)))
}

// RunVM runs the change's VM with token (nil: the SDK's own).
func (p *Provider) RunVM(ctx context.Context, e *kvx.Env, c kvx.Change, token *string) (fakes.VM, error) {
	var vm fakes.VM
	err := p.call(ctx, e, "create vm", func(ctx context.Context, cl Clients) error {
		out, err := cl.EC2.RunInstances(ctx, RunInput(c, token))
		if err != nil {
			return err
		}
		if len(out.Instances) != 1 {
			return fmt.Errorf("RunInstances answered %d instances", len(out.Instances))
		}
		vm = fakes.VM{ID: aws.ToString(out.Instances[0].InstanceId), Owner: c.ID, Size: string(out.Instances[0].InstanceType)}
		return nil
	})
	if err != nil {
		return fakes.VM{}, err
	}
	if vm.ID == "" {
		return fakes.VM{}, work.Intransient("create vm "+c.ID+": the cloud answered without an instance id", errors.New("no instance id"))
	}
	return vm, nil
}

// ResizeVM sets the VM's instance type. InvalidInstanceID.NotFound is lag
// (retried); IncorrectInstanceState (terminated) parks, as any 4xx does.
func (p *Provider) ResizeVM(ctx context.Context, e *kvx.Env, c kvx.Change, vmID string) error {
	return p.call(ctx, e, "resize vm", func(ctx context.Context, cl Clients) error {
		_, err := cl.EC2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
			InstanceId: aws.String(vmID), InstanceType: &types.AttributeValue{Value: aws.String(c.Size)}})
		return err
	})
}

// TerminateVMs terminates every VM the instance owns — the one on record,
// the one its create's client token names, and every running VM tagged with
// it — in one TerminateInstances.
func (p *Provider) TerminateVMs(ctx context.Context, e *kvx.Env, c kvx.Change, in kvx.Instance) error {
	ids := map[string]bool{}
	var order []string
	add := func(id string) {
		if id != "" && !ids[id] {
			ids[id] = true
			order = append(order, id)
		}
	}
	add(in.VMID)
	create := kvx.Change{Op: contract.OpCreate, ID: in.ID, UID: in.UID, Generation: in.CreatedGen, Customer: in.Customer}
	running := types.Filter{Name: aws.String("instance-state-name"), Values: []string{"running"}}
	for _, q := range []struct {
		step   string
		filter types.Filter
	}{
		{"find vm by token", types.Filter{Name: aws.String("client-token"), Values: []string{e.Steps.VMToken(e, create)}}},
		{"list vms", types.Filter{Name: aws.String("tag:" + fakes.OwnerKey), Values: []string{c.ID}}},
	} {
		err := p.call(ctx, e, q.step, func(ctx context.Context, cl Clients) error {
			out, err := cl.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{q.filter, running}})
			if err != nil {
				return err
			}
			for _, r := range out.Reservations {
				for _, i := range r.Instances {
					add(aws.ToString(i.InstanceId))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(order) == 0 {
		return nil
	}
	return p.call(ctx, e, "terminate vms", func(ctx context.Context, cl Clients) error {
		_, err := cl.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: order})
		return err
	})
}

// ---- kubernetes -------------------------------------------------------------

// Deployment is the instance's deployment as server-side apply writes it.
func Deployment(c kvx.Change) *appsac.DeploymentApplyConfiguration {
	sel := map[string]string{fakes.OwnerKey: c.ID}
	return appsac.Deployment(kvx.DeploymentName(c.ID), Namespace).
		WithLabels(map[string]string{fakes.OwnerKey: c.ID, fakes.SizeLabel: c.Size}).
		WithSpec(appsac.DeploymentSpec().WithReplicas(kvx.Replicas).
			WithSelector(metaac.LabelSelector().WithMatchLabels(sel)).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(sel).
				WithSpec(coreac.PodSpec().WithContainers(coreac.Container().WithName("kvx").WithImage(Image)))))
}

// ApplyDeployment writes the instance's deployment with server-side apply:
// one idempotent request, whoever got there first.
func (p *Provider) ApplyDeployment(ctx context.Context, e *kvx.Env, c kvx.Change) error {
	return p.call(ctx, e, "apply deployment", func(ctx context.Context, cl Clients) error {
		_, err := cl.Kube.AppsV1().Deployments(Namespace).Apply(ctx, Deployment(c), metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		return err
	})
}

// TypedDeployment is Deployment as the typed object a Create sends.
func TypedDeployment(c kvx.Change) *appsv1.Deployment {
	sel := map[string]string{fakes.OwnerKey: c.ID}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: kvx.DeploymentName(c.ID), Namespace: Namespace,
			Labels: map[string]string{fakes.OwnerKey: c.ID, fakes.SizeLabel: c.Size}},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(kvx.Replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "kvx", Image: Image}}},
			},
		},
	}
}

// Created is the reference's answer to AlreadyExists on a provision's
// create: the create happened (this or an earlier attempt of the same
// change made it).
func Created(error) error { return nil }

// CreateDeployment is how the reference writes a provision's deployment, the
// way many teams do: Create, then a server-side apply to the desired state
// (a no-op when the create just made it; it repairs what an earlier attempt
// left). client-go does not retry a POST whose connection dropped, so a
// worker's retry of a create that took effect meets AlreadyExists:
// alreadyExists says what that means (the reference: Created). Nothing else
// can own the name, which is derived from the instance id. Resizes apply.
func (p *Provider) CreateDeployment(alreadyExists func(error) error) func(context.Context, *kvx.Env, kvx.Change) error {
	return func(ctx context.Context, e *kvx.Env, c kvx.Change) error {
		if c.Op != contract.OpCreate {
			return p.ApplyDeployment(ctx, e, c)
		}
		err := p.call(ctx, e, "create deployment", func(ctx context.Context, cl Clients) error {
			_, err := cl.Kube.AppsV1().Deployments(Namespace).Create(ctx, TypedDeployment(c), metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				return alreadyExists(err)
			}
			return err
		})
		if err != nil {
			return err
		}
		return p.ApplyDeployment(ctx, e, c)
	}
}

// ---- billing ----------------------------------------------------------------

// ChargeParams is the PaymentIntent of a billable event, with key as its
// Idempotency-Key ("" leaves it to stripe-go, which makes one up per call).
func ChargeParams(c kvx.Change, event, key string) *stripe.PaymentIntentCreateParams {
	params := &stripe.PaymentIntentCreateParams{
		Amount:   stripe.Int64(kvx.Price(c.Size)),
		Currency: stripe.String(string(stripe.CurrencyUSD)),
		Customer: stripe.String(c.Customer),
	}
	params.AddMetadata(fakes.StripeOwner, c.ID)
	params.AddMetadata(fakes.StripeEvent, event)
	if key != "" {
		params.SetIdempotencyKey(key)
	}
	return params
}

// Charge charges the change's billable event with the event's own
// Idempotency-Key (never stripe-go's generated one, which changes with each
// call). As in kvx, a 5xx or a lost answer is settled from the ledger: the
// billing service replays a stored 500 to every retry with the key, so a
// search by the event's metadata says whether it was paid.
func (p *Provider) Charge(ctx context.Context, e *kvx.Env, c kvx.Change) error {
	return p.ChargeWith(ctx, e, c, e.Steps.ChargeKey(e, c, kvx.BillableEvent(c)))
}

// ChargeWith is Charge with key as the Idempotency-Key.
func (p *Provider) ChargeWith(ctx context.Context, e *kvx.Env, c kvx.Change, key string) error {
	event := kvx.BillableEvent(c)
	if event == "" {
		return nil
	}
	err := p.call(ctx, e, "charge", func(ctx context.Context, cl Clients) error {
		_, err := cl.Stripe.V1PaymentIntents.Create(ctx, ChargeParams(c, event, key))
		return err
	})
	if err == nil || !ambiguous(err) {
		return err
	}
	paid := false
	if lerr := p.call(ctx, e, "find charge", func(ctx context.Context, cl Clients) error {
		q := fmt.Sprintf("metadata['%s']:'%s' AND metadata['%s']:'%s'", fakes.StripeOwner, c.ID, fakes.StripeEvent, event)
		for pi, err := range cl.Stripe.V1PaymentIntents.Search(ctx, &stripe.PaymentIntentSearchParams{SearchParams: stripe.SearchParams{Query: q}}).All(ctx) {
			if err != nil {
				return err
			}
			paid = paid || pi.Metadata[fakes.StripeEvent] == event
		}
		return nil
	}); lerr != nil || !paid {
		return err
	}
	e.Logger.InfoContext(ctx, "kvxsdk: ambiguous charge settled from the billing ledger", "event", event, "err", err)
	return nil
}

// DeleteDeployment deletes the instance's deployment; already gone is done.
func (p *Provider) DeleteDeployment(ctx context.Context, e *kvx.Env, c kvx.Change) error {
	return p.call(ctx, e, "delete deployment", func(ctx context.Context, cl Clients) error {
		err := cl.Kube.AppsV1().Deployments(Namespace).Delete(ctx, kvx.DeploymentName(c.ID), metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// ---- errors -------------------------------------------------------------------

// Status is the HTTP status an SDK error carries; 0 when the call got no
// answer (a dropped connection, a timeout).
func Status(err error) int {
	if se, ok := errors.AsType[*stripe.Error](err); ok {
		return se.HTTPStatusCode
	}
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok {
		return re.HTTPStatusCode()
	}
	if se, ok := errors.AsType[*apierrors.StatusError](err); ok {
		return int(se.ErrStatus.Code)
	}
	return 0
}

// ambiguous reports whether a failed call may have taken effect: a 5xx, or
// no answer at all.
func ambiguous(err error) bool { s := Status(err); return s == 0 || s >= 500 }

// Classify maps an SDK error to what the runner does with the item: a
// rejection no retry can fix (a 4xx other than 404, 408, 409 and 429; on
// EC2, whose client errors are all 400, any code but the lag's
// InvalidInstanceID.NotFound and throttling) parks the item until an
// operator resumes it; anything else is retried with backoff, with the same
// keys.
func Classify(step string, err error) error {
	switch {
	case err == nil:
		return nil
	case work.IsIntransient(err):
		return err
	case intransient(err):
		return work.Intransient(step+": "+err.Error(), err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

func intransient(err error) bool {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		switch ae.ErrorCode() {
		case fakes.CodeInstanceNotFound, "RequestLimitExceeded":
			return false
		}
	}
	switch s := Status(err); s {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return false
	default:
		return s >= 400 && s < 500
	}
}
