package fakes

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// serveRaw sends one hand-built request straight to a server's handler.
func serveRaw(s *server, method, target, key, body string) *httptest.ResponseRecorder {
	u, err := url.Parse(target)
	if err != nil {
		u = &url.URL{Path: target}
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "127.0.0.1",
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), RequestURI: target}
	if key != "" {
		r.Header[HeaderIdempotencyKey] = []string{key}
	}
	w := httptest.NewRecorder()
	s.root().ServeHTTP(w, r)
	return w
}

// checkAnswer checks the bad-input contract: no 5xx, a JSON body, and a
// JSON error body {"error":{"code",...}} with every 4xx.
func checkAnswer(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 || w.Code < 200 || (w.Code >= 300 && w.Code < 400) {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("status %d, body not JSON: %q", w.Code, w.Body)
	}
	if w.Code >= 400 {
		var eb errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" {
			t.Fatalf("status %d without an error code: %q", w.Code, w.Body)
		}
	}
}

func TestBadInput(t *testing.T) {
	w := world(t, Options{})
	huge := `{"to":"` + strings.Repeat("a", DefaultMaxBody) + `","owner":"i1","event":"e"}`
	longKey := strings.Repeat("k", MaxKeyLen+1)
	for _, tc := range []struct {
		srv                       *server
		method, target, key, body string
		status                    int
	}{
		{w.Cloud().server, "POST", "/vms", "", `{`, 400},
		{w.Cloud().server, "POST", "/vms", "", ``, 400},
		{w.Cloud().server, "POST", "/vms", "", `[]`, 400},
		{w.Cloud().server, "POST", "/vms", "", `null`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":1}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":"i","size":"s","region":"r","color":"red"}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":"i","size":"s","region":"r"}{}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"size":"s","region":"r"}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":"i","size":"s","region":"r","client_token":"` + longKey + `"}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":"i","size":"s","region":"r","client_token":"a\tb"}`, 400},
		{w.Cloud().server, "POST", "/vms", "", `{"owner":"i\u0000","size":"s","region":"r"}`, 400},
		{w.Cloud().server, "GET", "/vms?owner=" + strings.Repeat("o", 300), "", ``, 400},
		{w.Cloud().server, "GET", "/vms/x", "", `{"a":1}`, 400},
		{w.Cloud().server, "GET", "/tokens", "", ``, 400},
		{w.Cloud().server, "POST", "/vms/x/resize", "", `{"size":""}`, 400},
		{w.Cloud().server, "DELETE", "/vms", "", ``, 404},
		{w.Cloud().server, "GET", "/nope", "", ``, 404},
		{w.Cloud().server, "GET", "/vms/../tokens", "", ``, 404},
		{w.Billing().server, "POST", "/charges", "", `{"customer":"c","owner":"i","event":"e","amount":0}`, 400},
		{w.Billing().server, "POST", "/charges", "", `{"customer":"c","owner":"i","event":"e","amount":-5}`, 400},
		{w.Billing().server, "POST", "/charges", "", `{"customer":"c","owner":"i","event":"e","amount":1e30}`, 400},
		{w.Billing().server, "POST", "/charges", "", `{"customer":"c","owner":"i","event":"e","amount":99999999999999}`, 400},
		{w.Billing().server, "POST", "/charges", longKey, `{"customer":"c","owner":"i","event":"e","amount":1}`, 400},
		{w.Billing().server, "POST", "/charges", "k\x01", `{"customer":"c","owner":"i","event":"e","amount":1}`, 400},
		{w.Billing().server, "POST", "/charges", "ключ", `{"customer":"c","owner":"i","event":"e","amount":1}`, 400},
		{w.Billing().server, "POST", "/charges/x/refund", longKey, ``, 400},
		{w.Kube().server, "PATCH", "/deployments/a", "", `{"name":"b","owner":"i"}`, 422},
		{w.Kube().server, "POST", "/deployments", "", `{"name":"","owner":"i"}`, 422},
		{w.Kube().server, "POST", "/deployments", "", `{"name":"a","owner":"i","replicas":100000}`, 422},
		{w.Kube().server, "POST", "/deployments", "", `{"name":"a","owner":"i","replicas":1.5}`, 400},
		{w.Kube().server, "GET", "/deployments/UPPER", "", ``, 422},
		{w.Kube().server, "DELETE", "/deployments/" + strings.Repeat("a", 254), "", ``, 422},
		{w.Email().server, "POST", "/emails", "", huge, 413},
		{w.Email().server, "POST", "/emails", "", `{"to":"a","owner":"i","event":"e","subject":"` + strings.Repeat("s", 2000) + `"}`, 400},
	} {
		before := len(tc.srv.requests())
		rw := serveRaw(tc.srv, tc.method, tc.target, tc.key, tc.body)
		checkAnswer(t, rw)
		if rw.Code != tc.status {
			t.Errorf("%s %s %.60q: status %d, want %d: %s", tc.method, tc.target, tc.body, rw.Code, tc.status, rw.Body)
		}
		rs := tc.srv.requests()
		if len(rs) != before+1 || rs[len(rs)-1].Status != rw.Code || rs[len(rs)-1].Effect {
			t.Errorf("%s %s: not recorded as a failed request", tc.method, tc.target)
		}
	}
	// Over the network too, and the servers keep serving.
	resp, err := http.Post(w.Email().URL()+"/emails", "application/json", bytes.NewReader([]byte(huge)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 413 {
		t.Fatalf("oversized over the network: %d", resp.StatusCode)
	}
	c := clientsFor(w, "w1")
	val(c.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i", Size: "s", Region: "r"})).must(t)
	val(c.email.Send(ctxT(t), EmailRequest{To: "a", Owner: "i", Event: "e"})).must(t)
	if n := len(w.Snapshot().Charges); n != 0 {
		t.Fatalf("bad input charged %d times", n)
	}
}
