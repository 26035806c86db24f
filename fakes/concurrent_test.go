package fakes

import (
	"fmt"
	"sync"
	"testing"
)

// Racing requests with one key (token, name) make exactly one resource.
func TestConcurrentSameKey(t *testing.T) {
	w := world(t, Options{})
	const n = 8
	var wg sync.WaitGroup
	vmIDs := make([]string, n)
	kubeErrs := make([]error, n)
	chargeErrs := make([]error, n)
	for i := range n {
		c := clientsFor(w, fmt.Sprintf("w%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := c.cloud.CreateVM(ctxT(t), CreateVMRequest{Owner: "i1", Size: "s", Region: "r", ClientToken: "tok"})
			if err == nil {
				vmIDs[i] = vm.ID
			}
			_, kubeErrs[i] = c.kube.Create(ctxT(t), Deployment{Name: "d", Owner: "i1"})
			_, chargeErrs[i] = c.billing.CreateCharge(ctxT(t), ChargeRequest{Customer: "c", Owner: "i1", Amount: 1, Event: "e", IdempotencyKey: "k"})
		}()
	}
	wg.Wait()
	for i, id := range vmIDs {
		if id == "" || id != vmIDs[0] {
			t.Fatalf("worker %d got VM %q, worker 0 %q", i, id, vmIDs[0])
		}
	}
	created := 0
	for _, err := range kubeErrs {
		switch {
		case err == nil:
			created++
		case !IsConflict(err):
			t.Fatalf("kube: %v", err)
		}
	}
	for _, err := range chargeErrs {
		if err != nil && !IsConflict(err) { // 409 when it overlapped the first
			t.Fatalf("billing: %v", err)
		}
	}
	s := w.Snapshot()
	if created != 1 || len(s.VMs) != 1 || len(s.Deployments) != 1 || len(s.Charges) != 1 {
		t.Fatalf("created %d deployments; %d VMs, %d deployments, %d charges", created, len(s.VMs), len(s.Deployments), len(s.Charges))
	}
	effects := 0
	for _, r := range s.Requests {
		if r.Effect {
			effects++
		}
	}
	if effects != 3 {
		t.Fatalf("%d effects recorded, want 3", effects)
	}
}
