package fakes

// The Kubernetes API in front of the fake API server, apps/v1 Deployments
// only, as client-go's typed clients and controller-runtime's client send
// it: create (POST, 409 AlreadyExists), get, update (PUT, 409 Conflict on a
// stale metadata.resourceVersion), delete, list (labelSelector with =, ==,
// !=), and PATCH — server-side apply (application/apply-patch+yaml, written
// as JSON as client-go does; fieldManager required; it creates when absent)
// or a JSON merge patch (merge-patch+json, and strategic-merge-patch+json
// read as one). Bodies are JSON or protobuf (kube_proto.go); answers are
// JSON, which client-go accepts whatever it sent; errors are metav1.Status,
// so apierrors.IsAlreadyExists, IsConflict, IsNotFound work. Discovery
// (/api, /api/v1, /apis, /apis/apps/v1, /version) answers the legacy
// documents client-go and controller-runtime read first.
//
// A deployment's owner is its label OwnerKey and its size the label
// SizeLabel; replicas default to 1. The object is kept as written (less what
// the server sets: resourceVersion, uid, generation, creationTimestamp,
// managedFields, status), so a get returns what the client wrote; field
// ownership is not modelled (one field manager, force or not). Namespace
// "default" is the JSON API's.

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	kubeColl = "/apis/apps/v1/namespaces/{namespace}/deployments"
	kubeItem = kubeColl + "/{name}"
)

// kubeObject is what the Kubernetes API shows of a deployment besides the
// Deployment itself.
type kubeObject struct {
	obj        map[string]any // as last written through the Kubernetes API, server fields stripped; nil from the JSON API
	uid        string
	created    time.Time
	generation int64
}

func kubeRoutes() []wireRoute {
	fixed := func(method, pattern, endpoint string) wireRoute {
		return wireRoute{method: method, pattern: pattern, endpoint: func(*http.Request, url.Values) string { return endpoint }}
	}
	return []wireRoute{
		fixed(http.MethodGet, "/api", KubeDiscovery),
		fixed(http.MethodGet, "/api/v1", KubeDiscovery),
		fixed(http.MethodGet, "/apis", KubeDiscovery),
		fixed(http.MethodGet, "/apis/apps/v1", KubeDiscovery),
		fixed(http.MethodGet, "/version", KubeDiscovery),
		fixed(http.MethodPost, kubeColl, KubeCreate),
		fixed(http.MethodGet, kubeColl, KubeList),
		fixed(http.MethodGet, "/apis/apps/v1/deployments", KubeList),
		fixed(http.MethodGet, kubeItem, KubeGet),
		fixed(http.MethodPut, kubeItem, KubeUpdate),
		fixed(http.MethodPatch, kubeItem, KubeApply),
		fixed(http.MethodDelete, kubeItem, KubeDelete),
	}
}

// kubeNS maps a namespace of the API to the fake's ("default" is "").
func kubeNS(ns string) string {
	if ns == "default" {
		return ""
	}
	return ns
}

