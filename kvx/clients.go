package kvx

import (
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
)

// Clients are a worker's provider clients, built once from its Deps: the
// harness hands out each provider as a base URL and an *http.Client, and kvx
// talks to them through package fakes' small clients, on the fakes' own JSON
// API. A team builds its SDK clients from the same Deps instead: see
// examples/kvxsdk, kvx on aws-sdk-go-v2, stripe-go and client-go.
type Clients struct {
	Cloud   *fakes.CloudClient
	Billing *fakes.BillingClient
	Kube    *fakes.KubeClient
	Email   *fakes.EmailClient
}

// NewClients builds the clients of d's services, each call bounded by
// timeout when its ctx has no earlier deadline.
func NewClients(d contract.Deps, timeout time.Duration) Clients {
	opts := func(name string) (string, fakes.ClientOptions) {
		s := d.Service(name)
		return s.URL, fakes.ClientOptions{HTTPClient: s.HTTPClient, Caller: d.Worker, Timeout: timeout}
	}
	return Clients{
		Cloud:   fakes.NewCloudClient(opts(fakes.ServiceCloud)),
		Billing: fakes.NewBillingClient(opts(fakes.ServiceBilling)),
		Kube:    fakes.NewKubeClient(opts(fakes.ServiceKube)),
		Email:   fakes.NewEmailClient(opts(fakes.ServiceEmail)),
	}
}
