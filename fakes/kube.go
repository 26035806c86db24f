package fakes

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// KubeOptions configures the fake Kubernetes API server.
type KubeOptions struct {
	ServerOptions
}

// MaxReplicas caps Deployment.Replicas (422 above it).
const MaxReplicas = 1000

// KubeServer is the fake Kubernetes API server, deployments only. Endpoints
// (JSON): PATCH /deployments/{name} (Apply), POST /deployments (Create), GET
// /deployments/{name} (Get), PUT /deployments/{name} (Update), DELETE
// /deployments/{name} (Delete), GET /deployments?owner= (List).
// ResourceVersions come from one counter, like etcd revisions; a write that
// changes nothing keeps the resourceVersion and has no effect.
type KubeServer struct {
	*server

	mu   sync.Mutex
	rev  int64
	deps map[string]*Deployment
}

func kubeSpec() Spec {
	return newSpec(ServiceKube, "a Kubernetes API server, deployments only: apply, create (409 when present), update by resourceVersion, delete", false,
		func(_ Options, so ServerOptions) (Server, error) {
			return NewKubeServer(KubeOptions{ServerOptions: so})
		},
		ep(KubeApply, http.MethodPatch, "/deployments/{name}", true),
		ep(KubeCreate, http.MethodPost, "/deployments", true),
		ep(KubeGet, http.MethodGet, "/deployments/{name}", false),
		ep(KubeUpdate, http.MethodPut, "/deployments/{name}", true),
		ep(KubeDelete, http.MethodDelete, "/deployments/{name}", true),
		ep(KubeList, http.MethodGet, "/deployments", false),
	)
}

// NewKubeServer starts a fake Kubernetes API server on loopback.
func NewKubeServer(opts KubeOptions) (*KubeServer, error) {
	spec := kubeSpec()
	srv, err := newServer(spec.Name, opts.ServerOptions)
	if err != nil {
		return nil, err
	}
	s := &KubeServer{server: srv, deps: make(map[string]*Deployment)}
	spec.route(srv, map[string]func(*rctx){
		KubeApply: s.apply, KubeCreate: s.create, KubeGet: s.get,
		KubeUpdate: s.update, KubeDelete: s.delete, KubeList: s.list,
	})
	if err := srv.start(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Service returns "kube".
func (s *KubeServer) Service() string { return "kube" }

// Snapshot returns the live deployments (by name) and the request ledger.
func (s *KubeServer) Snapshot() Snapshot {
	s.mu.Lock()
	ds := make([]Deployment, 0, len(s.deps))
	for _, d := range s.deps {
		ds = append(ds, *d)
	}
	s.mu.Unlock()
	slices.SortFunc(ds, func(a, b Deployment) int { return strings.Compare(a.Name, b.Name) })
	return Snapshot{Deployments: ds, Requests: s.requests()}
}

// checkName validates a DNS-1123 subdomain, as Kubernetes does.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("missing name")
	}
	if len(name) > 253 {
		return fmt.Errorf("name longer than 253 characters")
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		alnum := b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if !alnum && (b != '-' && b != '.' || i == 0 || i == len(name)-1) {
			return fmt.Errorf("name %q is not a DNS-1123 subdomain", name)
		}
	}
	return nil
}

// decodeDeployment reads and validates a deployment body; pathName, when not
// empty, is the name in the URL the body must agree with.
func (s *KubeServer) decodeDeployment(c *rctx, pathName string) (Deployment, bool) {
	var d Deployment
	if !c.decode(&d) {
		return d, false
	}
	if pathName != "" && d.Name == "" {
		d.Name = pathName
	}
	c.rec.Owner = d.Owner
	c.params(d)
	err := firstErr(checkName(d.Name), checkField("owner", d.Owner))
	switch {
	case err != nil:
	case pathName != "" && d.Name != pathName:
		err = fmt.Errorf("name %q in the body does not match %q in the path", d.Name, pathName)
	case len(d.Size) > MaxKeyLen:
		err = fmt.Errorf("size longer than %d bytes", MaxKeyLen)
	case d.Replicas < 0 || d.Replicas > MaxReplicas:
		err = fmt.Errorf("replicas %d outside 0..%d", d.Replicas, MaxReplicas)
	case len(d.ResourceVersion) > 20:
		err = fmt.Errorf("resource_version too long")
	}
	if err != nil {
		c.reject(http.StatusUnprocessableEntity, CodeInvalid, err.Error())
		return d, false
	}
	return d, true
}

