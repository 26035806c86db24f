// Package fakestest starts the fake providers for a test and closes them when
// the test ends.
package fakestest

import (
	"testing"

	"github.com/workproof/workproof/fakes"
)

// World starts the four fakes for one test (closed in t.Cleanup).
func World(t testing.TB, opts fakes.Options) *fakes.World {
	t.Helper()
	w, err := fakes.Start(opts)
	if err != nil {
		t.Fatalf("fakestest: start fakes: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("fakestest: close fakes: %v", err)
		}
	})
	return w
}

// Clients are the four clients of one caller.
type Clients struct {
	Cloud   *fakes.CloudClient
	Billing *fakes.BillingClient
	Kube    *fakes.KubeClient
	Email   *fakes.EmailClient
}

// ClientsFor builds clients that call w directly (no proxy) as caller.
func ClientsFor(w *fakes.World, caller string) Clients {
	o := fakes.ClientOptions{Caller: caller}
	return Clients{
		Cloud:   fakes.NewCloudClient(w.Cloud().URL(), o),
		Billing: fakes.NewBillingClient(w.Billing().URL(), o),
		Kube:    fakes.NewKubeClient(w.Kube().URL(), o),
		Email:   fakes.NewEmailClient(w.Email().URL(), o),
	}
}
