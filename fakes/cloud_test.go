package fakes

import (
	"testing"
	"time"
)

func TestCloudIdempotencyConformance(t *testing.T) {
	req := CreateVMRequest{Owner: "i1", Size: "small", Region: "eu-1", ClientToken: "tok-1"}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, w *World, clk *ManualClock, c clients)
	}{
		{"replay returns the same VM, one effect", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			b := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			if a != b {
				t.Fatalf("replay differs: %+v vs %+v", a, b)
			}
			s := w.Cloud().Snapshot()
			if len(s.VMs) != 1 || len(s.LiveVMs("i1")) != 1 {
				t.Fatalf("want one VM, got %+v", s.VMs)
			}
			r := s.Requests
			if !r[0].Effect || r[0].Replayed || r[1].Effect || !r[1].Replayed || r[1].Key != "tok-1" {
				t.Fatalf("ledger: %+v", r)
			}
		}},
		{"replay after a resize still matches the original parameters", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			val(c.cloud.ResizeVM(ctxT(t), a.ID, "large")).must(t)
			b := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			if b.ID != a.ID || b.Size != "large" {
				t.Fatalf("got %+v", b)
			}
		}},
		{"mismatch", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			for _, r := range []CreateVMRequest{
				{Owner: "i1", Size: "large", Region: "eu-1", ClientToken: "tok-1"},
				{Owner: "i1", Size: "small", Region: "us-1", ClientToken: "tok-1"},
				{Owner: "i2", Size: "small", Region: "eu-1", ClientToken: "tok-1"},
			} {
				_, err := c.cloud.CreateVM(ctxT(t), r)
				wantErr(t, err, "mismatch", IsMismatch)
				if !IsIntransient(err) || IsTransient(err) || IsAmbiguous(err) {
					t.Fatalf("mismatch classified wrong: %v", err)
				}
			}
			if n := len(w.Cloud().Snapshot().VMs); n != 1 {
				t.Fatalf("want 1 VM, got %d", n)
			}
		}},
		{"no token: every call creates", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			r := req
			r.ClientToken = ""
			a := val(c.cloud.CreateVM(ctxT(t), r)).must(t)
			b := val(c.cloud.CreateVM(ctxT(t), r)).must(t)
			if a.ID == b.ID || len(w.Cloud().Snapshot().LiveVMs("i1")) != 2 {
				t.Fatalf("want two VMs")
			}
		}},
		{"token bound after termination until the TTL, then free", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			a := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			clk.Advance(48 * time.Hour) // a running VM keeps its token
			term := val(c.cloud.TerminateVM(ctxT(t), a.ID)).must(t)
			if term.State != "terminated" || !term.TerminatedAt.Equal(t0.Add(48*time.Hour)) {
				t.Fatalf("terminate: %+v", term)
			}
			clk.Advance(DefaultTTL - time.Second)
			b := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			if b.ID != a.ID || b.State != "terminated" {
				t.Fatalf("within TTL want the terminated VM, got %+v", b)
			}
			val(c.cloud.FindByToken(ctxT(t), req.ClientToken)).must(t)
			clk.Advance(time.Second)
			_, err := c.cloud.FindByToken(ctxT(t), req.ClientToken)
			wantErr(t, err, "not found", IsNotFound)
			d := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			if d.ID == a.ID || d.State != "running" {
				t.Fatalf("after TTL want a new VM, got %+v", d)
			}
			if got := val(c.cloud.FindByToken(ctxT(t), req.ClientToken)).must(t); got.ID != d.ID {
				t.Fatalf("token now finds %s, want %s", got.ID, d.ID)
			}
		}},
		{"custom token TTL", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			w2, err := NewCloudServer(CloudOptions{ServerOptions: ServerOptions{Clock: clk}, TokenTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w2.Close() })
			cc := NewCloudClient(w2.URL(), ClientOptions{})
			a := val(cc.CreateVM(ctxT(t), req)).must(t)
			val(cc.TerminateVM(ctxT(t), a.ID)).must(t)
			clk.Advance(time.Minute)
			if b := val(cc.CreateVM(ctxT(t), req)).must(t); b.ID == a.ID {
				t.Fatalf("token still bound after a 1m TTL")
			}
		}},
		{"read-after-write lag", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			w.Cloud().SetLag(30 * time.Second)
			a := val(c.cloud.CreateVM(ctxT(t), req)).must(t)
			_, err := c.cloud.DescribeVM(ctxT(t), a.ID)
			wantErr(t, err, "not found (lag)", IsNotFound)
			_, err = c.cloud.FindByToken(ctxT(t), req.ClientToken)
			wantErr(t, err, "not found (lag)", IsNotFound)
			if l := val(c.cloud.ListVMs(ctxT(t), "i1")).must(t); len(l) != 0 {
				t.Fatalf("list during lag: %+v", l)
			}
			if b := val(c.cloud.CreateVM(ctxT(t), req)).must(t); b.ID != a.ID {
				t.Fatalf("replay during lag made %s", b.ID)
			}
			if n := len(w.Cloud().Snapshot().LiveVMs("i1")); n != 1 {
				t.Fatalf("ground truth during lag: %d VMs", n)
			}
			clk.Advance(30 * time.Second)
			if got := val(c.cloud.DescribeVM(ctxT(t), a.ID)).must(t); got != a {
				t.Fatalf("after lag: %+v", got)
			}
			if l := val(c.cloud.ListVMs(ctxT(t), "i1")).must(t); len(l) != 1 {
				t.Fatalf("list after lag: %+v", l)
			}
		}},
		{"lag from options", func(t *testing.T, w *World, clk *ManualClock, c clients) {
			w2 := world(t, Options{Clock: clk, Lag: time.Minute})
			cc := clientsFor(w2, "w").cloud
			a := val(cc.CreateVM(ctxT(t), req)).must(t)
			_, err := cc.DescribeVM(ctxT(t), a.ID)
			wantErr(t, err, "not found (lag)", IsNotFound)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := NewManualClock(t0)
			w := world(t, Options{Clock: clk})
			tc.run(t, w, clk, clientsFor(w, "w1"))
		})
	}
}

