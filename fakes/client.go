package fakes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Header names shared by the clients and the servers.
const (
	HeaderCaller         = "X-Workproof-Caller"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed" // "true" on a billing replay, as Stripe does
	HeaderSeq            = "X-Workproof-Seq"     // the ledger sequence number of the request
)

const (
	defaultClientTimeout = 2 * time.Second
	maxResponseBody      = 32 << 20
)

// client is the transport shared by the four service clients.
type client struct {
	service string
	base    string
	hc      *http.Client
	caller  string
	timeout time.Duration
}

func newClient(service, baseURL string, opts ClientOptions) *client {
	c := &client{
		service: service,
		base:    strings.TrimRight(baseURL, "/"),
		hc:      opts.HTTPClient,
		caller:  opts.Caller,
		timeout: opts.Timeout,
	}
	if c.caller == "" {
		c.caller = "anonymous"
	}
	if c.timeout <= 0 {
		c.timeout = defaultClientTimeout
	}
	if c.hc == nil {
		// A transport per client, not http.DefaultTransport: its idle pool of
		// 2 per host would churn connections under concurrent workers.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		t.Proxy = nil
		c.hc = &http.Client{Transport: t}
	}
	return c
}

// call is one request: method and path, an optional idempotency key, an
// optional JSON body, and where to decode a 2xx answer.
type call struct {
	endpoint string
	method   string
	path     string
	query    url.Values
	key      string
	in       any
	out      any
}

