package fakes

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// DefaultTTL is how long a terminated VM keeps its client token bound, and
// how long billing keeps an idempotency key, unless configured.
const DefaultTTL = 24 * time.Hour

// CloudOptions configures the fake cloud.
type CloudOptions struct {
	ServerOptions
	// TokenTTL is how long a client token stays bound after its VM was
	// terminated (a running VM keeps it forever); zero: DefaultTTL.
	TokenTTL time.Duration
	// Lag keeps a new VM invisible to DescribeVM, ListVMs and FindByToken
	// for this long on the clock (EC2's eventual consistency); CreateVM
	// replays, ResizeVM and TerminateVM see it at once. Zero: no lag.
	Lag time.Duration
}

// CloudServer is the fake EC2-like cloud: a loopback HTTP server recording
// every request. Endpoints (JSON): POST /vms (CreateVM), GET /vms/{id}
// (DescribeVM), GET /vms?owner= (ListVMs), GET /tokens?token= (FindByToken),
// POST /vms/{id}/resize (ResizeVM), POST /vms/{id}/terminate (TerminateVM).
// The same endpoints speak the EC2 Query API on POST / (see cloud_ec2.go):
// RunInstances, DescribeInstances, ModifyInstanceAttribute and
// TerminateInstances, as aws-sdk-go-v2's service/ec2 sends them.
type CloudServer struct {
	*server

	mu     sync.Mutex
	ttl    time.Duration
	lag    time.Duration
	vms    []*vmState // creation order
	made   int        // VMs ever made, for their ids (World.Forget shortens vms)
	byID   map[string]*vmState
	tokens map[string]*tokenBinding
}

type vmState struct {
	vm        VM
	seq       int64 // the ledger Seq of the request that made it (World.Forget)
	visibleAt time.Time
	wire      vmWire // what the EC2 API shows besides the VM
}

type tokenBinding struct {
	st    *vmState
	req   CreateVMRequest // as first asked: a later resize does not change it
	extra string          // the other parameters of an EC2 RunInstances, canonical
}

func cloudSpec() Spec {
	return newSpec(ServiceCloud, "an EC2-like cloud: VMs created idempotently by client token, tagged with their owner", false,
		func(o Options, so ServerOptions) (Server, error) {
			return NewCloudServer(CloudOptions{ServerOptions: so, TokenTTL: o.TokenTTL, Lag: o.Lag})
		},
		[]Endpoint{
			ep(CreateVM, http.MethodPost, "/vms", true, "POST / Action=RunInstances"),
			ep(DescribeVM, http.MethodGet, "/vms/{id}", false, "POST / Action=DescribeInstances with InstanceId.N"),
			ep(ListVMs, http.MethodGet, "/vms", false, "POST / Action=DescribeInstances without InstanceId or a client-token filter"),
			ep(FindByToken, http.MethodGet, "/tokens", false, "POST / Action=DescribeInstances with Filter client-token"),
			ep(ResizeVM, http.MethodPost, "/vms/{id}/resize", true, "POST / Action=ModifyInstanceAttribute (InstanceType)"),
			ep(TerminateVM, http.MethodPost, "/vms/{id}/terminate", true, "POST / Action=TerminateInstances"),
		},
		wireRoute{method: http.MethodPost, pattern: "/{$}", form: true, endpoint: ec2Endpoint},
	)
}

