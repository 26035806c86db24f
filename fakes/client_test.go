package fakes

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClientCallerAndBaseURL(t *testing.T) {
	w := world(t, Options{})
	c := NewEmailClient(w.Email().URL()+"/", ClientOptions{Caller: "w3.1"})
	val(c.Send(ctxT(t), EmailRequest{To: "a", Owner: "i1", Event: "e"})).must(t)
	if r := lastReq(t, w.Email()); r.Caller != "w3.1" {
		t.Fatalf("caller %q", r.Caller)
	}
	anon := NewEmailClient(w.Email().URL(), ClientOptions{})
	val(anon.Send(ctxT(t), EmailRequest{To: "a", Owner: "i1", Event: "e"})).must(t)
	if r := lastReq(t, w.Email()); r.Caller != "anonymous" {
		t.Fatalf("caller %q", r.Caller)
	}
	// A custom HTTP client (the harness's crash point) carries the calls.
	var seen int
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen++
		return http.DefaultTransport.RoundTrip(r)
	})}
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	cc := NewCloudClient(w.Cloud().URL(), ClientOptions{HTTPClient: hc})
	val(cc.ListVMs(ctxT(t), "")).must(t)
	if seen != 1 {
		t.Fatalf("custom transport used %d times", seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientTransportErrors(t *testing.T) {
	// Nothing listens: refused before sending, certainly no effect.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewCloudClient("http://"+addr, ClientOptions{})
	_, err = c.CreateVM(ctxT(t), CreateVMRequest{Owner: "i", Size: "s", Region: "r"})
	var te *TransportError
	if !errors.As(err, &te) || te.Sent || !IsTransient(err) || IsAmbiguous(err) {
		t.Fatalf("refused: %v (%+v)", err, te)
	}

	// The caller's own ctx: not transient, but ambiguous once sent.
	w := world(t, Options{})
	if err := w.Email().AddFault(Fault{Mode: ModeFailAfter, Hang: true}); err != nil {
		t.Fatal(err)
	}
	ec := NewEmailClient(w.Email().URL(), ClientOptions{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Millisecond)
	defer cancel()
	_, err = ec.Send(ctx, EmailRequest{To: "a", Owner: "i1", Event: "e"})
	if !errors.As(err, &te) || !te.Canceled || IsTransient(err) || !IsAmbiguous(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v (%+v)", err, te)
	}
}

func TestClientNonJSONErrorBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "upstream proxy error", http.StatusBadGateway)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	c := NewKubeClient("http://"+ln.Addr().String(), ClientOptions{})
	_, err = c.Get(ctxT(t), "x")
	var e *Error
	if !errors.As(err, &e) || e.Status != 502 || !strings.Contains(e.Message, "upstream proxy error") || !IsTransient(err) {
		t.Fatalf("got %v", err)
	}
}

func TestPredicatesOnWrappedAndForeignErrors(t *testing.T) {
	base := &Error{Service: "cloud", Endpoint: "CreateVM", Status: 409, Code: CodeConflict}
	wrapped := errors.Join(errors.New("ctx"), base)
	if !IsConflict(wrapped) || IsNotFound(wrapped) || IsTransient(wrapped) || IsIntransient(wrapped) {
		t.Fatal("wrapped 409")
	}
	foreign := errors.New("boom")
	for _, p := range []func(error) bool{IsTransient, IsIntransient, IsConflict, IsNotFound, IsMismatch, IsAmbiguous} {
		if p(foreign) || p(nil) {
			t.Fatal("predicate true for a foreign or nil error")
		}
	}
	for status, want := range map[int][6]bool{ // transient, intransient, conflict, notfound, mismatch, ambiguous
		400: {false, true, false, false, false, false},
		404: {false, false, false, true, false, false},
		408: {true, false, false, false, false, false},
		409: {false, false, true, false, false, false},
		413: {false, true, false, false, false, false},
		422: {false, true, false, false, false, false},
		429: {true, false, false, false, false, false},
		500: {true, false, false, false, false, true},
		503: {true, false, false, false, false, true},
	} {
		e := &Error{Status: status}
		got := [6]bool{IsTransient(e), IsIntransient(e), IsConflict(e), IsNotFound(e), IsMismatch(e), IsAmbiguous(e)}
		if got != want {
			t.Errorf("%d: got %v want %v", status, got, want)
		}
	}
}