func kubeNSOut(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// kubeBody reads an object (or a patch) in the request's content type.
func (c *rctx) kubeBody(patch bool) (map[string]any, bool) {
	b, ok := c.body()
	if !ok {
		return nil, false
	}
	mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	var obj map[string]any
	var err error
	switch {
	case mt == "application/vnd.kubernetes.protobuf" && !patch:
		obj, err = decodeKubeProto(b)
		if errors.Is(err, errProtoUnsupported) {
			c.reject(http.StatusUnsupportedMediaType, CodeInvalidRequest,
				err.Error()+": the fake decodes a subset of Deployment protobuf; set rest.Config.ContentType to application/json")
			return nil, false
		}
	case !patch && (mt == "application/json" || mt == ""),
		patch && (mt == "application/apply-patch+yaml" || mt == "application/merge-patch+json" || mt == "application/strategic-merge-patch+json"):
		err = json.Unmarshal(b, &obj)
		if err != nil && mt == "application/apply-patch+yaml" {
			err = fmt.Errorf("%w (the fake reads apply patches written as JSON, as client-go sends them)", err)
		}
	default:
		c.reject(http.StatusUnsupportedMediaType, CodeInvalidRequest, fmt.Sprintf("content type %q is not supported here", mt))
		return nil, false
	}
	if err == nil && obj == nil {
		err = errors.New("the body is not an object")
	}
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "decode body: "+err.Error())
		return nil, false
	}
	return obj, true
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// kubeModel reads the Deployment an object describes; pathName, when not
// empty, is the name in the URL it must agree with.
func kubeModel(obj map[string]any, ns, pathName string) (Deployment, *apiError) {
	meta := asMap(obj["metadata"])
	name, _ := meta["name"].(string)
	if name == "" {
		name = pathName
	}
	labels := asMap(meta["labels"])
	owner, _ := labels[OwnerKey].(string)
	size, _ := labels[SizeLabel].(string)
	rv, _ := meta["resourceVersion"].(string)
	d := Deployment{Namespace: kubeNS(ns), Name: name, Owner: owner, Size: size, Replicas: 1, ResourceVersion: rv}
	bad := func(status int, code, format string, a ...any) (Deployment, *apiError) {
		return d, &apiError{status, code, fmt.Sprintf(format, a...)}
	}
	if r, ok := asMap(obj["spec"])["replicas"]; ok {
		f, isNum := r.(float64)
		if !isNum || f != float64(int(f)) || f < 0 || f > MaxReplicas {
			return bad(http.StatusUnprocessableEntity, CodeInvalid, "spec.replicas: Invalid value: %v: must be an integer in 0..%d", r, MaxReplicas)
		}
		d.Replicas = int(f)
	}
	if v, _ := obj["apiVersion"].(string); v != "" && v != "apps/v1" {
		return bad(http.StatusBadRequest, CodeInvalidRequest, "apiVersion %q: this is apps/v1", v)
	}
	if k, _ := obj["kind"].(string); k != "" && k != "Deployment" {
		return bad(http.StatusBadRequest, CodeInvalidRequest, "kind %q: this is Deployment", k)
	}
	if mns, _ := meta["namespace"].(string); mns != "" && mns != ns {
		return bad(http.StatusBadRequest, CodeInvalidRequest, "the namespace of the object (%s) does not match the namespace on the request (%s)", mns, ns)
	}
	if pathName != "" && name != pathName {
		return bad(http.StatusBadRequest, CodeInvalidRequest, "the name of the object (%s) does not match the name on the URL (%s)", name, pathName)
	}
	if err := checkName(name); err != nil {
		return bad(http.StatusUnprocessableEntity, CodeInvalid, "metadata.name: Invalid value: %v", err)
	}
	if err := checkName(kubeNSOut(ns)); err != nil {
		return bad(http.StatusUnprocessableEntity, CodeInvalid, "metadata.namespace: Invalid value: %v", err)
	}
	if err := checkField("metadata.labels["+OwnerKey+"]", owner); err != nil {
		return bad(http.StatusUnprocessableEntity, CodeInvalid, "%v: every deployment names its owning instance", err)
	}
	if len(size) > MaxKeyLen || len(rv) > 20 {
		return bad(http.StatusUnprocessableEntity, CodeInvalid, "metadata: size label or resourceVersion too long")
	}
	return d, nil
}

// kubeStrip is obj less what the server sets.
func kubeStrip(obj map[string]any) map[string]any {
	out := deepCopyJSON(obj)
	delete(out, "status")
	delete(out, "apiVersion")
	delete(out, "kind")
	if meta := asMap(out["metadata"]); meta != nil {
		for _, k := range []string{"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields", "selfLink", "namespace"} {
			delete(meta, k)
		}
	}
	return out
}

func deepCopyJSON(m map[string]any) map[string]any {
	var out map[string]any
	if err := json.Unmarshal(mustJSON(m), &out); err != nil || out == nil {
		return map[string]any{}
	}
	return out
}

func sameJSON(a, b map[string]any) bool { return string(mustJSON(a)) == string(mustJSON(b)) }

// storedLocked is the object a deployment is, server fields stripped: as
// written through the Kubernetes API, or made up from a JSON-API write.
func (s *KubeServer) storedLocked(d *Deployment) map[string]any {
	if w := s.wire[kubeKey(d.Namespace, d.Name)]; w != nil && w.obj != nil {
		return deepCopyJSON(w.obj)
	}
	sel := map[string]any{OwnerKey: d.Owner}
	return map[string]any{
		"metadata": map[string]any{"name": d.Name, "labels": map[string]any{OwnerKey: d.Owner, SizeLabel: d.Size}},
		"spec": map[string]any{
			"replicas": float64(d.Replicas),
			"selector": map[string]any{"matchLabels": sel},
			"template": map[string]any{"metadata": map[string]any{"labels": sel}},
		},
	}
}

