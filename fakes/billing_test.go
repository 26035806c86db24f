package fakes

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// hold makes requests of caller wait at the effect point until released.
// It must be called after world(), so that its cleanup (release) runs before
// the server's Close.
func hold(t *testing.T, s *server, caller string) (entered <-chan struct{}, release func()) {
	in := make(chan struct{}, 16)
	out := make(chan struct{})
	s.beforeEffect = func(c *rctx) {
		if c.rec.Caller == caller {
			in <- struct{}{}
			<-out
		}
	}
	released := false
	release = func() {
		if !released {
			released = true
			close(out)
		}
	}
	t.Cleanup(release)
	return in, release
}

func TestBillingIdempotencyConformance(t *testing.T) {
	req := ChargeRequest{Customer: "cus_1", Owner: "i1", Amount: 1200, Event: "create:i1:1", IdempotencyKey: "charge-i1-1"}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, w *World, clk *ManualClock, c clients)
	}{
		{"replay returns the stored response, one charge", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			clk.Advance(time.Hour)
			b := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			if a != b {
				t.Fatalf("replay differs: %+v vs %+v", a, b)
			}
			s := w.Billing().Snapshot()
			if len(s.Charges) != 1 || len(s.ChargesByEvent()[req.Event]) != 1 {
				t.Fatalf("charges: %+v", s.Charges)
			}
			if r := s.Requests[1]; !r.Replayed || r.Effect || r.Status != 200 || r.Key != req.IdempotencyKey {
				t.Fatalf("replay record: %+v", r)
			}
		}},
		{"replay sets the Idempotent-Replayed header", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			hr, _ := http.NewRequest("POST", w.Billing().URL()+"/charges",
				strings.NewReader(`{"customer":"cus_1","owner":"i1","amount":1200,"event":"create:i1:1"}`))
			hr.Header.Set(HeaderIdempotencyKey, req.IdempotencyKey)
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get(HeaderReplayed) != "true" {
				t.Fatalf("status %d, replayed header %q", resp.StatusCode, resp.Header.Get(HeaderReplayed))
			}
			http.DefaultClient.CloseIdleConnections()
		}},
		{"mismatch", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			for _, change := range []func(*ChargeRequest){
				func(r *ChargeRequest) { r.Amount++ },
				func(r *ChargeRequest) { r.Customer = "cus_2" },
				func(r *ChargeRequest) { r.Owner = "i2" },
				func(r *ChargeRequest) { r.Event = "resize:i1:2" },
			} {
				r := req
				change(&r)
				_, err := c.billing.CreateCharge(ctxT(t), r)
				wantErr(t, err, "mismatch", IsMismatch)
				if !IsIntransient(err) || IsAmbiguous(err) {
					t.Fatalf("mismatch misclassified: %v", err)
				}
			}
			_, err := c.billing.Refund(ctxT(t), a.ID, req.IdempotencyKey)
			wantErr(t, err, "mismatch (other endpoint)", IsMismatch)
			if n := len(w.Billing().Snapshot().Charges); n != 1 {
				t.Fatalf("%d charges", n)
			}
		}},
		{"concurrent request with the key is 409", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			entered, release := hold(t, w.Billing().server, "slow")
			slow := clientsFor(w, "slow").billing
			done := make(chan error, 1)
			var first Charge
			go func() {
				var err error
				first, err = slow.CreateCharge(ctxT(t), req)
				done <- err
			}()
			<-entered
			_, err := c.billing.CreateCharge(ctxT(t), req)
			wantErr(t, err, "conflict", IsConflict)
			if e, _ := err.(*Error); e.Code != CodeIdempotencyKeyInUse || IsTransient(err) || IsAmbiguous(err) {
				t.Fatalf("got %v", err)
			}
			other := req
			other.Amount = 1
			_, err = c.billing.CreateCharge(ctxT(t), other)
			wantErr(t, err, "conflict before mismatch", IsConflict)
			if r := lastReq(t, w.Billing()); r.Status != 409 || r.Effect || r.Caller != "w1" {
				t.Fatalf("409 record: %+v", r)
			}
			// The in-flight request shows in a snapshot with a zero End.
			var inflight int
			for _, r := range w.Billing().Snapshot().Requests {
				if r.End.IsZero() && r.Caller == "slow" {
					inflight++
				}
			}
			if inflight != 1 {
				t.Fatalf("want 1 in-flight record, got %d", inflight)
			}
			release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			b := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			if b != first || len(w.Billing().Snapshot().Charges) != 1 {
				t.Fatalf("after the race: %+v vs %+v", b, first)
			}
		}},
		{"keys expire after the TTL", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			clk.Advance(DefaultTTL - time.Nanosecond)
			if b := val(c.billing.CreateCharge(ctxT(t), req)).must(t); b != a {
				t.Fatalf("within TTL: %+v", b)
			}
			clk.Advance(time.Nanosecond)
			b := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			if b.ID == a.ID || len(w.Billing().Snapshot().ChargesByEvent()[req.Event]) != 2 {
				t.Fatalf("after TTL want a second charge (the double-billing trap), got %+v", b)
			}
			// The key is bound again, to the new charge.
			if c2 := val(c.billing.CreateCharge(ctxT(t), req)).must(t); c2 != b {
				t.Fatalf("rebound key: %+v", c2)
			}
		}},
		{"a stored 500 is replayed", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			if err := w.Billing().AddFault(Fault{Mode: ModeFailAfter, Times: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := c.billing.CreateCharge(ctxT(t), req)
			wantErr(t, err, "ambiguous 500", IsAmbiguous)
			if !IsTransient(err) {
				t.Fatalf("500 not transient: %v", err)
			}
			if r := lastReq(t, w.Billing()); !r.Effect || r.Status != 500 || r.Fault != "fail-after" {
				t.Fatalf("fail-after record: %+v", r)
			}
			for range 2 {
				_, err = c.billing.CreateCharge(ctxT(t), req)
				wantErr(t, err, "replayed 500", IsAmbiguous)
				if r := lastReq(t, w.Billing()); !r.Replayed || r.Effect || r.Status != 500 || r.Fault != "" {
					t.Fatalf("replay record: %+v", r)
				}
			}
			s := w.Billing().Snapshot()
			if len(s.Charges) != 1 {
				t.Fatalf("want exactly one charge behind the 500s, got %d", len(s.Charges))
			}
			if l := val(c.billing.ListCharges(ctxT(t), "i1")).must(t); len(l) != 1 || l[0].Event != req.Event {
				t.Fatalf("list: %+v", l)
			}
		}},
		{"a dropped answer stores the real one", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			if err := w.Billing().AddFault(Fault{Mode: ModeFailAfter, Drop: true, Times: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := c.billing.CreateCharge(ctxT(t), req)
			wantErr(t, err, "ambiguous drop", IsAmbiguous)
			b := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			s := w.Billing().Snapshot()
			if len(s.Charges) != 1 || s.Charges[0] != b || !s.Requests[1].Replayed {
				t.Fatalf("after drop: %+v", s)
			}
		}},
		{"fail-before stores nothing", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			if err := w.Billing().AddFault(Fault{Mode: ModeFailBefore, Times: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := c.billing.CreateCharge(ctxT(t), req)
			wantErr(t, err, "503", IsTransient)
			b := val(c.billing.CreateCharge(ctxT(t), req)).must(t)
			s := w.Billing().Snapshot()
			if len(s.Charges) != 1 || s.Requests[1].Replayed || !s.Requests[1].Effect || b.ID != s.Charges[0].ID {
				t.Fatalf("after fail-before: %+v", s)
			}
		}},
		{"no key: every call charges", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			r := req
			r.IdempotencyKey = ""
			val(c.billing.CreateCharge(ctxT(t), r)).must(t)
			val(c.billing.CreateCharge(ctxT(t), r)).must(t)
			if n := len(w.Billing().Snapshot().ChargesByEvent()[r.Event]); n != 2 {
				t.Fatalf("%d charges", n)
			}
		}},
		{"custom key TTL", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			w2 := world(t, Options{Clock: clk, KeyTTL: time.Minute})
			bc := clientsFor(w2, "w").billing
			a := val(bc.CreateCharge(ctxT(t), req)).must(t)
			clk.Advance(time.Minute)
			if b := val(bc.CreateCharge(ctxT(t), req)).must(t); b.ID == a.ID {
				t.Fatalf("key survived a 1m TTL")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := NewManualClock(t0)
			w := world(t, Options{Clock: clk})
			tc.run(t, w, clk, clientsFor(w, "w1"))
		})
	}
}

