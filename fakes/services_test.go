package fakes

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// A client names a call by the endpoint the server will record it under:
// Spec.Classify routes the way the server's mux does, for every endpoint.
func TestClassifyMatchesTheServersRouting(t *testing.T) {
	w := world(t, Options{})
	for _, spec := range Specs() {
		srv := w.Server(spec.Name)
		if srv == nil {
			t.Fatalf("World runs no %s server", spec.Name)
		}
		for _, e := range spec.Endpoints {
			if e.Pattern == "" {
				continue // reached only through the real protocol: TestClassifyWireRoutes
			}
			path := strings.NewReplacer("{id}", "x1", "{name}", "d-x1").Replace(e.Pattern)
			req, err := http.NewRequest(e.Method, srv.URL()+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := spec.Classify(req)
			if !ok || !reflect.DeepEqual(got, e) {
				t.Errorf("Classify(%s %s) = %+v, %v; want %+v", e.Method, path, got, ok, e)
			}
			req.Header.Set(HeaderCaller, "classify")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if r := lastReq(t, srv); r.Endpoint != e.Name {
				t.Errorf("%s %s: the server recorded endpoint %q, Classify said %q", e.Method, path, r.Endpoint, e.Name)
			}
		}
		unknown, _ := http.NewRequest(http.MethodDelete, srv.URL()+"/nowhere", nil)
		if e, ok := spec.Classify(unknown); ok {
			t.Errorf("%s: Classify of an unknown route = %+v", spec.Name, e)
		}
	}
}

func TestSpecsAreConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, spec := range Specs() {
		if seen[spec.Name] || spec.Doc == "" || len(spec.Endpoints) == 0 {
			t.Errorf("spec %q: repeated, undocumented or without endpoints", spec.Name)
		}
		seen[spec.Name] = true
		for _, e := range spec.Endpoints {
			if e.Service != spec.Name || e.Point() != spec.Name+":"+e.Name {
				t.Errorf("endpoint %+v of %s", e, spec.Name)
			}
		}
	}
	if s := world(t, Options{}).Snapshot(); len(s.AtMostOnce) != 1 || s.AtMostOnce[0] != ServiceEmail {
		t.Errorf("Snapshot.AtMostOnce = %v, want [email]", s.AtMostOnce)
	}
}
