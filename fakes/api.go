package fakes

// This file holds the types a worker and the checkers share with the fakes:
// the clients' request and response types and the ledger.

import (
	"encoding/json"
	"net/http"
	"time"
)

// ---- shared -------------------------------------------------------------

// Clock is the fakes' time source: effect times, in-flight intervals and
// idempotency TTLs. The harness passes one clock to everything it records.
type Clock interface {
	Now() time.Time
}

// ClientOptions configures any of the four clients.
type ClientOptions struct {
	// HTTPClient sends the requests; zero: a client with Timeout. The harness
	// passes one whose Transport is a crash point.
	HTTPClient *http.Client
	// Caller identifies the worker incarnation in the ledger (header
	// X-Workproof-Caller); zero: "anonymous".
	Caller string
	// Timeout bounds each call when ctx has no earlier deadline; zero: 2s.
	Timeout time.Duration
}

// ---- cloud (EC2-like) ---------------------------------------------------

// VM is a virtual machine in the fake cloud.
type VM struct {
	ID           string    `json:"id"`
	Owner        string    `json:"owner"` // owning instance (a tag)
	Size         string    `json:"size"`
	Region       string    `json:"region"`
	ClientToken  string    `json:"client_token,omitempty"`
	State        string    `json:"state"` // "running" or "terminated"
	CreatedAt    time.Time `json:"created_at"`
	TerminatedAt time.Time `json:"terminated_at,omitzero"`
}

// CreateVMRequest asks for a VM. ClientToken makes the call idempotent.
type CreateVMRequest struct {
	Owner       string `json:"owner"`
	Size        string `json:"size"`
	Region      string `json:"region"`
	ClientToken string `json:"client_token,omitempty"`
}

// CloudClient calls the fake cloud.
type CloudClient struct{ c *client }

func NewCloudClient(baseURL string, opts ClientOptions) *CloudClient {
	return &CloudClient{c: newClient("cloud", baseURL, opts)}
}

// ---- billing (Stripe-like) ----------------------------------------------

// ChargeRequest asks for a charge. IdempotencyKey (header Idempotency-Key)
// makes it idempotent; Event names the billable event it pays for.
type ChargeRequest struct {
	Customer       string `json:"customer"`
	Owner          string `json:"owner"` // instance (metadata)
	Amount         int64  `json:"amount"`
	Event          string `json:"event"` // billable event (metadata)
	IdempotencyKey string `json:"-"`
}

// Charge is one charge in the fake billing service.
type Charge struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	Owner     string    `json:"owner"`
	Amount    int64     `json:"amount"`
	Event     string    `json:"event"`
	Currency  string    `json:"currency,omitempty"` // set by Stripe's API; the JSON API has none
	Refunded  bool      `json:"refunded"`
	CreatedAt time.Time `json:"created_at"`
}

// BillingClient calls the fake billing service.
type BillingClient struct{ c *client }

func NewBillingClient(baseURL string, opts ClientOptions) *BillingClient {
	return &BillingClient{c: newClient("billing", baseURL, opts)}
}

// ---- kubernetes ---------------------------------------------------------

// Deployment is a Kubernetes deployment in the fake API server.
type Deployment struct {
	// Namespace is "" for "default" (the only one the JSON API addresses).
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name"`
	Owner           string `json:"owner"` // label workproof.dev/instance
	Size            string `json:"size"`
	Replicas        int    `json:"replicas"`
	ResourceVersion string `json:"resource_version,omitempty"`
}

// KubeClient calls the fake Kubernetes API server.
type KubeClient struct{ c *client }

func NewKubeClient(baseURL string, opts ClientOptions) *KubeClient {
	return &KubeClient{c: newClient("kube", baseURL, opts)}
}

// ---- email --------------------------------------------------------------

// EmailRequest is one email. The service has no idempotency: every call sends.
type EmailRequest struct {
	To      string `json:"to"`
	Owner   string `json:"owner"` // instance
	Event   string `json:"event"` // what the email is about, e.g. "welcome:i1"
	Subject string `json:"subject"`
}

// Email is one sent email.
type Email struct {
	ID     string    `json:"id"`
	To     string    `json:"to"`
	Owner  string    `json:"owner"`
	Event  string    `json:"event"`
	SentAt time.Time `json:"sent_at"`
}

// EmailClient calls the fake email service.
type EmailClient struct{ c *client }

func NewEmailClient(baseURL string, opts ClientOptions) *EmailClient {
	return &EmailClient{c: newClient("email", baseURL, opts)}
}

// ---- ledger -------------------------------------------------------------

// Snapshot is a fake's ledger (or a World's, merged) as plain data: the
// ground truth about the outside world that the invariant checkers read.
type Snapshot struct {
	// AtMostOnce names the services without idempotency (Spec.AtMostOnce),
	// so a checker reading the snapshot knows which effects must not repeat.
	AtMostOnce []string `json:"at_most_once,omitempty"`
	// VMs, Charges and Emails are every one ever made (terminated VMs and
	// refunded charges too) but those of an owner's ended lifetimes before
	// its latest ended one, once World.Forget dropped them.
	VMs         []VM         `json:"vms,omitempty"`
	Deployments []Deployment `json:"deployments,omitempty"` // live deployments
	Charges     []Charge     `json:"charges,omitempty"`
	Emails      []Email      `json:"emails,omitempty"`
	Requests    []Record     `json:"requests,omitempty"` // every request, in arrival order
}

// Record is one request a fake received, with what it did.
type Record struct {
	Seq      int64           `json:"seq"`      // arrival order within the fake
	Service  string          `json:"service"`  // a Spec's name: "cloud", "billing", "kube", "email"
	Endpoint string          `json:"endpoint"` // e.g. "CreateVM", "CreateCharge", "Apply"
	Caller   string          `json:"caller"`
	Key      string          `json:"key,omitempty"`   // idempotency key or client token
	Owner    string          `json:"owner,omitempty"` // owning instance, when the request names one
	Event    string          `json:"event,omitempty"` // the event a charge pays for or an email is about
	Mutation bool            `json:"mutation"`        // the endpoint can change state
	Params   json.RawMessage `json:"params,omitempty"`
	Status   int             `json:"status"`          // HTTP status sent; 0 when the connection was dropped
	Effect   bool            `json:"effect"`          // state changed (a replay or a fault-before has none)
	Replayed bool            `json:"replayed"`        // answered from an idempotency record
	Fault    string          `json:"fault,omitempty"` // the fault-plan mode that fired, if any
	Error    string          `json:"error,omitempty"`
	Start    time.Time       `json:"start"` // request arrived
	End      time.Time       `json:"end"`   // response sent (or dropped)
}
