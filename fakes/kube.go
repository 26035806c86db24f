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
// changes nothing keeps the resourceVersion and has no effect. The same
// endpoints speak the Kubernetes API for apps/v1 Deployments (see
// kube_api.go), as client-go and controller-runtime send it; this JSON API
// addresses the namespace "default" (Deployment.Namespace "").
type KubeServer struct {
	*server

	mu   sync.Mutex
	rev  int64
	deps map[string]*Deployment // by kubeKey
	wire map[string]*kubeObject // by kubeKey: what the Kubernetes API shows besides the Deployment
}

// kubeKey keys a deployment by namespace ("" is "default") and name.
func kubeKey(namespace, name string) string { return namespace + "/" + name }

func kubeSpec() Spec {
	return newSpec(ServiceKube, "a Kubernetes API server, deployments only: apply, create (409 when present), update by resourceVersion, delete", false,
		func(_ Options, so ServerOptions) (Server, error) {
			return NewKubeServer(KubeOptions{ServerOptions: so})
		},
		[]Endpoint{
			ep(KubeApply, http.MethodPatch, "/deployments/{name}", true, "PATCH "+kubeItem+" (apply-patch+yaml: server-side apply; merge-patch+json)"),
			ep(KubeCreate, http.MethodPost, "/deployments", true, "POST "+kubeColl),
			ep(KubeGet, http.MethodGet, "/deployments/{name}", false, "GET "+kubeItem),
			ep(KubeUpdate, http.MethodPut, "/deployments/{name}", true, "PUT "+kubeItem),
			ep(KubeDelete, http.MethodDelete, "/deployments/{name}", true, "DELETE "+kubeItem),
			ep(KubeList, http.MethodGet, "/deployments", false, "GET "+kubeColl+"?labelSelector=", "GET /apis/apps/v1/deployments"),
			ep(KubeDiscovery, http.MethodGet, "", false, "GET /api", "GET /api/v1", "GET /apis", "GET /apis/apps/v1", "GET /version"),
		},
		kubeRoutes()...,
	)
}

// NewKubeServer starts a fake Kubernetes API server on loopback.
func NewKubeServer(opts KubeOptions) (*KubeServer, error) {
	spec := kubeSpec()
	srv, err := newServer(spec.Name, opts.ServerOptions)
	if err != nil {
		return nil, err
	}
	s := &KubeServer{server: srv, deps: make(map[string]*Deployment), wire: make(map[string]*kubeObject)}
	spec.route(srv, map[string]func(*rctx){
		KubeApply: s.apply, KubeCreate: s.create, KubeGet: s.get,
		KubeUpdate: s.update, KubeDelete: s.delete, KubeList: s.list,
	})
	spec.routeWire(srv, kubeAPI{}, map[string]func(*rctx){
		KubeApply: s.kubePatch, KubeCreate: s.kubeCreate, KubeGet: s.kubeGet, KubeUpdate: s.kubeUpdate,
		KubeDelete: s.kubeDelete, KubeList: s.kubeList, KubeDiscovery: s.kubeDiscovery,
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
	slices.SortFunc(ds, func(a, b Deployment) int {
		return strings.Compare(kubeKey(a.Namespace, a.Name), kubeKey(b.Namespace, b.Name))
	})
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
	d.Namespace = "" // the JSON API addresses "default" only
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
// resourceVersion only when something changed. obj is the object as the
// Kubernetes API wrote it (nil from the JSON API).
func (s *KubeServer) putLocked(d Deployment, obj map[string]any) (Deployment, bool) {
	k := kubeKey(d.Namespace, d.Name)
	cur, w := s.deps[k], s.wire[k]
	var was map[string]any
	if w != nil {
		was = w.obj
	}
	if cur != nil && sameSpec(cur, &d) && (was == nil && obj == nil || was != nil && obj != nil && sameJSON(was, obj)) {
		return *cur, false
	}
	s.rev++
	d.ResourceVersion = strconv.FormatInt(s.rev, 10)
	s.deps[k] = &d
	if w == nil || cur == nil {
		w = &kubeObject{uid: fmt.Sprintf("00000000-0000-4000-8000-%012d", s.rev), created: s.now()}
		s.wire[k] = w
	}
	w.obj = obj
	w.generation++
	return d, true
}

func (s *KubeServer) apply(c *rctx) {
	d, ok := s.decodeDeployment(c, c.r.PathValue("name"))
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[kubeKey("", d.Name)]
	if d.ResourceVersion != "" && (cur == nil || cur.ResourceVersion != d.ResourceVersion) {
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeConflict, fmt.Sprintf("deployment %q: the object has been modified", d.Name))
		return
	}
	out, effect := s.putLocked(d, nil)
	s.mu.Unlock()
	c.ok(out, effect)
}

func (s *KubeServer) create(c *rctx) {
	d, ok := s.decodeDeployment(c, "")
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	if s.deps[kubeKey("", d.Name)] != nil {
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeAlreadyExists, fmt.Sprintf("deployment %q already exists", d.Name))
		return
	}
	out, _ := s.putLocked(d, nil)
	s.mu.Unlock()
	c.reply(http.StatusCreated, mustJSON(out), true, "")
}

func (s *KubeServer) update(c *rctx) {
	d, ok := s.decodeDeployment(c, c.r.PathValue("name"))
	if !ok || !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[kubeKey("", d.Name)]
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
	out, effect := s.putLocked(d, nil)
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
	if d := s.deps[kubeKey("", name)]; d != nil {
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
	d := s.deps[kubeKey("", name)]
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
	d := s.deps[kubeKey("", name)]
	if d == nil {
		s.mu.Unlock()
		c.fail(http.StatusNotFound, CodeNotFound, fmt.Sprintf("deployment %q not found", name))
		return
	}
	delete(s.deps, kubeKey("", name))
	delete(s.wire, kubeKey("", name))
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
		if d.Namespace == "" && (owner == "" || d.Owner == owner) {
			l.Deployments = append(l.Deployments, *d)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(l.Deployments, func(a, b Deployment) int { return strings.Compare(a.Name, b.Name) })
	c.ok(l, false)
}
