package fakes

// This file holds what the real-protocol routes share: how a protocol
// writes its answers, and the dispatch from a wire route to an endpoint.

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
)

// protocol is how one API writes its answers: the fakes' own JSON API, or a
// real provider's (EC2 Query, Stripe, Kubernetes). Every answer of a
// request — a handler's, a rejection, a fault's — goes through the
// protocol of the route it came in on, so an SDK parses a fault's answer
// the way it parses the real provider's.
type protocol interface {
	contentType() string
	// errorBody renders an error answer. code is one of the Code constants
	// (or a fault's own code); the protocol may translate the generic ones
	// (CodeUnavailable, CodeThrottled, …) into its provider's names.
	errorBody(status int, code, msg string) []byte
}

// jsonAPI is the fakes' own JSON API: {"error":{"code","message"}}.
type jsonAPI struct{}

func (jsonAPI) contentType() string { return "application/json" }

func (jsonAPI) errorBody(_ int, code, msg string) []byte { return errorJSON(code, msg) }

// apiError is an answer a handler's core gives, in no protocol yet.
type apiError struct {
	status    int
	code, msg string
}

// routeWire registers the spec's real-protocol routes on the server. Each
// route picks its endpoint with the function Classify uses (reading the
// form body first when the route needs it), then runs that endpoint's
// handler in the request frame, answering in protocol p. A request no
// endpoint takes is answered 400 (form routes: an unknown Action) or 404,
// and recorded as endpoint "unknown".
func (s Spec) routeWire(srv *server, p protocol, handlers map[string]func(*rctx)) {
	for _, w := range s.wire {
		srv.mux.HandleFunc(w.key(), func(rw http.ResponseWriter, r *http.Request) {
			var form url.Values
			if w.form {
				b, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, srv.maxBody))
				if err != nil {
					srv.handleWith("unknown", false, p, func(c *rctx) { c.rejectBody(err) })(rw, r)
					return
				}
				form, err = url.ParseQuery(string(b))
				if err != nil {
					srv.handleWith("unknown", false, p, func(c *rctx) {
						c.reject(http.StatusBadRequest, CodeInvalidRequest, "malformed form body: "+err.Error())
					})(rw, r)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
			e, ok := s.Endpoint(w.endpoint(r, form))
			h := handlers[e.Name]
			if !ok || h == nil {
				srv.handleWith("unknown", false, p, func(c *rctx) {
					io.Copy(io.Discard, http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
					status, what := http.StatusNotFound, r.Method+" "+r.URL.Path
					if w.form {
						status, what = http.StatusBadRequest, "action "+form.Get("Action")
					}
					c.reject(status, CodeUnknownEndpoint, what)
				})(rw, r)
				return
			}
			srv.handleWith(e.Name, e.Mutation, p, h)(rw, r)
		})
	}
}

// form reads a form-encoded body (routeWire left it in r.Body).
func (c *rctx) form() (url.Values, bool) {
	b, ok := c.body()
	if !ok {
		return nil, false
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "malformed form body: "+err.Error())
		return nil, false
	}
	return v, true
}
