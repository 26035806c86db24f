package kvxsdk_test

// Each real SDK against its fake: the calls a worker makes, an idempotent
// replay, a fault, and the crash-point name the harness gives each request
// before it is sent (Spec.Classify) agreeing with the endpoint the fake
// records it under.

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/examples/kvxsdk"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/fakes/fakestest"
)

// naming is a transport that names every request the way the harness's
// crash points do (Spec.Classify, before it is sent) and remembers the
// names in order.
type naming struct {
	spec  fakes.Spec
	base  http.RoundTripper
	mu    sync.Mutex
	names []string
	types map[string]bool // the Content-Types sent
}

func (n *naming) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	name := "?" + r.Method + " " + r.URL.Path
	if e, ok := n.spec.Classify(r); ok {
		name = e.Name
	}
	n.mu.Lock()
	n.names = append(n.names, name)
	if n.types == nil {
		n.types = map[string]bool{}
	}
	n.types[r.Header.Get("Content-Type")] = true
	n.mu.Unlock()
	return n.base.RoundTrip(r)
}

// sdkEnv is a World and SDK clients built from Deps as a worker gets them.
type sdkEnv struct {
	w       *fakes.World
	clients kvxsdk.Clients
	names   map[string]*naming
}

func newSDKEnv(t *testing.T, opts fakes.Options, co kvxsdk.ClientOptions) *sdkEnv {
	t.Helper()
	w := fakestest.World(t, opts)
	env := &sdkEnv{w: w, names: map[string]*naming{}}
	deps := contract.Deps{Worker: "sdk-test", Services: map[string]contract.Service{}}
	for _, spec := range fakes.Specs() {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		n := &naming{spec: spec, base: tr}
		env.names[spec.Name] = n
		deps.Services[spec.Name] = contract.Service{URL: w.Server(spec.Name).URL(), HTTPClient: &http.Client{Transport: n}}
	}
	c, err := kvxsdk.NewClients(deps, co)
	if err != nil {
		t.Fatal(err)
	}
	env.clients = c
	return env
}

// checkNames requires that every request the service recorded was named,
// before it was sent, by the endpoint it was recorded under.
func (e *sdkEnv) checkNames(t *testing.T, service string) {
	t.Helper()
	var recorded []string
	for _, r := range e.w.Server(service).Snapshot().Requests {
		recorded = append(recorded, r.Endpoint)
	}
	n := e.names[service]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Equal(recorded, n.names) {
		t.Errorf("%s: named before sending %v, recorded %v", service, n.names, recorded)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func runInput(owner, size string, token *string) *ec2.RunInstancesInput {
	return &ec2.RunInstancesInput{
		ImageId: aws.String("ami-kvx"), InstanceType: types.InstanceType(size),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ClientToken: token,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{{Key: aws.String(fakes.OwnerKey), Value: aws.String(owner)}}}},
	}
}

func apiCode(err error) string {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		return ae.ErrorCode()
	}
	return ""
}

