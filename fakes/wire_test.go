package fakes

// The real-protocol routes, spoken by hand (the SDKs themselves talk to
// the fakes in the nested module examples/kvxsdk, whose tests CI runs
// too).

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

type wireCase struct {
	method, path, ctype, body string
	want                      string // endpoint; "" for none
}

func wireCases() map[string][]wireCase {
	form := "application/x-www-form-urlencoded"
	ec2 := func(body, want string) wireCase { return wireCase{"POST", "/", form, body, want} }
	dep := `{"metadata":{"name":"d1","labels":{"workproof.dev/instance":"i1"}}}`
	item := "/apis/apps/v1/namespaces/default/deployments/d1"
	return map[string][]wireCase{
		ServiceCloud: {
			ec2("Action=RunInstances&Version=2016-11-15&InstanceType=small&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=workproof.dev%2Finstance&TagSpecification.1.Tag.1.Value=i1", CreateVM),
			ec2("Action=DescribeInstances&InstanceId.1=i-1", DescribeVM),
			ec2("Action=DescribeInstances&Filter.1.Name=client-token&Filter.1.Value.1=t1", FindByToken),
			ec2("Action=DescribeInstances&Filter.1.Name=tag%3Aworkproof.dev%2Finstance&Filter.1.Value.1=i1", ListVMs),
			ec2("Action=ModifyInstanceAttribute&InstanceId=i-1&InstanceType.Value=large", ResizeVM),
			ec2("Action=TerminateInstances&InstanceId.1=i-1", TerminateVM),
			ec2("Action=RebootInstances&InstanceId.1=i-1", ""),
		},
		ServiceBilling: {
			{"POST", "/v1/payment_intents", form, "amount=100&currency=usd&customer=c&metadata[owner]=i1&metadata[event]=e", CreateCharge},
			{"POST", "/v1/charges", form, "amount=100&currency=usd&customer=c&metadata[owner]=i1&metadata[event]=e2", CreateCharge},
			{"POST", "/v1/refunds", form, "charge=ch_1", Refund},
			{"GET", "/v1/payment_intents?customer=c", "", "", ListCharges},
			{"GET", "/v1/charges", "", "", ListCharges},
			{"GET", "/v1/payment_intents/search?query=" + url.QueryEscape("metadata['owner']:'i1'"), "", "", ListCharges},
			{"GET", "/v1/payment_intents/pi_1", "", "", GetCharge},
			{"GET", "/v1/charges/ch_1", "", "", GetCharge},
			{"GET", "/v1/customers", "", "", ""},
		},
		ServiceKube: {
			{"GET", "/api", "", "", KubeDiscovery},
			{"GET", "/api/v1", "", "", KubeDiscovery},
			{"GET", "/apis", "", "", KubeDiscovery},
			{"GET", "/apis/apps/v1", "", "", KubeDiscovery},
			{"GET", "/version", "", "", KubeDiscovery},
			{"POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", dep, KubeCreate},
			{"GET", item, "", "", KubeGet},
			{"PUT", item, "application/json", dep, KubeUpdate},
			{"PATCH", item + "?fieldManager=t", "application/apply-patch+yaml", dep, KubeApply},
			{"GET", "/apis/apps/v1/namespaces/default/deployments?labelSelector=a%3Db", "", "", KubeList},
			{"GET", "/apis/apps/v1/deployments", "", "", KubeList},
			{"DELETE", item, "", "", KubeDelete},
			{"GET", "/apis/batch/v1/namespaces/default/jobs", "", "", ""},
		},
	}
}

