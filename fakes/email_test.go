package fakes

import "testing"

func TestEmailEveryCallSends(t *testing.T) {
	w := world(t, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "w1").email
	req := EmailRequest{To: "a@example.com", Owner: "i1", Event: "welcome:i1", Subject: "hi"}
	a := val(c.Send(ctxT(t), req)).must(t)
	b := val(c.Send(ctxT(t), req)).must(t)
	if a.ID == b.ID {
		t.Fatalf("same id twice")
	}
	// An ambiguous failure still sent: the caller's retry sends again.
	if err := w.Email().AddFault(Fault{Mode: ModeFailAfter, Drop: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Send(ctxT(t), req)
	wantErr(t, err, "ambiguous", IsAmbiguous)
	if n := len(w.Email().Snapshot().EmailsByEvent()["welcome:i1"]); n != 3 {
		t.Fatalf("want 3 emails, got %d", n)
	}
	_, err = c.Send(ctxT(t), EmailRequest{To: "a@example.com", Owner: "i1"})
	wantErr(t, err, "missing event", IsIntransient)
}