func TestEC2AgainstTheFakeCloud(t *testing.T) {
	e := newSDKEnv(t, fakes.Options{}, kvxsdk.ClientOptions{})
	ctx, c := ctxT(t), e.clients.EC2

	run, err := c.RunInstances(ctx, runInput("i1", "small", aws.String("tok-1")))
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	if run.Instances[0].InstanceType != "small" || aws.ToString(run.Instances[0].ClientToken) != "tok-1" {
		t.Errorf("RunInstances answered %+v", run.Instances[0])
	}
	// The same token and parameters: the same instance, no new one.
	again, err := c.RunInstances(ctx, runInput("i1", "small", aws.String("tok-1")))
	if err != nil || aws.ToString(again.Instances[0].InstanceId) != id {
		t.Fatalf("replay: %v, %v", again, err)
	}
	// The same token, other parameters.
	_, err = c.RunInstances(ctx, runInput("i1", "large", aws.String("tok-1")))
	if apiCode(err) != "IdempotentParameterMismatch" {
		t.Errorf("reuse with other parameters: want IdempotentParameterMismatch, got %v", err)
	}
	// A 503 before the effect: the SDK's own retry succeeds.
	if err := e.w.AddFault(fakes.Fault{Service: fakes.ServiceCloud, Endpoint: fakes.CreateVM, Mode: fakes.ModeFailBefore, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunInstances(ctx, runInput("i2", "medium", aws.String("tok-2"))); err != nil {
		t.Fatalf("after one 503: %v", err)
	}
	// Left nil, ClientToken is filled by the SDK once per call and kept
	// across its own retries: the dropped answer's retry is a replay.
	if err := e.w.AddFault(fakes.Fault{Service: fakes.ServiceCloud, Endpoint: fakes.CreateVM, Mode: fakes.ModeFailAfter, Drop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunInstances(ctx, runInput("i3", "small", nil)); err != nil {
		t.Fatalf("nil token, dropped answer: %v", err)
	}
	var i3 []fakes.Record
	for _, r := range e.w.Cloud().Snapshot().Requests {
		if r.Owner == "i3" && r.Endpoint == fakes.CreateVM {
			i3 = append(i3, r)
		}
	}
	if len(i3) != 2 || i3[0].Key == "" || i3[0].Key != i3[1].Key || !i3[1].Replayed {
		t.Errorf("nil ClientToken across the SDK's retry: %+v", i3)
	}

	// Describe by tag, by token and by id; resize; terminate.
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + fakes.OwnerKey), Values: []string{"i1"}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil || len(out.Reservations) != 1 || aws.ToString(out.Reservations[0].Instances[0].InstanceId) != id {
		t.Fatalf("describe by owner tag: %+v, %v", out, err)
	}
	out, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("client-token"), Values: []string{"tok-1"}}}})
	if err != nil || len(out.Reservations) != 1 {
		t.Fatalf("describe by client token: %+v, %v", out, err)
	}
	if _, err := c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(id),
		InstanceType: &types.AttributeValue{Value: aws.String("large")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	out, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Reservations[0].Instances[0]; got.InstanceType != "large" || got.State.Name != types.InstanceStateNameTerminated {
		t.Errorf("after resize and terminate: %+v", got)
	}
	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(id),
		InstanceType: &types.AttributeValue{Value: aws.String("small")}})
	if apiCode(err) != fakes.CodeIncorrectInstanceState {
		t.Errorf("resize of a terminated instance: want IncorrectInstanceState, got %v", err)
	}
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-nope"}})
	if apiCode(err) != fakes.CodeInstanceNotFound {
		t.Errorf("describe of an unknown id: want %s, got %v", fakes.CodeInstanceNotFound, err)
	}
	var vm fakes.VM
	for _, v := range e.w.Cloud().Snapshot().VMs {
		if v.ID == id {
			vm = v
		}
	}
	if vm.Owner != "i1" || vm.Region != kvxsdk.Region || vm.Size != "large" {
		t.Errorf("the ledger's VM: %+v", vm)
	}
	e.checkNames(t, fakes.ServiceCloud)
}

func TestEC2ReadAfterWriteLag(t *testing.T) {
	e := newSDKEnv(t, fakes.Options{Lag: time.Hour}, kvxsdk.ClientOptions{})
	ctx, c := ctxT(t), e.clients.EC2
	run, err := c.RunInstances(ctx, runInput("i1", "small", aws.String("tok")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(run.Instances[0].InstanceId)}})
	if apiCode(err) != fakes.CodeInstanceNotFound {
		t.Errorf("describe of a new instance under lag: want %s, got %v", fakes.CodeInstanceNotFound, err)
	}
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + fakes.OwnerKey), Values: []string{"i1"}}}})
	if err != nil || len(out.Reservations) != 0 {
		t.Errorf("list under lag: %+v, %v", out, err)
	}
}

func piParams(owner, event string, amount int64, key string) *stripe.PaymentIntentCreateParams {
	p := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(amount), Currency: stripe.String("usd"), Customer: stripe.String("cus_" + owner)}
	p.AddMetadata(fakes.StripeOwner, owner)
	p.AddMetadata(fakes.StripeEvent, event)
	if key != "" {
		p.SetIdempotencyKey(key)
	}
	return p
}

func stripeErr(err error) *stripe.Error {
	se, _ := errors.AsType[*stripe.Error](err)
	return se
}

