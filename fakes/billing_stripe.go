package fakes

// Stripe's API in front of the fake billing service, as stripe-go sends it:
// form-encoded bodies with brackets (metadata[owner]=i1), JSON answers,
// errors as {"error":{"type","code","message","param"}}. A PaymentIntent
// (POST /v1/payment_intents, confirmed at once) and a Charge (POST
// /v1/charges) are both a CreateCharge: one charge, whose ids are pi_N and
// ch_N. The owner and the billable event are metadata[owner] and
// metadata[event] (StripeOwner, StripeEvent); currency is required, as on
// Stripe. Refunds (POST /v1/refunds with charge= or payment_intent=) refund
// it whole. Lists (GET /v1/payment_intents, /v1/charges, ?customer=) and
// search (GET /v1/payment_intents/search?query=metadata['owner']:'i1') are
// ListCharges; GET of one object is GetCharge.
//
// Idempotency is the billing server's, keyed by the Idempotency-Key header
// over the whole form: the stored answer is replayed with
// Idempotent-Replayed: true, every answer to a keyed request echoes
// Idempotency-Key (stripe-go's LastResponse.IdempotencyKey reads it), other
// parameters are 400 idempotency_error, a request while another with the
// key is in flight is 409. Go's http.Transport re-sends a keyed POST on its
// own when a kept-alive connection drops before the answer: to the server
// that is one more replay.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

