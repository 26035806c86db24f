package fakes

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// BillingOptions configures the fake billing service.
type BillingOptions struct {
	ServerOptions
	// KeyTTL is how long an idempotency key (and its stored response) is
	// kept after the first request finished; zero: DefaultTTL.
	KeyTTL time.Duration
}

// MaxAmount caps a charge's amount, in the smallest currency unit (400
// above it).
const MaxAmount = 100_000_000_000

// BillingServer is the fake Stripe-like billing service. Endpoints (JSON,
// header Idempotency-Key on POSTs): POST /charges (CreateCharge), POST
// /charges/{id}/refund (Refund), GET /charges?owner= (ListCharges). The
// same endpoints speak Stripe's API under /v1 (see billing_stripe.go), as
// stripe-go sends it.
//
// Idempotency follows Stripe: once a request with a key began executing, its
// status and body are stored (a 4xx from the handler and a fail-after 500
// too) and replayed for the same key and parameters, with header
// Idempotent-Replayed: true; other parameters (or another endpoint) get 400
// idempotency_error; a request while another with the key is in flight gets
// 409 idempotency_key_in_use. Validation errors, conflicts and fail-before
// faults store nothing. Keys expire KeyTTL after they were stored.
type BillingServer struct {
	*server

	mu      sync.Mutex
	ttl     time.Duration
	charges []*chargeState // creation order
	made    int            // charges ever made, for their ids (World.Forget shortens charges)
	byID    map[string]*Charge
	keys    map[string]*idemEntry
}

type chargeState struct {
	ch  Charge
	seq int64 // the ledger Seq of the request that made it (World.Forget)
}

type idemEntry struct {
	fingerprint string
	owner       string // the request's, as far as it names one (World.Forget)
	seq         int64  // the ledger Seq of the request that stored it
	inFlight    bool
	status      int
	body        []byte
	expires     time.Time
}

func billingSpec() Spec {
	return newSpec(ServiceBilling, "a Stripe-like billing service: charges made idempotently by Idempotency-Key, with the owner and billable event as metadata", false,
		func(o Options, so ServerOptions) (Server, error) {
			return NewBillingServer(BillingOptions{ServerOptions: so, KeyTTL: o.KeyTTL})
		},
		[]Endpoint{
			ep(CreateCharge, http.MethodPost, "/charges", true, "POST /v1/payment_intents", "POST /v1/charges"),
			ep(Refund, http.MethodPost, "/charges/{id}/refund", true, "POST /v1/refunds"),
			ep(ListCharges, http.MethodGet, "/charges", false, "GET /v1/payment_intents", "GET /v1/charges", "GET /v1/payment_intents/search"),
			ep(GetCharge, http.MethodGet, "", false, "GET /v1/payment_intents/{id}", "GET /v1/charges/{id}"),
		},
		stripeRoute(http.MethodPost, "/v1/payment_intents", CreateCharge),
		stripeRoute(http.MethodPost, "/v1/charges", CreateCharge),
		stripeRoute(http.MethodPost, "/v1/refunds", Refund),
		stripeRoute(http.MethodGet, "/v1/payment_intents", ListCharges),
		stripeRoute(http.MethodGet, "/v1/charges", ListCharges),
		stripeRoute(http.MethodGet, "/v1/payment_intents/search", ListCharges),
		stripeRoute(http.MethodGet, "/v1/payment_intents/{id}", GetCharge),
		stripeRoute(http.MethodGet, "/v1/charges/{id}", GetCharge),
	)
}

func stripeRoute(method, pattern, endpoint string) wireRoute {
	return wireRoute{method: method, pattern: pattern, endpoint: func(*http.Request, url.Values) string { return endpoint }}
}