// renderLocked is the deployment as the Kubernetes API answers it.
func (s *KubeServer) renderLocked(d *Deployment) map[string]any {
	obj := s.storedLocked(d)
	w := s.wire[kubeKey(d.Namespace, d.Name)]
	obj["apiVersion"], obj["kind"] = "apps/v1", "Deployment"
	meta := asMap(obj["metadata"])
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	meta["name"], meta["namespace"], meta["resourceVersion"] = d.Name, kubeNSOut(d.Namespace), d.ResourceVersion
	if w != nil {
		meta["uid"], meta["generation"] = w.uid, w.generation
		meta["creationTimestamp"] = w.created.UTC().Format(time.RFC3339)
	}
	spec := asMap(obj["spec"])
	if spec == nil {
		spec = map[string]any{}
		obj["spec"] = spec
	}
	spec["replicas"] = d.Replicas
	gen := int64(0)
	if w != nil {
		gen = w.generation
	}
	obj["status"] = map[string]any{"observedGeneration": gen, "replicas": d.Replicas, "updatedReplicas": d.Replicas,
		"readyReplicas": d.Replicas, "availableReplicas": d.Replicas}
	return obj
}

func kubeNotFound(name string) *apiError {
	return &apiError{http.StatusNotFound, CodeNotFound, fmt.Sprintf("deployments.apps %q not found", name)}
}

func kubeConflict(name string) *apiError {
	return &apiError{http.StatusConflict, CodeConflict, fmt.Sprintf(
		"Operation cannot be fulfilled on deployments.apps %q: the object has been modified; please apply your changes to the latest version and try again", name)}
}

func (s *KubeServer) kubeCreate(c *rctx) {
	ns := c.r.PathValue("namespace")
	obj, ok := c.kubeBody(false)
	if !ok {
		return
	}
	d, err := kubeModel(obj, ns, "")
	c.rec.Owner = d.Owner
	c.params(d)
	if err != nil {
		c.reject(err.status, err.code, err.msg)
		return
	}
	if !c.begin() {
		return
	}
	s.mu.Lock()
	if s.deps[kubeKey(d.Namespace, d.Name)] != nil {
		s.mu.Unlock()
		c.fail(http.StatusConflict, CodeAlreadyExists, fmt.Sprintf("deployments.apps %q already exists", d.Name))
		return
	}
	d.ResourceVersion = ""
	out, _ := s.putLocked(d, kubeStrip(obj))
	body := mustJSON(s.renderLocked(&out))
	s.mu.Unlock()
	c.reply(http.StatusCreated, body, true, "")
}

func (s *KubeServer) kubeUpdate(c *rctx) {
	ns, name := c.r.PathValue("namespace"), c.r.PathValue("name")
	obj, ok := c.kubeBody(false)
	if !ok {
		return
	}
	d, err := kubeModel(obj, ns, name)
	c.rec.Owner = d.Owner
	c.params(d)
	if err != nil {
		c.reject(err.status, err.code, err.msg)
		return
	}
	if !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[kubeKey(d.Namespace, d.Name)]
	switch {
	case cur == nil:
		s.mu.Unlock()
		c.failWith(kubeNotFound(name))
		return
	case d.ResourceVersion != "" && d.ResourceVersion != cur.ResourceVersion:
		s.mu.Unlock()
		c.failWith(kubeConflict(name))
		return
	}
	out, effect := s.putLocked(d, kubeStrip(obj))
	body := mustJSON(s.renderLocked(&out))
	s.mu.Unlock()
	c.reply(http.StatusOK, body, effect, "")
}

