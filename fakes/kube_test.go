package fakes

import "testing"

func TestKubeConformance(t *testing.T) {
	w := world(t, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "w1").kube
	ctx := ctxT(t)
	d := Deployment{Name: "kvx-i1", Owner: "i1", Size: "small", Replicas: 1}

	a := val(c.Apply(ctx, d)).must(t)
	if a.ResourceVersion == "" || !lastReq(t, w.Kube()).Effect {
		t.Fatalf("apply create: %+v", a)
	}
	if b := val(c.Apply(ctx, d)).must(t); b != a || lastReq(t, w.Kube()).Effect {
		t.Fatalf("idempotent apply changed something: %+v", b)
	}
	d2 := d
	d2.Size = "large"
	b := val(c.Apply(ctx, d2)).must(t)
	if b.ResourceVersion == a.ResourceVersion || b.Size != "large" {
		t.Fatalf("apply change: %+v", b)
	}

	_, err := c.Create(ctx, d)
	wantErr(t, err, "AlreadyExists", IsConflict)
	if err.(*Error).Code != CodeAlreadyExists {
		t.Fatalf("code: %v", err)
	}

	stale := d
	stale.ResourceVersion = a.ResourceVersion
	_, err = c.Update(ctx, stale)
	wantErr(t, err, "stale resourceVersion", IsConflict)
	if err.(*Error).Code != CodeConflict {
		t.Fatalf("code: %v", err)
	}
	_, err = c.Apply(ctx, stale)
	wantErr(t, err, "stale apply precondition", IsConflict)
	fresh := d
	fresh.Replicas = 3
	fresh.ResourceVersion = b.ResourceVersion
	u := val(c.Update(ctx, fresh)).must(t)
	if u.Replicas != 3 || u.ResourceVersion == b.ResourceVersion {
		t.Fatalf("update: %+v", u)
	}
	fresh.ResourceVersion = ""
	fresh.Replicas = 4
	if u2 := val(c.Update(ctx, fresh)).must(t); u2.Replicas != 4 {
		t.Fatalf("unconditional update: %+v", u2)
	}
	_, err = c.Update(ctx, Deployment{Name: "nope", Owner: "i9"})
	wantErr(t, err, "update of absent", IsNotFound)

	if g := val(c.Get(ctx, d.Name)).must(t); g.Replicas != 4 || g.Owner != "i1" {
		t.Fatalf("get: %+v", g)
	}
	val(c.Create(ctx, Deployment{Name: "kvx-i2", Owner: "i2", Size: "small", Replicas: 1})).must(t)
	if l := val(c.List(ctx, "i1")).must(t); len(l) != 1 || l[0].Name != d.Name {
		t.Fatalf("list: %+v", l)
	}
	if l := val(c.List(ctx, "")).must(t); len(l) != 2 || l[0].Name != "kvx-i1" {
		t.Fatalf("list all: %+v", l)
	}
	s := w.Kube().Snapshot()
	if len(s.LiveDeployments("i1")) != 1 || len(s.LiveDeployments("")) != 2 {
		t.Fatalf("snapshot: %+v", s.Deployments)
	}

	if err := c.Delete(ctx, d.Name); err != nil {
		t.Fatal(err)
	}
	if r := lastReq(t, w.Kube()); !r.Effect || r.Owner != "i1" {
		t.Fatalf("delete record: %+v", r)
	}
	wantErr(t, c.Delete(ctx, d.Name), "delete of absent", IsNotFound)
	_, err = c.Get(ctx, d.Name)
	wantErr(t, err, "get of deleted", IsNotFound)
	if len(w.Kube().Snapshot().LiveDeployments("i1")) != 0 {
		t.Fatalf("deleted deployment still live")
	}

	for _, bad := range []Deployment{
		{Name: "Upper", Owner: "i1"},
		{Name: "-x", Owner: "i1"},
		{Name: "ok", Owner: ""},
		{Name: "ok", Owner: "i1", Replicas: -1},
	} {
		_, err := c.Apply(ctx, bad)
		wantErr(t, err, "invalid", IsIntransient)
	}
}