// NewBillingServer starts a fake billing service on loopback.
func NewBillingServer(opts BillingOptions) (*BillingServer, error) {
	spec := billingSpec()
	srv, err := newServer(spec.Name, opts.ServerOptions)
	if err != nil {
		return nil, err
	}
	s := &BillingServer{
		server: srv,
		ttl:    opts.KeyTTL,
		byID:   make(map[string]*Charge),
		keys:   make(map[string]*idemEntry),
	}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	spec.route(srv, map[string]func(*rctx){CreateCharge: s.create, Refund: s.refund, ListCharges: s.list})
	spec.routeWire(srv, stripeAPI{}, map[string]func(*rctx){
		CreateCharge: s.stripeCreate, Refund: s.stripeRefund, ListCharges: s.stripeList, GetCharge: s.stripeGet,
	})
	if err := srv.start(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Service returns "billing".
func (s *BillingServer) Service() string { return "billing" }

// Snapshot returns every charge (refunded ones too) and the request ledger.
func (s *BillingServer) Snapshot() Snapshot {
	s.mu.Lock()
	chs := make([]Charge, len(s.charges))
	for i, st := range s.charges {
		chs[i] = st.ch
	}
	s.mu.Unlock()
	return Snapshot{Charges: chs, Requests: s.requests()}
}

// madeSince reports whether a charge of owner was made by a request of
// Seq seq or later (see World.Forget).
func (s *BillingServer) madeSince(owner string, seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.charges, func(st *chargeState) bool { return st.ch.Owner == owner && st.seq >= seq })
}

// forgetBefore drops the charges of each owner in before made by a request
// of a lower Seq, and the owner's idempotency records stored by one (see
// World.Forget).
func (s *BillingServer) forgetBefore(before map[string]int64) {
	older := func(owner string, seq int64) bool {
		m, ok := before[owner]
		return ok && seq < m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.charges = slices.DeleteFunc(s.charges, func(st *chargeState) bool {
		if !older(st.ch.Owner, st.seq) {
			return false
		}
		delete(s.byID, st.ch.ID)
		return true
	})
	maps.DeleteFunc(s.keys, func(_ string, e *idemEntry) bool { return !e.inFlight && older(e.owner, e.seq) })
}

// claim looks a key up before the request executes. It answers (and returns
// nil, false) on a conflict or mismatch; returns the stored entry and false
// for a replay; returns a fresh in-flight entry and true when the request
// may execute.
func (s *BillingServer) claim(c *rctx, key, fingerprint string) (*idemEntry, bool) {
	now := s.now()
	s.mu.Lock()
	e := s.keys[key]
	if e != nil && !e.inFlight && !now.Before(e.expires) {
		e = nil // expired: the key is free again
	}
	switch {
	case e == nil:
		e = &idemEntry{fingerprint: fingerprint, owner: c.rec.Owner, inFlight: true}
		s.keys[key] = e
		s.mu.Unlock()
		return e, true
	case e.inFlight:
		s.mu.Unlock()
		c.reject(http.StatusConflict, CodeIdempotencyKeyInUse,
			"another request with this idempotency key is in progress")
		return nil, false
	case e.fingerprint != fingerprint:
		s.mu.Unlock()
		c.reject(http.StatusBadRequest, CodeIdempotencyError,
			"keys for idempotent requests can only be used with the same parameters they were first used with")
		return nil, false
	}
	cp := *e
	s.mu.Unlock()
	return &cp, false
}

// release frees a claimed key that stored nothing (a fail-before fault).
func (s *BillingServer) release(key string, e *idemEntry) {
	s.mu.Lock()
	if s.keys[key] == e {
		delete(s.keys, key)
	}
	s.mu.Unlock()
}

// storeLocked saves the answer the client will get: the handler's, or the
// fail-after fault's status answer that replaces it.
func (s *BillingServer) storeLocked(c *rctx, e *idemEntry, status int, body []byte) {
	if e == nil {
		return
	}
	if st, b, ok := c.afterAnswer(); ok {
		status, body = st, b
	}
	e.status, e.body, e.inFlight, e.seq = status, body, false, c.rec.Seq
	e.expires = s.now().Add(s.ttl)
}

// replay answers from a stored entry (after the faults before the effect).
func (s *BillingServer) replay(c *rctx, e *idemEntry) {
	if !c.begin() {
		return
	}
	c.rec.Replayed = true
	c.w.Header().Set(HeaderReplayed, "true")
	errText := ""
	if e.status >= 400 {
		var eb errorBody
		if json.Unmarshal(e.body, &eb) == nil {
			errText = eb.Error.Code + ": " + eb.Error.Message
		}
	}
	c.reply(e.status, e.body, false, errText)
}

func (s *BillingServer) create(c *rctx) {
	var req ChargeRequest
	if !c.decode(&req) {
		return
	}
	req.IdempotencyKey = c.r.Header.Get(HeaderIdempotencyKey)
	c.rec.Owner, c.rec.Key, c.rec.Event = req.Owner, req.IdempotencyKey, req.Event
	c.params(req)
	if err := firstErr(checkField("customer", req.Customer), checkField("owner", req.Owner),
		checkField("event", req.Event), checkKey("Idempotency-Key", req.IdempotencyKey)); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	if req.Amount <= 0 || req.Amount > MaxAmount {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("amount %d outside 1..%d", req.Amount, int64(MaxAmount)))
		return
	}
	var e *idemEntry
	if req.IdempotencyKey != "" {
		var fresh bool
		e, fresh = s.claim(c, req.IdempotencyKey, "CreateCharge\x00"+string(c.rec.Params))
		if e == nil {
			return
		}
		if !fresh {
			s.replay(c, e)
			return
		}
	}
	if !c.begin() {
		if e != nil {
			s.release(req.IdempotencyKey, e)
		}
		return
	}
	ch := s.newCharge(c, req, "")
	// The key stays in flight (409 to a concurrent request) until stored.
	body := mustJSON(ch)
	if e != nil {
		s.mu.Lock()
		s.storeLocked(c, e, http.StatusOK, body)
		s.mu.Unlock()
	}
	c.reply(http.StatusOK, body, true, "")
}

// newCharge records a charge.
func (s *BillingServer) newCharge(c *rctx, req ChargeRequest, currency string) Charge {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.made++
	ch := Charge{
		ID:        fmt.Sprintf("ch_%014d", s.made),
		Customer:  req.Customer,
		Owner:     req.Owner,
		Amount:    req.Amount,
		Event:     req.Event,
		Currency:  currency,
		CreatedAt: now,
	}
	st := &chargeState{ch: ch, seq: c.rec.Seq}
	s.charges = append(s.charges, st)
	s.byID[ch.ID] = &st.ch
	return ch
}

type refundParams struct {
	Charge string `json:"charge"`
}

func (s *BillingServer) refund(c *rctx) {
	id := c.r.PathValue("id")
	key := c.r.Header.Get(HeaderIdempotencyKey)
	c.rec.Key = key
	c.params(refundParams{Charge: id})
	if !c.drain() {
		return
	}
	if err := checkKey("Idempotency-Key", key); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	s.mu.Lock()
	if ch := s.byID[id]; ch != nil {
		c.rec.Owner = ch.Owner
	}
	s.mu.Unlock()
	var e *idemEntry
	if key != "" {
		var fresh bool
		e, fresh = s.claim(c, key, "Refund\x00"+string(c.rec.Params))
		if e == nil {
			return
		}
		if !fresh {
			s.replay(c, e)
			return
		}
	}
	if !c.begin() {
		if e != nil {
			s.release(key, e)
		}
		return
	}
	s.refundCharge(c, id, e, func(ch Charge) []byte { return mustJSON(ch) })
}

// refundCharge refunds charge id, stores the answer (rendered by render on
// success) under the key's entry e (nil: no key), and replies.
func (s *BillingServer) refundCharge(c *rctx, id string, e *idemEntry, render func(Charge) []byte) {
	s.mu.Lock()
	ch := s.byID[id]
	var status int
	var body []byte
	var errText string
	effect := false
	switch {
	case ch == nil:
		status, errText = http.StatusNotFound, fmt.Sprintf("No such charge: '%s'", id)
		body = c.proto.errorBody(status, CodeResourceMissing, errText)
		errText = CodeResourceMissing + ": " + errText
	case ch.Refunded:
		status, errText = http.StatusBadRequest, fmt.Sprintf("Charge %s has already been refunded.", id)
		body = c.proto.errorBody(status, CodeChargeAlreadyRefunded, errText)
		errText = CodeChargeAlreadyRefunded + ": " + errText
	default:
		ch.Refunded = true
		effect = true
		status, body = http.StatusOK, render(*ch)
	}
	s.storeLocked(c, e, status, body)
	s.mu.Unlock()
	c.reply(status, body, effect, errText)
}

func (s *BillingServer) list(c *rctx) {
	owner := c.r.URL.Query().Get("owner")
	c.rec.Owner = owner
	c.params(ownerParams{Owner: owner})
	if !c.drain() {
		return
	}
	if owner != "" {
		if err := checkField("owner", owner); err != nil {
			c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
			return
		}
	}
	if !c.begin() {
		return
	}
	l := chargeList{Charges: []Charge{}}
	s.mu.Lock()
	for _, st := range s.charges {
		if owner == "" || st.ch.Owner == owner {
			l.Charges = append(l.Charges, st.ch)
		}
	}
	s.mu.Unlock()
	c.ok(l, false)
}