// kubePatch is server-side apply, or a merge patch, of one deployment.
func (s *KubeServer) kubePatch(c *rctx) {
	ns, name := c.r.PathValue("namespace"), c.r.PathValue("name")
	mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	apply := mt == "application/apply-patch+yaml"
	patch, ok := c.kubeBody(true)
	if !ok {
		return
	}
	c.params(struct {
		Name  string         `json:"name"`
		Type  string         `json:"type"`
		Patch map[string]any `json:"patch"`
	}{name, mt, patch})
	if apply && c.r.URL.Query().Get("fieldManager") == "" {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
		return
	}
	// The owner the record names is the one the patch or the object names.
	s.mu.Lock()
	if cur := s.deps[kubeKey(kubeNS(ns), name)]; cur != nil {
		c.rec.Owner = cur.Owner
	}
	s.mu.Unlock()
	if o, _ := asMap(asMap(patch["metadata"])["labels"])[OwnerKey].(string); o != "" {
		c.rec.Owner = o
	}
	if d, err := kubeModel(patch, ns, name); apply && err != nil && err.code != CodeInvalid {
		c.reject(err.status, err.code, err.msg)
		return
	} else if apply && err == nil {
		c.params(d)
	}
	if !c.begin() {
		return
	}
	s.mu.Lock()
	cur := s.deps[kubeKey(kubeNS(ns), name)]
	if cur == nil && !apply {
		s.mu.Unlock()
		c.failWith(kubeNotFound(name))
		return
	}
	base := map[string]any{}
	if cur != nil {
		base = s.storedLocked(cur)
	}
	rv, _ := asMap(patch["metadata"])["resourceVersion"].(string)
	merged := mergePatch(base, patch)
	d, err := kubeModel(merged, ns, name)
	switch {
	case err != nil:
		s.mu.Unlock()
		c.failWith(err)
		return
	case rv != "" && (cur == nil || cur.ResourceVersion != rv):
		s.mu.Unlock()
		c.failWith(kubeConflict(name))
		return
	}
	out, effect := s.putLocked(d, kubeStrip(merged))
	body := mustJSON(s.renderLocked(&out))
	s.mu.Unlock()
	status := http.StatusOK
	if cur == nil {
		status = http.StatusCreated
	}
	c.reply(status, body, effect, "")
}

// mergePatch applies an RFC 7386 JSON merge patch: objects merge, null
// removes, anything else replaces.
func mergePatch(base, patch map[string]any) map[string]any {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(base, k)
		case map[string]any:
			bm, _ := base[k].(map[string]any)
			if bm == nil {
				bm = map[string]any{}
			}
			base[k] = mergePatch(bm, pv)
		default:
			base[k] = v
		}
	}
	return base
}

// kubeByName prepares a request naming one deployment in its path.
func (s *KubeServer) kubeByName(c *rctx) (ns, name string, ok bool) {
	ns, name = c.r.PathValue("namespace"), c.r.PathValue("name")
	c.params(nameParams{Name: name})
	if err := firstErr(checkName(name), checkName(ns)); err != nil {
		c.reject(http.StatusUnprocessableEntity, CodeInvalid, err.Error())
		return "", "", false
	}
	s.mu.Lock()
	if d := s.deps[kubeKey(kubeNS(ns), name)]; d != nil {
		c.rec.Owner = d.Owner
	}
	s.mu.Unlock()
	return kubeNS(ns), name, c.begin()
}

func (s *KubeServer) kubeGet(c *rctx) {
	if !c.drain() {
		return
	}
	ns, name, ok := s.kubeByName(c)
	if !ok {
		return
	}
	s.mu.Lock()
	d := s.deps[kubeKey(ns, name)]
	if d == nil {
		s.mu.Unlock()
		c.failWith(kubeNotFound(name))
		return
	}
	body := mustJSON(s.renderLocked(d))
	s.mu.Unlock()
	c.reply(http.StatusOK, body, false, "")
}

func (s *KubeServer) kubeDelete(c *rctx) {
	// The body, if any, is DeleteOptions (client-go sends one, in its
	// content type): read, and not acted on.
	if _, ok := c.body(); !ok {
		return
	}
	ns, name, ok := s.kubeByName(c)
	if !ok {
		return
	}
	s.mu.Lock()
	k := kubeKey(ns, name)
	d := s.deps[k]
	if d == nil {
		s.mu.Unlock()
		c.failWith(kubeNotFound(name))
		return
	}
	uid := ""
	if w := s.wire[k]; w != nil {
		uid = w.uid
	}
	delete(s.deps, k)
	delete(s.wire, k)
	s.mu.Unlock()
	c.reply(http.StatusOK, mustJSON(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Success",
		"details": map[string]any{"name": name, "group": "apps", "kind": "deployments", "uid": uid},
	}), true, "")
}

type kubeRequirement struct {
	key, value string
	not        bool
}