func TestStripeAgainstTheFakeBilling(t *testing.T) {
	e := newSDKEnv(t, fakes.Options{}, kvxsdk.ClientOptions{})
	ctx, pis := ctxT(t), e.clients.Stripe.V1PaymentIntents

	pi, err := pis.Create(ctx, piParams("i1", "provision:i1:g1", 1000, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	if pi.Status != stripe.PaymentIntentStatusSucceeded || pi.Metadata[fakes.StripeEvent] != "provision:i1:g1" ||
		pi.LastResponse.IdempotencyKey != "k1" || pi.LastResponse.Header.Get(fakes.HeaderReplayed) != "" {
		t.Errorf("create: %+v", pi)
	}
	// The same key: the stored answer, marked as a replay.
	again, err := pis.Create(ctx, piParams("i1", "provision:i1:g1", 1000, "k1"))
	if err != nil || again.ID != pi.ID || again.LastResponse.Header.Get(fakes.HeaderReplayed) != "true" {
		t.Fatalf("replay: %+v, %v", again, err)
	}
	// The same key, another amount.
	_, err = pis.Create(ctx, piParams("i1", "provision:i1:g1", 2000, "k1"))
	if se := stripeErr(err); se == nil || se.Type != stripe.ErrorTypeIdempotency || se.HTTPStatusCode != 400 {
		t.Errorf("reuse with other parameters: want a 400 idempotency_error, got %v", err)
	}
	// No key: stripe-go makes one up, which the fake echoes.
	gen, err := pis.Create(ctx, piParams("i2", "provision:i2:g2", 1000, ""))
	if err != nil || gen.LastResponse.IdempotencyKey == "" {
		t.Errorf("generated key: %+v, %v", gen, err)
	}
	// A 500 after the charge is stored under the key and replayed: the
	// retry does not charge again, and does not succeed either.
	if err := e.w.AddFault(fakes.Fault{Service: fakes.ServiceBilling, Endpoint: fakes.CreateCharge, Mode: fakes.ModeFailAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err = pis.Create(ctx, piParams("i3", "provision:i3:g3", 1000, "k3"))
		if se := stripeErr(err); se == nil || se.Type != stripe.ErrorTypeAPI || se.HTTPStatusCode != 500 {
			t.Errorf("after a fail-after fault: want a 500 api_error, got %v", err)
		}
	}
	var found []string
	for p, err := range pis.Search(ctx, &stripe.PaymentIntentSearchParams{SearchParams: stripe.SearchParams{
		Query: "metadata['" + fakes.StripeEvent + "']:'provision:i3:g3'"}}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, p.ID)
	}
	if len(found) != 1 {
		t.Errorf("search for the charge the 500 hid: %v", found)
	}
	// Refund by payment intent; twice is an error.
	ref, err := e.clients.Stripe.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
	if err != nil || ref.Status != stripe.RefundStatusSucceeded {
		t.Fatalf("refund: %+v, %v", ref, err)
	}
	_, err = e.clients.Stripe.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
	if se := stripeErr(err); se == nil || string(se.Code) != fakes.CodeChargeAlreadyRefunded {
		t.Errorf("second refund: %v", err)
	}
	n := 0
	for _, err := range pis.List(ctx, &stripe.PaymentIntentListParams{Customer: stripe.String("cus_i1")}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("list by customer: %d payment intents, want 1", n)
	}
	snap := e.w.Billing().Snapshot()
	if len(snap.Charges) != 3 || !snap.Charges[0].Refunded || snap.Charges[0].Owner != "i1" || snap.Charges[0].Event != "provision:i1:g1" {
		t.Errorf("the ledger's charges: %+v", snap.Charges)
	}
	e.checkNames(t, fakes.ServiceBilling)
}

// Go's http.Transport re-sends a POST that carries an Idempotency-Key on
// its own when a kept-alive connection drops: with stripe-go's retries off,
// the fake still sees the request twice, and the second is a replay.
func TestStripeTransportResendIsAReplay(t *testing.T) {
	e := newSDKEnv(t, fakes.Options{}, kvxsdk.ClientOptions{})
	ctx, pis := ctxT(t), e.clients.Stripe.V1PaymentIntents
	// Warm a kept-alive connection, then drop the next answer after the
	// effect.
	if _, err := pis.Create(ctx, piParams("i0", "provision:i0:g0", 1000, "k0")); err != nil {
		t.Fatal(err)
	}
	if err := e.w.AddFault(fakes.Fault{Service: fakes.ServiceBilling, Endpoint: fakes.CreateCharge, Mode: fakes.ModeFailAfter, Drop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := pis.Create(ctx, piParams("i1", "provision:i1:g1", 1000, "k1"))
	var recs []fakes.Record
	for _, r := range e.w.Billing().Snapshot().Requests {
		if r.Key == "k1" {
			recs = append(recs, r)
		}
	}
	switch {
	case err == nil:
		// The transport re-sent it: one charge, one replay.
		if len(recs) != 2 || !recs[0].Effect || !recs[1].Replayed {
			t.Errorf("a re-sent request: %+v", recs)
		}
	default:
		// A fresh connection is not re-sent: the caller sees the drop.
		if len(recs) != 1 {
			t.Errorf("a dropped answer on a fresh connection: %+v (err %v)", recs, err)
		}
	}
	if n := len(e.w.Billing().Snapshot().Charges); n != 2 {
		t.Errorf("%d charges, want 2", n)
	}
}

func deployment(name, owner, size string) *appsv1.Deployment {
	labels := map[string]string{fakes.OwnerKey: owner, fakes.SizeLabel: size}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{fakes.OwnerKey: owner}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{fakes.OwnerKey: owner}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kvx", Image: "kvx:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 6379}}}}},
			},
		},
	}
}