// NewCloudServer starts a fake cloud on loopback.
func NewCloudServer(opts CloudOptions) (*CloudServer, error) {
	spec := cloudSpec()
	srv, err := newServer(spec.Name, opts.ServerOptions)
	if err != nil {
		return nil, err
	}
	s := &CloudServer{
		server: srv,
		ttl:    opts.TokenTTL,
		lag:    opts.Lag,
		byID:   make(map[string]*vmState),
		tokens: make(map[string]*tokenBinding),
	}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	spec.route(srv, map[string]func(*rctx){
		CreateVM: s.create, DescribeVM: s.describe, ListVMs: s.list,
		FindByToken: s.findByToken, ResizeVM: s.resize, TerminateVM: s.terminate,
	})
	spec.routeWire(srv, ec2API{}, map[string]func(*rctx){
		CreateVM: s.ec2Run, DescribeVM: s.ec2Describe, ListVMs: s.ec2Describe,
		FindByToken: s.ec2Describe, ResizeVM: s.ec2Modify, TerminateVM: s.ec2Terminate,
	})
	if err := srv.start(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Service returns "cloud".
func (s *CloudServer) Service() string { return "cloud" }

// SetLag changes the read-after-write lag of VMs created from now on.
func (s *CloudServer) SetLag(d time.Duration) {
	s.mu.Lock()
	s.lag = max(d, 0)
	s.mu.Unlock()
}

// Snapshot returns every VM ever created (terminated and still invisible
// ones too) and the request ledger.
func (s *CloudServer) Snapshot() Snapshot {
	s.mu.Lock()
	vms := make([]VM, len(s.vms))
	for i, st := range s.vms {
		vms[i] = st.vm
	}
	s.mu.Unlock()
	return Snapshot{VMs: vms, Requests: s.requests()}
}

// madeSince reports whether a VM of owner was made by a request of Seq
// seq or later (see World.Forget).
func (s *CloudServer) madeSince(owner string, seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.vms, func(st *vmState) bool { return st.vm.Owner == owner && st.seq >= seq })
}

// forgetBefore drops the terminated VMs of each owner in before made by a
// request of a lower Seq, and the client tokens bound to them (see
// World.Forget).
func (s *CloudServer) forgetBefore(before map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vms = slices.DeleteFunc(s.vms, func(st *vmState) bool {
		m, ok := before[st.vm.Owner]
		if !ok || st.seq >= m || st.vm.State != "terminated" {
			return false
		}
		delete(s.byID, st.vm.ID)
		return true
	})
	maps.DeleteFunc(s.tokens, func(_ string, b *tokenBinding) bool { return s.byID[b.st.vm.ID] != b.st })
}

// boundLocked returns the live binding of a token, forgetting an expired one.
func (s *CloudServer) boundLocked(token string, now time.Time) *tokenBinding {
	b := s.tokens[token]
	if b == nil {
		return nil
	}
	if b.st.vm.State == "terminated" && !now.Before(b.st.vm.TerminatedAt.Add(s.ttl)) {
		delete(s.tokens, token)
		return nil
	}
	return b
}

func (s *CloudServer) create(c *rctx) {
	var req CreateVMRequest
	if !c.decode(&req) {
		return
	}
	c.rec.Owner, c.rec.Key = req.Owner, req.ClientToken
	c.params(req)
	if err := firstErr(checkField("owner", req.Owner), checkField("size", req.Size),
		checkField("region", req.Region), checkKey("client_token", req.ClientToken)); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	if !c.begin() {
		return
	}
	vm, effect, err := s.createVM(c, req, vmWire{tags: [][2]string{{OwnerKey, req.Owner}}}, "")
	if err != nil {
		c.failWith(err)
		return
	}
	c.rec.Replayed = !effect
	c.ok(vm, effect)
}

// createVM makes the VM req asks for, or answers the one its client token
// is bound to (effect false) when the token's parameters (req and extra)
// match.
func (s *CloudServer) createVM(c *rctx, req CreateVMRequest, wire vmWire, extra string) (VM, bool, *apiError) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.ClientToken != "" {
		if b := s.boundLocked(req.ClientToken, now); b != nil {
			if b.req != req || b.extra != extra {
				return VM{}, false, &apiError{http.StatusBadRequest, CodeIdempotentParameterMismatch,
					"client token already used with different parameters"}
			}
			return b.st.vm, false, nil
		}
	}
	s.made++
	st := &vmState{
		vm: VM{
			ID:          fmt.Sprintf("i-%017x", s.made),
			Owner:       req.Owner,
			Size:        req.Size,
			Region:      req.Region,
			ClientToken: req.ClientToken,
			State:       "running",
			CreatedAt:   now,
		},
		seq:       c.rec.Seq,
		visibleAt: now.Add(s.lag),
		wire:      wire,
	}
	s.vms = append(s.vms, st)
	s.byID[st.vm.ID] = st
	if req.ClientToken != "" {
		s.tokens[req.ClientToken] = &tokenBinding{st: st, req: req, extra: extra}
	}
	return st.vm, true, nil
}

type idParams struct {
	ID   string `json:"id"`
	Size string `json:"size,omitempty"`
}

// lookupOwner names the VM's owner in the record before faults are drawn, so
// that owner-scoped faults and overlap queries see it.
func (s *CloudServer) lookupOwner(c *rctx, id string) {
	s.mu.Lock()
	if st := s.byID[id]; st != nil {
		c.rec.Owner = st.vm.Owner
	}
	s.mu.Unlock()
}

