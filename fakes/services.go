package fakes

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"slices"
)

// Service names: the providers a World runs, as ledgers, fault plans, crash
// points and a worker's endpoints name them.
const (
	ServiceCloud   = "cloud"
	ServiceBilling = "billing"
	ServiceKube    = "kube"
	ServiceEmail   = "email"
)

// Endpoint names, as Record.Endpoint and Fault.Endpoint name them.
const (
	CreateVM    = "CreateVM"
	DescribeVM  = "DescribeVM"
	ListVMs     = "ListVMs"
	FindByToken = "FindByToken"
	ResizeVM    = "ResizeVM"
	TerminateVM = "TerminateVM"

	CreateCharge = "CreateCharge"
	Refund       = "Refund"
	ListCharges  = "ListCharges"
	GetCharge    = "GetCharge" // Stripe's GET /v1/payment_intents/{id}, /v1/charges/{id}; no JSON-API route

	KubeApply  = "Apply"
	KubeCreate = "Create"
	KubeGet    = "Get"
	KubeUpdate = "Update"
	KubeDelete = "Delete"
	KubeList   = "List"

	SendEmail = "Send"

	// KubeDiscovery is the Kubernetes discovery documents (/api, /apis,
	// /apis/apps/v1, /version) that client-go and controller-runtime read
	// before their first call: a read, so faults can break it too.
	KubeDiscovery = "Discovery"
)

// Names the real-protocol routes read from a request, so that a team's SDK
// calls join its instances the way the harness's own clients do.
const (
	// OwnerKey is the owning instance: the EC2 tag key, the Kubernetes
	// label, and (as "metadata[owner]") the Stripe metadata key.
	OwnerKey = "workproof.dev/instance"
	// SizeLabel is the Kubernetes label a deployment's size is read from
	// (Deployment.Size). On EC2 the size is the InstanceType.
	SizeLabel = "workproof.dev/size"
	// StripeOwner and StripeEvent are the Stripe metadata keys of the
	// owning instance and the billable event (ChargeRequest.Owner, Event).
	StripeOwner = "owner"
	StripeEvent = "event"
)

// Endpoint is one operation of a service, named once: the server routes it,
// the ledger records it, a fault matches it and a crash point is named after
// it. It is reached by its route on the fake's own JSON API (Method,
// Pattern) and by the real provider's protocol (Wire): both are recorded
// under Name, with the same semantics.
type Endpoint struct {
	Service  string `json:"service"`
	Name     string `json:"name"`
	Method   string `json:"method"`
	Pattern  string `json:"pattern"`  // the path, as an http.ServeMux pattern ("/vms/{id}/resize"); "" when only Wire reaches it
	Mutation bool   `json:"mutation"` // it can change the provider's state
	// Wire describes the requests of the real provider's protocol that
	// reach this endpoint ("POST / Action=RunInstances"); zero: none.
	Wire []string `json:"wire,omitempty"`
}

// Point is the crash-point name of a call to the endpoint, "cloud:CreateVM";
// the point after its answer arrived is Point()+":done".
func (e Endpoint) Point() string { return e.Service + ":" + e.Name }

// Spec is one fake provider as the harness sees it: its endpoints, how it is
// started, and what its effects promise. Adding a provider is one server
// file and one entry in Specs.
type Spec struct {
	Name string
	// Doc says what the fake stands for, in a line.
	Doc string
	// AtMostOnce: the service has no idempotency (every request that reaches
	// it acts), so a system must make its calls at most once, after the
	// commit that decided them. The checkers then count its effects per
	// Record.Event, and do not read its requests as evidence of the caller
	// being inside a work item.
	AtMostOnce bool
	// Endpoints are the service's operations, in a fixed order.
	Endpoints []Endpoint

	start func(o Options, so ServerOptions) (Server, error)
	mux   *http.ServeMux // routes a request to its endpoint, as the server does
	wire  []wireRoute
}

// wireRoute is one route of the real provider's protocol. Several endpoints
// may share it (EC2's POST / and its Action; DescribeInstances by id, by
// tag or by client token), so which endpoint a request is for may depend on
// its query or its form body: endpoint decides, from the request and its
// parsed form (nil unless form), and returns "" for none. The server and
// Classify call the same function, so they cannot disagree.
type wireRoute struct {
	method, pattern string
	form            bool // the endpoint depends on the form-encoded body
	endpoint        func(r *http.Request, form url.Values) string
}

