package fakes

import (
	"net/http"
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

	KubeApply  = "Apply"
	KubeCreate = "Create"
	KubeGet    = "Get"
	KubeUpdate = "Update"
	KubeDelete = "Delete"
	KubeList   = "List"

	SendEmail = "Send"
)

// Endpoint is one operation of a service, named once: the server routes it,
// the ledger records it, a fault matches it and a crash point is named after
// it.
type Endpoint struct {
	Service  string `json:"service"`
	Name     string `json:"name"`
	Method   string `json:"method"`
	Pattern  string `json:"pattern"`  // the path, as an http.ServeMux pattern ("/vms/{id}/resize")
	Mutation bool   `json:"mutation"` // it can change the provider's state
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
}

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

func newSpec(name, doc string, atMostOnce bool, start func(Options, ServerOptions) (Server, error), eps ...Endpoint) Spec {
	s := Spec{Name: name, Doc: doc, AtMostOnce: atMostOnce, start: start, mux: http.NewServeMux()}
	for i := range eps {
		eps[i].Service = name
		s.mux.Handle(eps[i].Method+" "+eps[i].Pattern, http.NotFoundHandler())
	}
	s.Endpoints = eps
	return s
}

func ep(name, method, pattern string, mutation bool) Endpoint {
	return Endpoint{Name: name, Method: method, Pattern: pattern, Mutation: mutation}
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
// routes it; ok is false for a request no endpoint takes. It reads only the
// method and the path, so a client can name its call before sending it.
func (s Spec) Classify(r *http.Request) (Endpoint, bool) {
	if s.mux == nil {
		return Endpoint{}, false
	}
	_, pattern := s.mux.Handler(r)
	for _, e := range s.Endpoints {
		if e.Method+" "+e.Pattern == pattern {
			return e, true
		}
	}
	return Endpoint{}, false
}

// route registers each endpoint's handler on the server's mux.
func (s Spec) route(srv *server, handlers map[string]func(*rctx)) {
	for _, e := range s.Endpoints {
		h := handlers[e.Name]
		if h == nil {
			panic("fakes: " + s.Name + " has no handler for endpoint " + e.Name)
		}
		srv.mux.HandleFunc(e.Method+" "+e.Pattern, srv.handle(e.Name, e.Mutation, h))
	}
}