func (s *BillingServer) stripeCreate(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	key := c.r.Header.Get(HeaderIdempotencyKey)
	if key != "" {
		c.w.Header().Set(HeaderIdempotencyKey, key)
	}
	amount, aerr := strconv.ParseInt(f.Get("amount"), 10, 64)
	req := ChargeRequest{
		Customer:       f.Get("customer"),
		Owner:          f.Get("metadata[" + StripeOwner + "]"),
		Amount:         amount,
		Event:          f.Get("metadata[" + StripeEvent + "]"),
		IdempotencyKey: key,
	}
	c.rec.Owner, c.rec.Key, c.rec.Event = req.Owner, req.IdempotencyKey, req.Event
	c.params(req)
	err := firstErr(checkField("customer", req.Customer), checkField("metadata["+StripeOwner+"]", req.Owner),
		checkField("metadata["+StripeEvent+"]", req.Event), checkField("currency", f.Get("currency")),
		checkKey("Idempotency-Key", key))
	if err == nil && (aerr != nil || amount <= 0 || amount > MaxAmount) {
		err = fmt.Errorf("amount %q is not an integer in 1..%d", f.Get("amount"), int64(MaxAmount))
	}
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	var e *idemEntry
	if key != "" {
		var fresh bool
		e, fresh = s.claim(c, key, "stripe "+c.r.URL.Path+"\x00"+f.Encode())
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
	ch := s.newCharge(c, req, strings.ToLower(f.Get("currency")))
	body := stripeObject(c.r.URL.Path, ch)
	if e != nil {
		s.mu.Lock()
		s.storeLocked(c, e, http.StatusOK, body)
		s.mu.Unlock()
	}
	c.reply(http.StatusOK, body, true, "")
}

// stripeChargeID is the charge a pi_N or ch_N id names.
func stripeChargeID(id string) string {
	if n, ok := strings.CutPrefix(id, "pi_"); ok {
		return "ch_" + n
	}
	return id
}

func (s *BillingServer) stripeRefund(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	key := c.r.Header.Get(HeaderIdempotencyKey)
	if key != "" {
		c.w.Header().Set(HeaderIdempotencyKey, key)
	}
	id := f.Get("charge")
	if id == "" {
		id = stripeChargeID(f.Get("payment_intent"))
	}
	c.rec.Key = key
	c.params(refundParams{Charge: id})
	if err := firstErr(checkField("charge or payment_intent", id), checkKey("Idempotency-Key", key)); err != nil {
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
		e, fresh = s.claim(c, key, "stripe "+c.r.URL.Path+"\x00"+f.Encode())
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
	s.refundCharge(c, id, e, func(ch Charge) []byte { return mustJSON(stripeRefundOf(ch)) })
}

type stripeListParams struct {
	Customer string `json:"customer,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Event    string `json:"event,omitempty"`
}

// stripeTerm is one clause of Stripe's search query language the fake
// understands: metadata['k']:'v' or customer:'v', joined by AND.
var stripeTerm = regexp.MustCompile(`^\s*(metadata\['([^']+)'\]|customer):'([^']*)'\s*$`)

func (s *BillingServer) stripeList(c *rctx) {
	q := c.r.URL.Query()
	p := stripeListParams{Customer: q.Get("customer")}
	search := strings.HasSuffix(c.r.URL.Path, "/search")
	if search {
		for _, term := range strings.Split(q.Get("query"), " AND ") {
			m := stripeTerm.FindStringSubmatch(term)
			switch {
			case m == nil:
				c.params(p)
				c.reject(http.StatusBadRequest, CodeInvalidRequest,
					fmt.Sprintf("search query term %q: the fake understands metadata['k']:'v' and customer:'v', joined by AND", term))
				return
			case m[1] == "customer":
				p.Customer = m[3]
			case m[2] == StripeOwner:
				p.Owner = m[3]
			case m[2] == StripeEvent:
				p.Event = m[3]
			default:
				c.params(p)
				c.reject(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("search by metadata[%q]: the fake searches owner and event", m[2]))
				return
			}
		}
	}
	c.rec.Owner = p.Owner
	c.params(p)
	if !c.drain() || !c.begin() {
		return
	}
	l := stripeList{Object: map[bool]string{false: "list", true: "search_result"}[search], URL: c.r.URL.Path, Data: []json.RawMessage{}}
	s.mu.Lock()
	for _, st := range s.charges {
		ch := st.ch
		if (p.Customer == "" || ch.Customer == p.Customer) && (p.Owner == "" || ch.Owner == p.Owner) && (p.Event == "" || ch.Event == p.Event) {
			l.Data = append(l.Data, stripeObject(c.r.URL.Path, ch))
		}
	}
	s.mu.Unlock()
	c.reply(http.StatusOK, mustJSON(l), false, "")
}

func (s *BillingServer) stripeGet(c *rctx) {
	id := stripeChargeID(c.r.PathValue("id"))
	c.params(refundParams{Charge: id})
	if !c.drain() {
		return
	}
	s.mu.Lock()
	if ch := s.byID[id]; ch != nil {
		c.rec.Owner = ch.Owner
	}
	s.mu.Unlock()
	if !c.begin() {
		return
	}
	s.mu.Lock()
	ch := s.byID[id]
	var out Charge
	if ch != nil {
		out = *ch
	}
	s.mu.Unlock()
	if ch == nil {
		c.fail(http.StatusNotFound, CodeResourceMissing, fmt.Sprintf("No such object: '%s'", c.r.PathValue("id")))
		return
	}
	c.reply(http.StatusOK, stripeObject(c.r.URL.Path, out), false, "")
}

// ---- the JSON -----------------------------------------------------------------

type stripeList struct {
	Object  string            `json:"object"`
	URL     string            `json:"url"`
	HasMore bool              `json:"has_more"`
	Data    []json.RawMessage `json:"data"`
}

type stripePaymentIntent struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountReceived int64             `json:"amount_received"`
	Currency       string            `json:"currency"`
	Customer       string            `json:"customer"`
	Metadata       map[string]string `json:"metadata"`
	Status         string            `json:"status"`
	LatestCharge   string            `json:"latest_charge"`
	Created        int64             `json:"created"`
	Livemode       bool              `json:"livemode"`
}

type stripeCharge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountRefunded int64             `json:"amount_refunded"`
	Currency       string            `json:"currency"`
	Customer       string            `json:"customer"`
	Metadata       map[string]string `json:"metadata"`
	Paid           bool              `json:"paid"`
	Refunded       bool              `json:"refunded"`
	Status         string            `json:"status"`
	PaymentIntent  string            `json:"payment_intent"`
	Created        int64             `json:"created"`
	Livemode       bool              `json:"livemode"`
}

type stripeRefund struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Charge        string `json:"charge"`
	PaymentIntent string `json:"payment_intent"`
	Status        string `json:"status"`
	Created       int64  `json:"created"`
}

func stripeCurrency(ch Charge) string {
	if ch.Currency == "" {
		return "usd"
	}
	return ch.Currency
}

func stripeNumber(ch Charge) string { return strings.TrimPrefix(ch.ID, "ch_") }

// stripeObject renders a charge as the object a path is about: a
// PaymentIntent under /v1/payment_intents, a Charge elsewhere.
func stripeObject(path string, ch Charge) []byte {
	meta := map[string]string{StripeOwner: ch.Owner, StripeEvent: ch.Event}
	if strings.HasPrefix(path, "/v1/payment_intents") {
		return mustJSON(stripePaymentIntent{
			ID: "pi_" + stripeNumber(ch), Object: "payment_intent", Amount: ch.Amount, AmountReceived: ch.Amount,
			Currency: stripeCurrency(ch), Customer: ch.Customer, Metadata: meta, Status: "succeeded",
			LatestCharge: ch.ID, Created: ch.CreatedAt.Unix(),
		})
	}
	refunded := int64(0)
	if ch.Refunded {
		refunded = ch.Amount
	}
	return mustJSON(stripeCharge{
		ID: ch.ID, Object: "charge", Amount: ch.Amount, AmountRefunded: refunded, Currency: stripeCurrency(ch),
		Customer: ch.Customer, Metadata: meta, Paid: true, Refunded: ch.Refunded, Status: "succeeded",
		PaymentIntent: "pi_" + stripeNumber(ch), Created: ch.CreatedAt.Unix(),
	})
}

func stripeRefundOf(ch Charge) stripeRefund {
	return stripeRefund{ID: "re_" + stripeNumber(ch), Object: "refund", Amount: ch.Amount, Currency: stripeCurrency(ch),
		Charge: ch.ID, PaymentIntent: "pi_" + stripeNumber(ch), Status: "succeeded", Created: ch.CreatedAt.Unix()}
}

// stripeAPI is Stripe's way of answering.
type stripeAPI struct{}

func (stripeAPI) contentType() string { return "application/json" }

type stripeErrorBody struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code,omitempty"`
		Message string `json:"message"`
	} `json:"error"`
}

func (stripeAPI) errorBody(status int, code, msg string) []byte {
	var b stripeErrorBody
	b.Error.Code, b.Error.Message = code, msg
	switch {
	case code == CodeIdempotencyError || code == CodeIdempotencyKeyInUse:
		b.Error.Type = "idempotency_error"
	case code == CodeThrottled:
		b.Error.Type, b.Error.Code = "invalid_request_error", "rate_limit"
	case status >= 500:
		b.Error.Type = "api_error"
	default:
		b.Error.Type = "invalid_request_error"
	}
	return mustJSON(b)
}