func (w wireRoute) key() string { return w.method + " " + w.pattern }

// Specs returns every provider a World runs, in a fixed order.
func Specs() []Spec {
	return []Spec{cloudSpec(), billingSpec(), kubeSpec(), emailSpec()}
}

// SpecNamed returns the provider called name.
func SpecNamed(name string) (Spec, bool) {
	i := slices.IndexFunc(Specs(), func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return Specs()[i], true
}

// ServiceNames lists the providers' names, in Specs order.
func ServiceNames() []string {
	var out []string
	for _, s := range Specs() {
		out = append(out, s.Name)
	}
	return out
}

// Endpoints lists every endpoint of every provider, in Specs order.
func Endpoints() []Endpoint {
	var out []Endpoint
	for _, s := range Specs() {
		out = append(out, s.Endpoints...)
	}
	return out
}

func newSpec(name, doc string, atMostOnce bool, start func(Options, ServerOptions) (Server, error), eps []Endpoint, wire ...wireRoute) Spec {
	s := Spec{Name: name, Doc: doc, AtMostOnce: atMostOnce, start: start, mux: http.NewServeMux(), wire: wire}
	for i := range eps {
		eps[i].Service = name
		if eps[i].Pattern != "" {
			s.mux.Handle(eps[i].Method+" "+eps[i].Pattern, http.NotFoundHandler())
		}
	}
	for _, w := range wire {
		s.mux.Handle(w.key(), http.NotFoundHandler())
	}
	s.Endpoints = eps
	return s
}

func ep(name, method, pattern string, mutation bool, wire ...string) Endpoint {
	return Endpoint{Name: name, Method: method, Pattern: pattern, Mutation: mutation, Wire: wire}
}

// Endpoint returns the endpoint called name.
func (s Spec) Endpoint(name string) (Endpoint, bool) {
	i := slices.IndexFunc(s.Endpoints, func(e Endpoint) bool { return e.Name == name })
	if i < 0 {
		return Endpoint{}, false
	}
	return s.Endpoints[i], true
}

// Classify returns the endpoint a request is for, routed the way the server
// routes it; ok is false for a request no endpoint takes. A client names its
// call with it before sending it, so it reads the method, the path, the
// query and the headers — and, for a protocol that names its operation in
// a form body (EC2's Action), the body through r.GetBody. A request with
// such a body and no GetBody (aws-sdk-go-v2 sets none) is made rewindable
// first: its body is read into memory and replaced by a reader of the same
// bytes, with GetBody set, so the bytes sent are unchanged.
func (s Spec) Classify(r *http.Request) (Endpoint, bool) {
	if s.mux == nil {
		return Endpoint{}, false
	}
	_, pattern := s.mux.Handler(r)
	for _, e := range s.Endpoints {
		if e.Pattern != "" && e.Method+" "+e.Pattern == pattern {
			return e, true
		}
	}
	for _, w := range s.wire {
		if w.key() != pattern {
			continue
		}
		var form url.Values
		if w.form {
			form = peekForm(r)
		}
		return s.Endpoint(w.endpoint(r, form))
	}
	return Endpoint{}, false
}

// peekForm parses a request's form-encoded body without consuming it (see
// Classify); nil when it has none or it cannot be read.
func peekForm(r *http.Request) url.Values {
	if r.Body == nil || r.Body == http.NoBody {
		return url.Values{}
	}
	if r.GetBody == nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, DefaultMaxBody+1))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			return nil
		}
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	rc, err := r.GetBody()
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, DefaultMaxBody+1))
	if err != nil {
		return nil
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil
	}
	return form
}

// route registers each endpoint's handler on the server's mux (an endpoint
// only the real protocol reaches has no Pattern, and no handler here).
func (s Spec) route(srv *server, handlers map[string]func(*rctx)) {
	for _, e := range s.Endpoints {
		if e.Pattern == "" {
			continue
		}
		h := handlers[e.Name]
		if h == nil {
			panic("fakes: " + s.Name + " has no handler for endpoint " + e.Name)
		}
		srv.mux.HandleFunc(e.Method+" "+e.Pattern, srv.handle(e.Name, e.Mutation, h))
	}
}