func TestBillingRefund(t *testing.T) {
	w := world(t, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "w1").billing
	ctx := ctxT(t)
	ch := val(c.CreateCharge(ctx, ChargeRequest{Customer: "c", Owner: "i1", Amount: 5, Event: "e"})).must(t)
	r := val(c.Refund(ctx, ch.ID, "refund-1")).must(t)
	if !r.Refunded || !lastReq(t, w.Billing()).Effect || lastReq(t, w.Billing()).Owner != "i1" {
		t.Fatalf("refund: %+v", r)
	}
	if again := val(c.Refund(ctx, ch.ID, "refund-1")).must(t); again != r || !lastReq(t, w.Billing()).Replayed {
		t.Fatalf("refund replay: %+v", again)
	}
	_, err := c.Refund(ctx, ch.ID, "")
	wantErr(t, err, "already refunded", IsIntransient)
	if e := err.(*Error); e.Code != CodeChargeAlreadyRefunded {
		t.Fatalf("code %q", e.Code)
	}
	_, err = c.Refund(ctx, "ch_nope", "refund-2")
	wantErr(t, err, "not found", IsNotFound)
	_, err = c.Refund(ctx, "ch_nope", "refund-2")
	wantErr(t, err, "stored not found", IsNotFound)
	if !lastReq(t, w.Billing()).Replayed {
		t.Fatalf("a 404 after execution began is stored and replayed")
	}
	if s := w.Billing().Snapshot(); len(s.Charges) != 1 || !s.Charges[0].Refunded {
		t.Fatalf("snapshot: %+v", s.Charges)
	}
}