// parseSelector reads a label selector of equality requirements.
func parseSelector(sel string) ([]kubeRequirement, error) {
	var out []kubeRequirement
	if strings.TrimSpace(sel) == "" {
		return nil, nil
	}
	for _, term := range strings.Split(sel, ",") {
		var r kubeRequirement
		var ok bool
		if r.key, r.value, ok = strings.Cut(term, "!="); ok {
			r.not = true
		} else if r.key, r.value, ok = strings.Cut(term, "=="); !ok {
			if r.key, r.value, ok = strings.Cut(term, "="); !ok {
				return nil, fmt.Errorf("label selector term %q: the fake understands k=v, k==v and k!=v", term)
			}
		}
		r.key, r.value = strings.TrimSpace(r.key), strings.TrimSpace(r.value)
		out = append(out, r)
	}
	return out, nil
}

func (s *KubeServer) kubeList(c *rctx) {
	ns := c.r.PathValue("namespace")
	reqs, err := parseSelector(c.r.URL.Query().Get("labelSelector"))
	var p ownerParams
	for _, r := range reqs {
		if r.key == OwnerKey && !r.not {
			p.Owner = r.value
		}
	}
	c.rec.Owner = p.Owner
	c.params(p)
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	if !c.drain() || !c.begin() {
		return
	}
	s.mu.Lock()
	keys := make([]string, 0, len(s.deps))
	for k := range s.deps {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	items := []any{}
	for _, k := range keys {
		d := s.deps[k]
		if ns != "" && d.Namespace != kubeNS(ns) {
			continue
		}
		obj := s.renderLocked(d)
		labels := asMap(asMap(obj["metadata"])["labels"])
		match := true
		for _, r := range reqs {
			v, has := labels[r.key].(string)
			match = match && (has && v == r.value) != r.not
		}
		if match {
			items = append(items, obj)
		}
	}
	rev := strconv.FormatInt(s.rev, 10)
	s.mu.Unlock()
	c.reply(http.StatusOK, mustJSON(map[string]any{
		"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": map[string]any{"resourceVersion": rev}, "items": items,
	}), false, "")
}

// kubeDiscovery answers the legacy discovery documents.
func (s *KubeServer) kubeDiscovery(c *rctx) {
	c.params(struct {
		Path string `json:"path"`
	}{c.r.URL.Path})
	if !c.drain() || !c.begin() {
		return
	}
	verbs := []string{"create", "delete", "get", "list", "patch", "update"}
	var doc any
	switch c.r.URL.Path {
	case "/api":
		doc = map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]any{"clientCIDR": "0.0.0.0/0", "serverAddress": c.r.Host}}}
	case "/api/v1":
		doc = map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": []any{}}
	case "/apis":
		gv := map[string]any{"groupVersion": "apps/v1", "version": "v1"}
		doc = map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{
			map[string]any{"name": "apps", "versions": []any{gv}, "preferredVersion": gv},
		}}
	case "/apis/apps/v1":
		doc = map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": []any{
			map[string]any{"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
				"verbs": verbs, "shortNames": []string{"deploy"}},
		}}
	default: // /version
		doc = map[string]any{"major": "1", "minor": "37", "gitVersion": "v1.37.0-workproof", "platform": "linux/amd64"}
	}
	c.reply(http.StatusOK, mustJSON(doc), false, "")
}

// kubeAPI is the Kubernetes API's way of answering: errors are a
// metav1.Status whose reason apierrors reads.
type kubeAPI struct{}

func (kubeAPI) contentType() string { return "application/json" }

var kubeReasons = map[string]string{
	CodeAlreadyExists:   "AlreadyExists",
	CodeConflict:        "Conflict",
	CodeNotFound:        "NotFound",
	CodeInvalid:         "Invalid",
	CodeInvalidRequest:  "BadRequest",
	CodeUnknownEndpoint: "NotFound",
	CodeTooLarge:        "RequestEntityTooLarge",
	CodeUnavailable:     "ServiceUnavailable",
	CodeShuttingDown:    "ServiceUnavailable",
	CodeThrottled:       "TooManyRequests",
	CodeInternal:        "InternalError",
}

var kubeStatusReasons = map[int]string{
	400: "BadRequest", 404: "NotFound", 409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid",
	429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}

func (kubeAPI) errorBody(status int, code, msg string) []byte {
	reason, ok := kubeReasons[code]
	if !ok {
		reason = kubeStatusReasons[status]
	}
	if status == http.StatusUnsupportedMediaType {
		reason = "UnsupportedMediaType"
	}
	return mustJSON(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": msg, "reason": reason, "code": status,
	})
}