func (c *client) do(ctx context.Context, k call) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var body io.Reader
	if k.in != nil {
		b, err := json.Marshal(k.in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", c.service, k.endpoint, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + k.path
	if len(k.query) > 0 {
		u += "?" + k.query.Encode()
	}
	// Whether the request was fully written decides whether a failure is
	// ambiguous (the service may have acted) or certainly had no effect.
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				sent.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, k.method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: build request: %w", c.service, k.endpoint, err)
	}
	req.Header.Set(HeaderCaller, c.caller)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if k.key != "" {
		req.Header.Set(HeaderIdempotencyKey, k.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportErr(parent, k.endpoint, sent.Load(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		// The status line arrived, so the request was processed: the answer
		// was lost on the way back.
		return c.transportErr(parent, k.endpoint, true, fmt.Errorf("read response (status %d): %w", resp.StatusCode, err))
	}
	if resp.StatusCode >= 300 {
		e := &Error{Service: c.service, Endpoint: k.endpoint, Status: resp.StatusCode}
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		} else {
			e.Code = http.StatusText(resp.StatusCode)
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	if k.out != nil {
		if err := json.Unmarshal(b, k.out); err != nil {
			return &TransportError{Service: c.service, Endpoint: k.endpoint, Sent: true,
				Err: fmt.Errorf("decode response: %w", err)}
		}
	}
	return nil
}

func (c *client) transportErr(parent context.Context, endpoint string, sent bool, err error) error {
	te := &TransportError{Service: c.service, Endpoint: endpoint, Sent: sent, Err: err}
	switch {
	case parent.Err() != nil:
		te.Canceled = true
		te.Err = fmt.Errorf("%w (caller: %w)", err, context.Cause(parent))
	case errors.Is(err, context.DeadlineExceeded):
		te.Timeout = true
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			te.Timeout = true
		}
	}
	return te
}

// errorBody is the JSON every fake answers a 4xx/5xx with.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func esc(s string) string { return url.PathEscape(s) }

// ---- cloud ----------------------------------------------------------------

type resizeBody struct {
	Size string `json:"size"`
}

type vmList struct {
	VMs []VM `json:"vms"`
}

// CreateVM runs a VM. With a ClientToken the call is idempotent: the same
// token and parameters return the same VM (even once terminated, while the
// token is bound); other parameters fail with IsMismatch.
func (c *CloudClient) CreateVM(ctx context.Context, r CreateVMRequest) (VM, error) {
	var vm VM
	err := c.c.do(ctx, call{endpoint: "CreateVM", method: http.MethodPost, path: "/vms", in: r, out: &vm})
	return vm, err
}

// DescribeVM returns a VM; IsNotFound when absent or still invisible (lag).
func (c *CloudClient) DescribeVM(ctx context.Context, id string) (VM, error) {
	var vm VM
	err := c.c.do(ctx, call{endpoint: "DescribeVM", method: http.MethodGet, path: "/vms/" + esc(id), out: &vm})
	return vm, err
}

// FindByToken returns the VM a client token is bound to; IsNotFound when
// none (never used, expired, or the VM is still invisible).
func (c *CloudClient) FindByToken(ctx context.Context, token string) (VM, error) {
	var vm VM
	err := c.c.do(ctx, call{endpoint: "FindByToken", method: http.MethodGet, path: "/tokens",
		query: url.Values{"token": {token}}, out: &vm})
	return vm, err
}

// ListVMs returns the owner's visible VMs, running and terminated, in
// creation order. An empty owner lists every VM.
func (c *CloudClient) ListVMs(ctx context.Context, owner string) ([]VM, error) {
	var l vmList
	var q url.Values
	if owner != "" {
		q = url.Values{"owner": {owner}}
	}
	err := c.c.do(ctx, call{endpoint: "ListVMs", method: http.MethodGet, path: "/vms", query: q, out: &l})
	return l.VMs, err
}

// ResizeVM sets a VM's size (idempotent). IsConflict when it is terminated.
func (c *CloudClient) ResizeVM(ctx context.Context, id, size string) (VM, error) {
	var vm VM
	err := c.c.do(ctx, call{endpoint: "ResizeVM", method: http.MethodPost, path: "/vms/" + esc(id) + "/resize",
		in: resizeBody{Size: size}, out: &vm})
	return vm, err
}

// TerminateVM terminates a VM (idempotent: terminating a terminated VM
// returns it unchanged).
func (c *CloudClient) TerminateVM(ctx context.Context, id string) (VM, error) {
	var vm VM
	err := c.c.do(ctx, call{endpoint: "TerminateVM", method: http.MethodPost, path: "/vms/" + esc(id) + "/terminate", out: &vm})
	return vm, err
}

// ---- billing --------------------------------------------------------------

type chargeList struct {
	Charges []Charge `json:"charges"`
}

// CreateCharge charges a customer. With an IdempotencyKey the stored
// response of the first request is replayed (a stored 500 too); other
// parameters fail with IsMismatch; a concurrent request with the key fails
// with IsConflict.
func (c *BillingClient) CreateCharge(ctx context.Context, r ChargeRequest) (Charge, error) {
	var ch Charge
	err := c.c.do(ctx, call{endpoint: "CreateCharge", method: http.MethodPost, path: "/charges",
		key: r.IdempotencyKey, in: r, out: &ch})
	return ch, err
}

// Refund refunds a charge. Refunding twice without a key fails (400
// charge_already_refunded, intransient), as on Stripe.
func (c *BillingClient) Refund(ctx context.Context, chargeID, idempotencyKey string) (Charge, error) {
	var ch Charge
	err := c.c.do(ctx, call{endpoint: "Refund", method: http.MethodPost, path: "/charges/" + esc(chargeID) + "/refund",
		key: idempotencyKey, out: &ch})
	return ch, err
}

// ListCharges returns the owner's charges, refunded ones too, in creation
// order. An empty owner lists every charge.
func (c *BillingClient) ListCharges(ctx context.Context, owner string) ([]Charge, error) {
	var l chargeList
	var q url.Values
	if owner != "" {
		q = url.Values{"owner": {owner}}
	}
	err := c.c.do(ctx, call{endpoint: "ListCharges", method: http.MethodGet, path: "/charges", query: q, out: &l})
	return l.Charges, err
}

// ---- kubernetes -----------------------------------------------------------

type deploymentList struct {
	Deployments []Deployment `json:"deployments"`
}

// Apply creates or replaces a deployment by name (server-side apply). An
// apply that changes nothing keeps the resourceVersion. A non-empty
// ResourceVersion is a precondition: IsConflict when stale.
func (c *KubeClient) Apply(ctx context.Context, d Deployment) (Deployment, error) {
	var out Deployment
	err := c.c.do(ctx, call{endpoint: "Apply", method: http.MethodPatch, path: "/deployments/" + esc(d.Name), in: d, out: &out})
	return out, err
}

// Create creates a deployment; IsConflict (AlreadyExists) when present.
func (c *KubeClient) Create(ctx context.Context, d Deployment) (Deployment, error) {
	var out Deployment
	err := c.c.do(ctx, call{endpoint: "Create", method: http.MethodPost, path: "/deployments", in: d, out: &out})
	return out, err
}

// Get returns a deployment; IsNotFound when absent.
func (c *KubeClient) Get(ctx context.Context, name string) (Deployment, error) {
	var out Deployment
	err := c.c.do(ctx, call{endpoint: "Get", method: http.MethodGet, path: "/deployments/" + esc(name), out: &out})
	return out, err
}

// Update replaces a deployment. A non-empty ResourceVersion must be the
// current one (IsConflict when stale); empty means unconditional. IsNotFound
// when absent.
func (c *KubeClient) Update(ctx context.Context, d Deployment) (Deployment, error) {
	var out Deployment
	err := c.c.do(ctx, call{endpoint: "Update", method: http.MethodPut, path: "/deployments/" + esc(d.Name), in: d, out: &out})
	return out, err
}

// Delete deletes a deployment; IsNotFound when absent.
func (c *KubeClient) Delete(ctx context.Context, name string) error {
	return c.c.do(ctx, call{endpoint: "Delete", method: http.MethodDelete, path: "/deployments/" + esc(name)})
}

// List returns the deployments labelled with owner, by name. An empty owner
// lists every deployment.
func (c *KubeClient) List(ctx context.Context, owner string) ([]Deployment, error) {
	var l deploymentList
	var q url.Values
	if owner != "" {
		q = url.Values{"owner": {owner}}
	}
	err := c.c.do(ctx, call{endpoint: "List", method: http.MethodGet, path: "/deployments", query: q, out: &l})
	return l.Deployments, err
}

// ---- email ----------------------------------------------------------------

// Send sends an email. There is no idempotency: every call that reaches the
// service sends one, also when the answer is lost.
func (c *EmailClient) Send(ctx context.Context, r EmailRequest) (Email, error) {
	var e Email
	err := c.c.do(ctx, call{endpoint: "Send", method: http.MethodPost, path: "/emails", in: r, out: &e})
	return e, err
}