// onlyReader hides bytes.Reader's type, so http.NewRequest sets no GetBody
// (as aws-sdk-go-v2's requests have none).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// Classify names a real-protocol request before it is sent — from the form
// body for EC2, without consuming it — as the server then records it; and
// every endpoint that lists a wire route has a case here.
func TestClassifyWireRoutes(t *testing.T) {
	w := world(t, Options{})
	for service, cases := range wireCases() {
		spec, _ := SpecNamed(service)
		srv := w.Server(service)
		covered := map[string]bool{}
		for _, k := range cases {
			req, err := http.NewRequest(k.method, srv.URL()+k.path, onlyReader{strings.NewReader(k.body)})
			if err != nil {
				t.Fatal(err)
			}
			if k.body == "" {
				req.Body = http.NoBody
			}
			if k.ctype != "" {
				req.Header.Set("Content-Type", k.ctype)
			}
			e, ok := spec.Classify(req)
			if got := map[bool]string{true: e.Name}[ok]; got != k.want {
				t.Errorf("%s %s %s: Classify = %q, want %q", k.method, k.path, k.body, got, k.want)
			}
			covered[k.want] = true
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			want := k.want
			if want == "" {
				want = "unknown"
			}
			if r := lastReq(t, srv); r.Endpoint != want {
				t.Errorf("%s %s %s: recorded as %q (status %d: %s), want %q", k.method, k.path, k.body, r.Endpoint, r.Status, r.Error, want)
			}
		}
		for _, e := range spec.Endpoints {
			if len(e.Wire) > 0 && !covered[e.Name] {
				t.Errorf("%s: endpoint %s has wire routes and no case", service, e.Name)
			}
		}
	}
}

