package fakes

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// world starts the four fakes for one test.
func world(t testing.TB, opts Options) *World {
	t.Helper()
	w, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

type clients struct {
	cloud   *CloudClient
	billing *BillingClient
	kube    *KubeClient
	email   *EmailClient
}

func clientsFor(w *World, caller string) clients {
	o := ClientOptions{Caller: caller, Timeout: 5 * time.Second}
	return clients{
		cloud:   NewCloudClient(w.Cloud().URL(), o),
		billing: NewBillingClient(w.Billing().URL(), o),
		kube:    NewKubeClient(w.Kube().URL(), o),
		email:   NewEmailClient(w.Email().URL(), o),
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// lastReq returns the last recorded request of a server.
func lastReq(t testing.TB, s Server) Record {
	t.Helper()
	rs := s.Snapshot().Requests
	if len(rs) == 0 {
		t.Fatalf("%s: no requests recorded", s.Service())
	}
	return rs[len(rs)-1]
}

type valErr[T any] struct {
	v   T
	err error
}

// val(f()).must(t) is f's value, failing the test on an error.
func val[T any](v T, err error) valErr[T] { return valErr[T]{v, err} }

func (r valErr[T]) must(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("unexpected error: %v", r.err)
	}
	return r.v
}

func wantErr(t testing.TB, err error, what string, pred func(error) bool) {
	t.Helper()
	if err == nil || !pred(err) {
		t.Fatalf("want %s error, got %v", what, err)
	}
}
