package fakes

import (
	"net/url"
	"strings"
	"testing"
)

// Each fuzz target drives one handler with an arbitrary path segment (or
// query), idempotency key and body, and checks the bad-input contract: never
// a 5xx or a panic, always a JSON answer, a JSON error body with every 4xx,
// and every request recorded. Seed corpora live in testdata/fuzz/<Target>.

func fuzzTarget(f *testing.F, mk func(testing.TB) *server, method string, target func(seg string) string) {
	s := mk(f)
	f.Fuzz(func(t *testing.T, seg, key string, body []byte) {
		before := s.recordCount()
		w := serveRaw(s, method, target(seg), key, string(body))
		checkAnswer(t, w)
		if got := s.recordCount(); got != before+1 {
			t.Fatalf("%d requests recorded, want 1", got-before)
		}
	})
}

func path(prefix, suffix string) func(string) string {
	return func(seg string) string { return prefix + url.PathEscape(seg) + suffix }
}

func query(p string) func(string) string {
	return func(q string) string {
		if strings.ContainsAny(q, "#") {
			q = url.QueryEscape(q)
		}
		return p + "?" + q
	}
}

func fuzzCloud(tb testing.TB) *server {
	w := world(tb, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "seed").cloud
	if _, err := c.CreateVM(ctxT(tb), CreateVMRequest{Owner: "i1", Size: "small", Region: "r", ClientToken: "t1"}); err != nil {
		tb.Fatal(err)
	}
	return w.Cloud().server
}

func fuzzBilling(tb testing.TB) *server {
	w := world(tb, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "seed").billing
	if _, err := c.CreateCharge(ctxT(tb), ChargeRequest{Customer: "c", Owner: "i1", Amount: 1, Event: "e", IdempotencyKey: "k1"}); err != nil {
		tb.Fatal(err)
	}
	return w.Billing().server
}

func fuzzKube(tb testing.TB) *server {
	w := world(tb, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "seed").kube
	if _, err := c.Apply(ctxT(tb), Deployment{Name: "d1", Owner: "i1", Size: "small", Replicas: 1}); err != nil {
		tb.Fatal(err)
	}
	return w.Kube().server
}

func fuzzEmail(tb testing.TB) *server { return world(tb, Options{}).Email().server }

func FuzzCreateVM(f *testing.F)    { fuzzTarget(f, fuzzCloud, "POST", path("/vms", "")) }
func FuzzDescribeVM(f *testing.F)  { fuzzTarget(f, fuzzCloud, "GET", path("/vms/", "")) }
func FuzzListVMs(f *testing.F)     { fuzzTarget(f, fuzzCloud, "GET", query("/vms")) }
func FuzzFindByToken(f *testing.F) { fuzzTarget(f, fuzzCloud, "GET", query("/tokens")) }
func FuzzResizeVM(f *testing.F)    { fuzzTarget(f, fuzzCloud, "POST", path("/vms/", "/resize")) }
func FuzzTerminateVM(f *testing.F) { fuzzTarget(f, fuzzCloud, "POST", path("/vms/", "/terminate")) }

func FuzzCreateCharge(f *testing.F) { fuzzTarget(f, fuzzBilling, "POST", path("/charges", "")) }
func FuzzRefund(f *testing.F)       { fuzzTarget(f, fuzzBilling, "POST", path("/charges/", "/refund")) }
func FuzzListCharges(f *testing.F)  { fuzzTarget(f, fuzzBilling, "GET", query("/charges")) }

func FuzzKubeApply(f *testing.F)  { fuzzTarget(f, fuzzKube, "PATCH", path("/deployments/", "")) }
func FuzzKubeCreate(f *testing.F) { fuzzTarget(f, fuzzKube, "POST", path("/deployments", "")) }
func FuzzKubeGet(f *testing.F)    { fuzzTarget(f, fuzzKube, "GET", path("/deployments/", "")) }
func FuzzKubeUpdate(f *testing.F) { fuzzTarget(f, fuzzKube, "PUT", path("/deployments/", "")) }
func FuzzKubeDelete(f *testing.F) { fuzzTarget(f, fuzzKube, "DELETE", path("/deployments/", "")) }
func FuzzKubeList(f *testing.F)   { fuzzTarget(f, fuzzKube, "GET", query("/deployments")) }

func FuzzEmailSend(f *testing.F) { fuzzTarget(f, fuzzEmail, "POST", path("/emails", "")) }