func (s *CloudServer) describe(c *rctx) {
	id := c.r.PathValue("id")
	c.params(idParams{ID: id})
	if !c.drain() {
		return
	}
	s.lookupOwner(c, id)
	if !c.begin() {
		return
	}
	now := s.now()
	s.mu.Lock()
	st := s.byID[id]
	if st == nil || now.Before(st.visibleAt) {
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("instance %q does not exist", id))
		return
	}
	vm := st.vm
	s.mu.Unlock()
	c.ok(vm, false)
}

type ownerParams struct {
	Owner string `json:"owner,omitempty"`
}

func (s *CloudServer) list(c *rctx) {
	owner := c.r.URL.Query().Get("owner")
	c.rec.Owner = owner
	c.params(ownerParams{Owner: owner})
	if !c.drain() {
		return
	}
	if owner != "" {
		if err := checkField("owner", owner); err != nil {
			c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
			return
		}
	}
	if !c.begin() {
		return
	}
	now := s.now()
	l := vmList{VMs: []VM{}}
	s.mu.Lock()
	for _, st := range s.vms {
		if (owner == "" || st.vm.Owner == owner) && !now.Before(st.visibleAt) {
			l.VMs = append(l.VMs, st.vm)
		}
	}
	s.mu.Unlock()
	c.ok(l, false)
}

type tokenParams struct {
	Token string `json:"token"`
}

func (s *CloudServer) findByToken(c *rctx) {
	token := c.r.URL.Query().Get("token")
	c.rec.Key = token
	c.params(tokenParams{Token: token})
	if !c.drain() {
		return
	}
	if err := firstErr(checkField("token", token), checkKey("token", token)); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	now := s.now()
	s.mu.Lock()
	if b := s.boundLocked(token, now); b != nil {
		c.rec.Owner = b.st.vm.Owner
	}
	s.mu.Unlock()
	if !c.begin() {
		return
	}
	now = s.now()
	s.mu.Lock()
	b := s.boundLocked(token, now)
	if b == nil || now.Before(b.st.visibleAt) {
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("no instance with client token %q", token))
		return
	}
	vm := b.st.vm
	s.mu.Unlock()
	c.ok(vm, false)
}

func (s *CloudServer) resize(c *rctx) {
	id := c.r.PathValue("id")
	var body resizeBody
	if !c.decode(&body) {
		return
	}
	c.params(idParams{ID: id, Size: body.Size})
	if err := checkField("size", body.Size); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	s.lookupOwner(c, id)
	if !c.begin() {
		return
	}
	vm, effect, err := s.resizeVM(id, body.Size)
	if err != nil {
		c.failWith(err)
		return
	}
	c.ok(vm, effect)
}

func (s *CloudServer) resizeVM(id, size string) (VM, bool, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byID[id]
	switch {
	case st == nil:
		return VM{}, false, &apiError{http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("instance %q does not exist", id)}
	case st.vm.State == "terminated":
		return VM{}, false, &apiError{http.StatusConflict, CodeIncorrectInstanceState, fmt.Sprintf("instance %q is terminated", id)}
	}
	effect := st.vm.Size != size
	st.vm.Size = size
	return st.vm, effect, nil
}

func (s *CloudServer) terminate(c *rctx) {
	id := c.r.PathValue("id")
	c.params(idParams{ID: id})
	if !c.drain() {
		return
	}
	s.lookupOwner(c, id)
	if !c.begin() {
		return
	}
	vms, effect, err := s.terminateVMs([]string{id})
	if err != nil {
		c.failWith(err)
		return
	}
	c.ok(vms[0].now, effect)
}

// termination is one VM a terminate call touched, before and after.
type termination struct{ was, now VM }

// terminateVMs terminates every VM of ids, or none when one does not exist.
func (s *CloudServer) terminateVMs(ids []string) ([]termination, bool, *apiError) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.byID[id] == nil {
			return nil, false, &apiError{http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("instance %q does not exist", id)}
		}
	}
	var out []termination
	effect := false
	for _, id := range ids {
		st := s.byID[id]
		was := st.vm
		if st.vm.State != "terminated" {
			effect = true
			st.vm.State = "terminated"
			st.vm.TerminatedAt = now
		}
		out = append(out, termination{was: was, now: st.vm})
	}
	return out, effect, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