func send(t *testing.T, method, u, ctype, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func ec2Code(t *testing.T, b []byte) string {
	t.Helper()
	var e ec2ErrorResponse
	if err := xml.Unmarshal(b, &e); err != nil {
		t.Fatalf("not an EC2 error: %s", b)
	}
	return e.Code
}

func TestEC2QueryAPI(t *testing.T) {
	w := world(t, Options{})
	u := w.Cloud().URL() + "/"
	const form = "application/x-www-form-urlencoded"
	run := func(size, token string) (*http.Response, []byte) {
		return send(t, "POST", u, form, url.Values{"Action": {"RunInstances"}, "InstanceType": {size}, "ClientToken": {token},
			"ImageId": {"ami-1"}, "MinCount": {"1"}, "MaxCount": {"1"},
			"TagSpecification.1.ResourceType": {"instance"}, "TagSpecification.1.Tag.1.Key": {OwnerKey},
			"TagSpecification.1.Tag.1.Value": {"i1"}}.Encode(),
			"Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-3/ec2/aws4_request, SignedHeaders=host, Signature=x")
	}
	// A fault answers in EC2's XML, with EC2's code.
	if err := w.AddFault(Fault{Service: ServiceCloud, Endpoint: CreateVM, Mode: ModeFailBefore, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if resp, b := run("small", "t1"); resp.StatusCode != 503 || ec2Code(t, b) != "Unavailable" {
		t.Errorf("fault: %d %s", resp.StatusCode, b)
	}
	resp, b := run("small", "t1")
	var out ec2RunResponse
	if resp.StatusCode != 200 || xml.Unmarshal(b, &out) != nil || len(out.Instances) != 1 {
		t.Fatalf("run: %d %s", resp.StatusCode, b)
	}
	if _, b2 := run("small", "t1"); !bytes.Contains(b2, []byte(out.Instances[0].InstanceID)) {
		t.Errorf("replay answered %s", b2)
	}
	if resp, b := run("large", "t1"); resp.StatusCode != 400 || ec2Code(t, b) != CodeIdempotentParameterMismatch {
		t.Errorf("mismatch: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, "POST", u, form, "Action=RunInstances&InstanceType=small"); resp.StatusCode != 400 || ec2Code(t, b) != "InvalidParameterValue" {
		t.Errorf("no owner tag: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, "POST", u, form, "Action=DescribeInstances&Filter.1.Name=vpc-id&Filter.1.Value.1=v"); resp.StatusCode != 400 {
		t.Errorf("unknown filter: %d %s", resp.StatusCode, b)
	}
	recs := w.Cloud().Snapshot().Requests
	if r := recs[2]; r.Endpoint != CreateVM || !r.Replayed || r.Key != "t1" || r.Owner != "i1" {
		t.Errorf("the replay's record: %+v", r)
	}
	if vm := w.Cloud().Snapshot().VMs[0]; vm.Region != "eu-west-3" || vm.Owner != "i1" || vm.Size != "small" {
		t.Errorf("the VM: %+v", vm)
	}
}

func stripeErrOf(t *testing.T, b []byte) stripeErrorBody {
	t.Helper()
	var e stripeErrorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Type == "" {
		t.Fatalf("not a Stripe error: %s", b)
	}
	return e
}

func TestStripeAPI(t *testing.T) {
	w := world(t, Options{})
	u := w.Billing().URL() + "/v1/payment_intents"
	const form = "application/x-www-form-urlencoded"
	body := func(amount string) string {
		return "amount=" + amount + "&currency=usd&customer=c1&metadata[owner]=i1&metadata[event]=provision:i1:g1"
	}
	resp, b := send(t, "POST", u, form, body("1000"), HeaderIdempotencyKey, "k1")
	var pi stripePaymentIntent
	if resp.StatusCode != 200 || json.Unmarshal(b, &pi) != nil || pi.Object != "payment_intent" || resp.Header.Get(HeaderIdempotencyKey) != "k1" {
		t.Fatalf("create: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	resp, b2 := send(t, "POST", u, form, body("1000"), HeaderIdempotencyKey, "k1")
	if resp.Header.Get(HeaderReplayed) != "true" || !bytes.Equal(b, b2) {
		t.Errorf("replay: %v %s", resp.Header, b2)
	}
	resp, b = send(t, "POST", u, form, body("2000"), HeaderIdempotencyKey, "k1")
	if e := stripeErrOf(t, b); resp.StatusCode != 400 || e.Error.Type != "idempotency_error" {
		t.Errorf("mismatch: %d %s", resp.StatusCode, b)
	}
	resp, b = send(t, "POST", u, form, "amount=10&customer=c1&metadata[owner]=i1&metadata[event]=e")
	if e := stripeErrOf(t, b); resp.StatusCode != 400 || e.Error.Type != "invalid_request_error" {
		t.Errorf("no currency: %d %s", resp.StatusCode, b)
	}
	// While a request with a key is in flight, another with it is a 409.
	hold, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.Billing().beforeEffect = func(*rctx) { once.Do(func() { close(hold); <-release }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("POST", u, strings.NewReader(body("3000")))
		req.Header.Set("Content-Type", form)
		req.Header.Set(HeaderIdempotencyKey, "k2")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-hold
	resp, b = send(t, "POST", u, form, body("3000"), HeaderIdempotencyKey, "k2")
	close(release)
	<-done
	if e := stripeErrOf(t, b); resp.StatusCode != 409 || e.Error.Code != CodeIdempotencyKeyInUse {
		t.Errorf("concurrent: %d %s", resp.StatusCode, b)
	}
	// A fault after the effect is a Stripe api_error, stored and replayed.
	if err := w.AddFault(Fault{Service: ServiceBilling, Endpoint: CreateCharge, Mode: ModeFailAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		resp, b = send(t, "POST", u, form, "amount=5&currency=usd&customer=c1&metadata[owner]=i2&metadata[event]=x", HeaderIdempotencyKey, "k3")
		if e := stripeErrOf(t, b); resp.StatusCode != 500 || e.Error.Type != "api_error" || (i == 1) != (resp.Header.Get(HeaderReplayed) == "true") {
			t.Errorf("fail-after, try %d: %d %v %s", i, resp.StatusCode, resp.Header, b)
		}
	}
	resp, b = send(t, "GET", u+"/search?query="+url.QueryEscape("metadata['event']:'x' AND metadata['owner']:'i2'"), "", "")
	var l stripeList
	if resp.StatusCode != 200 || json.Unmarshal(b, &l) != nil || len(l.Data) != 1 || l.Object != "search_result" {
		t.Errorf("search: %d %s", resp.StatusCode, b)
	}
	if chs := w.Billing().Snapshot().Charges; len(chs) != 3 || chs[0].Currency != "usd" || chs[0].Event != "provision:i1:g1" {
		t.Errorf("charges: %+v", chs)
	}
}

func kubeStatus(t *testing.T, b []byte) (reason string, code int) {
	t.Helper()
	var s struct {
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
		Code   int    `json:"code"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Kind != "Status" {
		t.Fatalf("not a Status: %s", b)
	}
	return s.Reason, s.Code
}

func TestKubernetesAPI(t *testing.T) {
	w := world(t, Options{})
	coll := w.Kube().URL() + "/apis/apps/v1/namespaces/default/deployments"
	obj := func(size, rv string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d1","resourceVersion":"` + rv +
			`","labels":{"workproof.dev/instance":"i1","workproof.dev/size":"` + size + `"}},"spec":{"replicas":2}}`
	}
	if resp, b := send(t, "POST", coll, "application/json", obj("small", "")); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, "POST", coll, "application/json", obj("small", "")); resp.StatusCode != 409 {
		t.Errorf("create again: %d %s", resp.StatusCode, b)
	} else if r, _ := kubeStatus(t, b); r != "AlreadyExists" {
		t.Errorf("create again: reason %q", r)
	}
	// The JSON API sees the same deployment.
	d, err := NewKubeClient(w.Kube().URL(), ClientOptions{}).Get(ctxT(t), "d1")
	if err != nil || d.Owner != "i1" || d.Size != "small" || d.Replicas != 2 {
		t.Fatalf("through the JSON API: %+v, %v", d, err)
	}
	if resp, b := send(t, "PUT", coll+"/d1", "application/json", obj("medium", d.ResourceVersion)); resp.StatusCode != 200 {
		t.Errorf("update: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, "PUT", coll+"/d1", "application/json", obj("large", d.ResourceVersion)); resp.StatusCode != 409 {
		t.Errorf("stale update: %d %s", resp.StatusCode, b)
	} else if r, _ := kubeStatus(t, b); r != "Conflict" {
		t.Errorf("stale update: reason %q", r)
	}
	if resp, b := send(t, "PATCH", coll+"/d1", "application/apply-patch+yaml", obj("large", "")); resp.StatusCode != 400 {
		t.Errorf("apply without fieldManager: %d %s", resp.StatusCode, b)
	}
	if resp, b := send(t, "PATCH", coll+"/d2?fieldManager=t", "application/merge-patch+json", `{"spec":{"replicas":1}}`); resp.StatusCode != 404 {
		t.Errorf("merge patch of an absent deployment: %d %s", resp.StatusCode, b)
	}
	patch := `{"metadata":{"name":"d1","labels":{"workproof.dev/instance":"i1","workproof.dev/size":"large"}}}`
	resp, b := send(t, "PATCH", coll+"/d1?fieldManager=t&force=true", "application/apply-patch+yaml", patch)
	var applied struct {
		Metadata struct{ ResourceVersion string } `json:"metadata"`
		Spec     struct{ Replicas int }           `json:"spec"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &applied) != nil || applied.Spec.Replicas != 2 {
		t.Errorf("apply: %d %s", resp.StatusCode, b)
	}
	if _, b := send(t, "PATCH", coll+"/d1?fieldManager=t", "application/apply-patch+yaml", patch); !bytes.Contains(b, []byte(`"resourceVersion":"`+applied.Metadata.ResourceVersion+`"`)) {
		t.Errorf("a second, identical apply changed the resourceVersion: %s", b)
	}
	if resp, b := send(t, "GET", coll+"?labelSelector="+url.QueryEscape(OwnerKey+"=i1,"+SizeLabel+"!=small"), "", ""); resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"name":"d1"`)) {
		t.Errorf("list: %d %s", resp.StatusCode, b)
	}
	if err := w.AddFault(Fault{Service: ServiceKube, Endpoint: KubeGet, Mode: ModeFailBefore, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, b := send(t, "GET", coll+"/d1", "", ""); func() bool { r, c := kubeStatus(t, b); return r != "ServiceUnavailable" || c != 503 }() {
		t.Errorf("fault: %s", b)
	}
	if resp, b := send(t, "DELETE", coll+"/d1", "application/json", `{"kind":"DeleteOptions","apiVersion":"v1"}`); resp.StatusCode != 200 {
		t.Errorf("delete: %d %s", resp.StatusCode, b)
	}
	if s := w.Kube().Snapshot(); len(s.Deployments) != 0 {
		t.Errorf("after delete: %+v", s.Deployments)
	}
}

// A protobuf body as client-go v0.37 writes it (testdata/kube, made with
// k8s.io/apimachinery's protobuf serializer) decodes to the object's JSON
// form; a field the subset does not know, set, is a 415.
func TestKubernetesProtobuf(t *testing.T) {
	pb, err := os.ReadFile("testdata/kube/deployment.pb")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeKubeProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	d, aerr := kubeModel(obj, "default", "")
	if aerr != nil || d.Name != "kvx-i1" || d.Owner != "i1" || d.Size != "small" || d.Replicas != 1 || obj["kind"] != "Deployment" {
		t.Fatalf("decoded %v: %+v, %v", obj, d, aerr)
	}
	c := asMap(asMap(asMap(asMap(obj["spec"])["template"])["spec"])["containers"].([]any)[0])
	if c["image"] != "kvx:1" || asMap(c["ports"].([]any)[0])["containerPort"] != float64(6379) {
		t.Errorf("container: %v", c)
	}
	w := world(t, Options{})
	coll := w.Kube().URL() + "/apis/apps/v1/namespaces/default/deployments"
	if resp, b := send(t, "POST", coll, "application/vnd.kubernetes.protobuf", string(pb)); resp.StatusCode != 201 {
		t.Errorf("create from protobuf: %d %s", resp.StatusCode, b)
	}
	// The same envelope with an unknown, non-zero field 99 in the raw object.
	raw, _ := protoField(pb[len(kubeProtoMagic):], 2)
	raw = protowire.AppendString(protowire.AppendTag(bytes.Clone(raw), 99, protowire.BytesType), "x")
	env := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), raw)
	bad := append(bytes.Clone(kubeProtoMagic), env...)
	if resp, b := send(t, "POST", coll, "application/vnd.kubernetes.protobuf", string(bad)); resp.StatusCode != 415 {
		t.Errorf("unknown field: %d %s", resp.StatusCode, b)
	}
}

// Fuzzing the real-protocol routes: arbitrary bodies never yield a 5xx or
// a panic, always an answer in the protocol's format, and are recorded.
func fuzzWire(f *testing.F, mk func(testing.TB) *server, method, target, ctype string, valid func([]byte) bool, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	s := mk(f)
	f.Fuzz(func(t *testing.T, body string) {
		before := s.recordCount()
		// Once without a content type (the route's own default applies),
		// once with the protocol's.
		if w := serveRaw(s, method, target, "", body); w.Code >= 500 {
			t.Fatalf("status %d without a content type: %s", w.Code, w.Body)
		}
		r := &http.Request{Method: method, URL: &url.URL{Path: target}, Header: http.Header{"Content-Type": {ctype}},
			Host: "127.0.0.1", Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), RequestURI: target}
		rec := httptest.NewRecorder()
		s.root().ServeHTTP(rec, r)
		if rec.Code >= 500 || rec.Code < 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !valid(rec.Body.Bytes()) {
			t.Fatalf("status %d, body not in the protocol's format: %q", rec.Code, rec.Body)
		}
		if got := s.recordCount(); got != before+2 {
			t.Fatalf("%d requests recorded, want 2", got-before)
		}
	})
}

func validXML(b []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err != nil {
			return err == io.EOF
		}
	}
}

func FuzzEC2Query(f *testing.F) {
	fuzzWire(f, fuzzCloud, "POST", "/", "application/x-www-form-urlencoded", validXML,
		"Action=RunInstances&InstanceType=small&ClientToken=t1&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=workproof.dev%2Finstance&TagSpecification.1.Tag.1.Value=i1",
		"Action=DescribeInstances&Filter.1.Name=client-token&Filter.1.Value.1=t1",
		"Action=TerminateInstances&InstanceId.1=i-00000000000000001", "Action=ModifyInstanceAttribute&InstanceId=x", "%zz")
}

func FuzzStripeCreate(f *testing.F) {
	fuzzWire(f, fuzzBilling, "POST", "/v1/payment_intents", "application/x-www-form-urlencoded", json.Valid,
		"amount=100&currency=usd&customer=c&metadata[owner]=i1&metadata[event]=e", "amount=-1", "%zz")
}

func FuzzKubeCreateWire(f *testing.F) {
	fuzzWire(f, fuzzKube, "POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", json.Valid,
		`{"metadata":{"name":"d2","labels":{"workproof.dev/instance":"i1"}},"spec":{"replicas":1}}`, `{"spec":{"replicas":1.5}}`, `[]`)
}

func FuzzKubeProto(f *testing.F) {
	pb, err := os.ReadFile("testdata/kube/deployment.pb")
	if err != nil {
		f.Fatal(err)
	}
	fuzzWire(f, fuzzKube, "POST", "/apis/apps/v1/namespaces/default/deployments", "application/vnd.kubernetes.protobuf", json.Valid,
		string(pb), "k8s\x00", "k8s\x00\x12\x03\x0a\x01\x00")
}