func sameSpec(a, b *Deployment) bool {
	return a.Owner == b.Owner && a.Size == b.Size && a.Replicas == b.Replicas
}

// putLocked stores d as the new state of its name, bumping the
// resourceVersion only when something changed.
func (s *KubeServer) putLocked(d Deployment) (Deployment, bool) {
	if cur := s.deps[d.Name]; cur != nil && sameSpec(cur, &d) {
		return *cur, false
	}
	s.rev++
	d.ResourceVersion = strconv.FormatInt(s.rev, 10)
	s.deps[d.Name] = &d
	return d, true
}

func (s *KubeServer) apply(c *rctx) {
	d, ok := s.decodeDeployment(c, c.r.PathValue("name"))
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[d.Name]
	if d.ResourceVersion != "" && (cur == nil || cur.ResourceVersion != d.ResourceVersion) {
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeConflict, fmt.Sprintf("deployment %q: the object has been modified", d.Name))
		return
	}
	out, effect := s.putLocked(d)
	s.mu.Unlock()
	c.ok(out, effect)
}

func (s *KubeServer) create(c *rctx) {
	d, ok := s.decodeDeployment(c, "")
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	if s.deps[d.Name] != nil {
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeAlreadyExists, fmt.Sprintf("deployment %q already exists", d.Name))
		return
	}
	out, _ := s.putLocked(d)
	s.mu.Unlock()
	c.reply(http.StatusCreated, mustJSON(out), true, "")
}

func (s *KubeServer) update(c *rctx) {
	d, ok := s.decodeDeployment(c, c.r.PathValue("name"))
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[d.Name]
	switch {
	case cur == nil:
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeNotFound, fmt.Sprintf("deployment %q not found", d.Name))
		return
	case d.ResourceVersion != "" && cur.ResourceVersion != d.ResourceVersion:
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeConflict, fmt.Sprintf("deployment %q: the object has been modified", d.Name))
		return
	}
	out, effect := s.putLocked(d)
	s.mu.Unlock()
	c.ok(out, effect)
}

type nameParams struct {
	Name string `json:"name"`
}

// byName prepares a request naming a deployment in its path.
func (s *KubeServer) byName(c *rctx) (string, bool) {
	name := c.r.PathValue("name")
	c.params(nameParams{Name: name})
	if !c.drain() {
		return "", false
	}
	if err := checkName(name); err != nil {
		c.reject(http.StatusUnprocessableEntity, CodeInvalid, err.Error())
		return "", false
	}
	s.mu.Lock()
	if d := s.deps[name]; d != nil {
		c.rec.Owner = d.Owner
	}
	s.mu.Unlock()
	return name, c.begin()
}

func (s *KubeServer) get(c *rctx) {
	name, ok := s.byName(c)
	if !ok {
		return
	}
	s.mu.Lock()
	d := s.deps[name]
	if d == nil {
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeNotFound, fmt.Sprintf("deployment %q not found", name))
		return
	}
	out := *d
	s.mu.Unlock()
	c.ok(out, false)
}

func (s *KubeServer) delete(c *rctx) {
	name, ok := s.byName(c)
	if !ok {
		return
	}
	s.mu.Lock()
	d := s.deps[name]
	if d == nil {
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeNotFound, fmt.Sprintf("deployment %q not found", name))
		return
	}
	delete(s.deps, name)
	out := *d
	s.mu.Unlock()
	c.ok(out, true)
}

func (s *KubeServer) list(c *rctx) {
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
	l := deploymentList{Deployments: []Deployment{}}
	s.mu.Lock()
	for _, d := range s.deps {
		if owner == "" || d.Owner == owner {
			l.Deployments = append(l.Deployments, *d)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(l.Deployments, func(a, b Deployment) int { return strings.Compare(a.Name, b.Name) })
	c.ok(l, false)
}