func TestCloudLifecycle(t *testing.T) {
	w := world(t, Options{Clock: NewManualClock(t0)})
	c := clientsFor(w, "w1").cloud
	ctx := ctxT(t)
	a := val(c.CreateVM(ctx, CreateVMRequest{Owner: "i1", Size: "small", Region: "r"})).must(t)
	b := val(c.CreateVM(ctx, CreateVMRequest{Owner: "i2", Size: "small", Region: "r"})).must(t)
	if a.ID == b.ID || a.State != "running" || !a.CreatedAt.Equal(t0) {
		t.Fatalf("create: %+v %+v", a, b)
	}
	r := val(c.ResizeVM(ctx, a.ID, "medium")).must(t)
	if r.Size != "medium" || !lastReq(t, w.Cloud()).Effect {
		t.Fatalf("resize: %+v", r)
	}
	val(c.ResizeVM(ctx, a.ID, "medium")).must(t)
	if lastReq(t, w.Cloud()).Effect {
		t.Fatalf("resize to the same size had an effect")
	}
	val(c.TerminateVM(ctx, a.ID)).must(t)
	rec := lastReq(t, w.Cloud())
	if !rec.Effect || rec.Owner != "i1" || !rec.Mutation {
		t.Fatalf("terminate record: %+v", rec)
	}
	again := val(c.TerminateVM(ctx, a.ID)).must(t)
	if again.State != "terminated" || lastReq(t, w.Cloud()).Effect {
		t.Fatalf("second terminate: %+v", again)
	}
	_, err := c.ResizeVM(ctx, a.ID, "large")
	wantErr(t, err, "conflict", IsConflict)
	if d := val(c.DescribeVM(ctx, a.ID)).must(t); d.State != "terminated" {
		t.Fatalf("describe terminated: %+v", d)
	}
	for _, f := range []func() error{
		func() error { _, err := c.DescribeVM(ctx, "i-nope"); return err },
		func() error { _, err := c.ResizeVM(ctx, "i-nope", "small"); return err },
		func() error { _, err := c.TerminateVM(ctx, "i-nope"); return err },
		func() error { _, err := c.FindByToken(ctx, "nope"); return err },
		func() error { _, err := c.DescribeVM(ctx, ""); return err },
	} {
		err := f()
		wantErr(t, err, "not found", IsNotFound)
		if IsTransient(err) || IsIntransient(err) {
			t.Fatalf("not-found misclassified: %v", err)
		}
	}
	l1 := val(c.ListVMs(ctx, "i1")).must(t)
	all := val(c.ListVMs(ctx, "")).must(t)
	if len(l1) != 1 || l1[0].ID != a.ID || len(all) != 2 {
		t.Fatalf("list: %+v / %+v", l1, all)
	}
	s := w.Cloud().Snapshot()
	if live := s.LiveVMs(""); len(live) != 1 || live[0].ID != b.ID {
		t.Fatalf("live: %+v", live)
	}
}
