package fakes

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// EmailOptions configures the fake email service.
type EmailOptions struct {
	ServerOptions
}

// maxSubject caps EmailRequest.Subject.
const maxSubject = 4 * MaxKeyLen

// EmailServer is the fake email service: POST /emails (Send). It has no
// idempotency: every request that reaches it sends an email, also when a
// fault then loses the answer.
type EmailServer struct {
	*server

	mu     sync.Mutex
	emails []emailState
	sent   int // emails ever sent, for their ids (World.Forget shortens emails)
}

type emailState struct {
	e   Email
	seq int64 // the ledger Seq of the request that sent it (World.Forget)
}

func emailSpec() Spec {
	return newSpec(ServiceEmail, "an email service with no idempotency: every request that reaches it sends", true,
		func(_ Options, so ServerOptions) (Server, error) {
			return NewEmailServer(EmailOptions{ServerOptions: so})
		},
		[]Endpoint{ep(SendEmail, http.MethodPost, "/emails", true)},
	)
}

// NewEmailServer starts a fake email service on loopback.
func NewEmailServer(opts EmailOptions) (*EmailServer, error) {
	spec := emailSpec()
	srv, err := newServer(spec.Name, opts.ServerOptions)
	if err != nil {
		return nil, err
	}
	s := &EmailServer{server: srv}
	spec.route(srv, map[string]func(*rctx){SendEmail: s.send})
	if err := srv.start(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Service returns "email".
func (s *EmailServer) Service() string { return "email" }

// Snapshot returns every email sent and the request ledger.
func (s *EmailServer) Snapshot() Snapshot {
	s.mu.Lock()
	es := make([]Email, len(s.emails))
	for i, st := range s.emails {
		es[i] = st.e
	}
	s.mu.Unlock()
	return Snapshot{Emails: es, Requests: s.requests()}
}

// madeSince reports whether an email of owner was sent by a request of
// Seq seq or later (see World.Forget).
func (s *EmailServer) madeSince(owner string, seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.emails, func(st emailState) bool { return st.e.Owner == owner && st.seq >= seq })
}

// forgetBefore drops the emails of each owner in before sent by a request
// of a lower Seq (see World.Forget).
func (s *EmailServer) forgetBefore(before map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emails = slices.DeleteFunc(s.emails, func(st emailState) bool {
		m, ok := before[st.e.Owner]
		return ok && st.seq < m
	})
}

func (s *EmailServer) send(c *rctx) {
	var req EmailRequest
	if !c.decode(&req) {
		return
	}
	c.rec.Owner, c.rec.Event = req.Owner, req.Event
	c.params(req)
	err := firstErr(checkField("to", req.To), checkField("owner", req.Owner), checkField("event", req.Event))
	if err == nil && len(req.Subject) > maxSubject {
		err = fmt.Errorf("subject longer than %d bytes", maxSubject)
	}
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	if !c.begin() {
		return
	}
	s.mu.Lock()
	s.sent++
	e := Email{
		ID:     fmt.Sprintf("em_%014d", s.sent),
		To:     req.To,
		Owner:  req.Owner,
		Event:  req.Event,
		SentAt: s.now(),
	}
	s.emails = append(s.emails, emailState{e: e, seq: c.rec.Seq})
	s.mu.Unlock()
	c.ok(e, true)
}