func TestClientGoAgainstTheFakeKubernetes(t *testing.T) {
	for _, ct := range []string{"", "application/json"} {
		name := map[string]string{"": "protobuf", "application/json": "json"}[ct]
		t.Run(name, func(t *testing.T) {
			e := newSDKEnv(t, fakes.Options{}, kvxsdk.ClientOptions{})
			kc := e.clients.Kube
			if ct != "" {
				k, err := kubernetes.NewForConfigAndClient(&rest.Config{Host: e.w.Kube().URL(), ContentConfig: rest.ContentConfig{ContentType: ct}, QPS: -1},
					&http.Client{Transport: e.names[fakes.ServiceKube]})
				if err != nil {
					t.Fatal(err)
				}
				kc = k
			}
			testClientGo(t, e, kc)
			want := ct
			if want == "" {
				want = "application/vnd.kubernetes.protobuf" // client-go's default
			}
			if n := e.names[fakes.ServiceKube]; !n.types[want] {
				t.Errorf("no request was sent as %s: %v", want, n.types)
			}
		})
	}
}

func testClientGo(t *testing.T, e *sdkEnv, kc kubernetes.Interface) {
	ctx, deps := ctxT(t), kc.AppsV1().Deployments("default")
	res, err := kc.Discovery().ServerResourcesForGroupVersion("apps/v1")
	if err != nil || len(res.APIResources) != 1 || res.APIResources[0].Kind != "Deployment" {
		t.Fatalf("discovery: %+v, %v", res, err)
	}
	created, err := deps.Create(ctx, deployment("kvx-i1", "i1", "small"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.ResourceVersion == "" || created.Spec.Template.Spec.Containers[0].Image != "kvx:1" {
		t.Errorf("create answered %+v", created)
	}
	_, err = deps.Create(ctx, deployment("kvx-i1", "i1", "small"), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create: want AlreadyExists, got %v", err)
	}
	got, err := deps.Get(ctx, "kvx-i1", metav1.GetOptions{})
	if err != nil || got.Labels[fakes.SizeLabel] != "small" || got.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort != 6379 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	// An update with the current resourceVersion, then one with the stale.
	stale := got.DeepCopy()
	got.Labels[fakes.SizeLabel] = "medium"
	if _, err := deps.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale.Labels[fakes.SizeLabel] = "large"
	if _, err := deps.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("stale update: want Conflict, got %v", err)
	}
	// Server-side apply, twice: the second changes nothing.
	ac := appsac.Deployment("kvx-i1", "default").
		WithLabels(map[string]string{fakes.OwnerKey: "i1", fakes.SizeLabel: "large"}).
		WithSpec(appsac.DeploymentSpec().WithReplicas(1).
			WithSelector(metaac.LabelSelector().WithMatchLabels(map[string]string{fakes.OwnerKey: "i1"})).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(map[string]string{fakes.OwnerKey: "i1"}).
				WithSpec(coreac.PodSpec().WithContainers(coreac.Container().WithName("kvx").WithImage("kvx:2")))))
	a1, err := deps.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "kvxsdk", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := deps.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "kvxsdk", Force: true})
	if err != nil || a2.ResourceVersion != a1.ResourceVersion || a1.Labels[fakes.SizeLabel] != "large" {
		t.Errorf("apply twice: %v then %v, %v", a1.ResourceVersion, a2.ResourceVersion, err)
	}
	l, err := deps.List(ctx, metav1.ListOptions{LabelSelector: fakes.OwnerKey + "=i1"})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("list by owner: %+v, %v", l, err)
	}
	snap := e.w.Kube().Snapshot()
	if len(snap.Deployments) != 1 || snap.Deployments[0].Owner != "i1" || snap.Deployments[0].Size != "large" {
		t.Errorf("the ledger's deployments: %+v", snap.Deployments)
	}
	if err := deps.Delete(ctx, "kvx-i1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := deps.Get(ctx, "kvx-i1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: want NotFound, got %v", err)
	}
	// A create whose answer is dropped is not retried by client-go; the
	// object exists, so the worker's retry meets AlreadyExists.
	if err := e.w.AddFault(fakes.Fault{Service: fakes.ServiceKube, Endpoint: fakes.KubeCreate, Mode: fakes.ModeFailAfter, Drop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := deps.Create(ctx, deployment("kvx-i2", "i2", "small"), metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
		t.Errorf("create with a dropped answer: want a transport error, got %v", err)
	}
	if _, err := deps.Create(ctx, deployment("kvx-i2", "i2", "small"), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("the retry: want AlreadyExists, got %v", err)
	}
	e.checkNames(t, fakes.ServiceKube)
}
