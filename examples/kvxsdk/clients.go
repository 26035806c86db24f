package kvxsdk

import (
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stripe/stripe-go/v85"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
)

// Region is the region the EC2 client signs for; the fake cloud records it
// as the VM's region.
const Region = "us-east-1"

// Clients are a worker's SDK clients.
type Clients struct {
	EC2    *ec2.Client
	Stripe *stripe.Client
	Kube   kubernetes.Interface
}

// ClientOptions tune the SDKs' own retries.
type ClientOptions struct {
	// EC2Attempts is how many attempts aws-sdk-go-v2 makes of one call (it
	// keeps the ClientToken it filled in across them); zero: 3.
	EC2Attempts int
	// StripeRetries is how many times stripe-go retries one call (with the
	// Idempotency-Key it generated, when the caller set none); zero: none,
	// the work runner retries instead.
	StripeRetries int64
}

// NewClients points each SDK at the provider d hands out, through the
// *http.Client the harness instruments (the worker's breakable link and its
// crash points). Each is one call; the rest is tuning:
//
//   - EC2: ec2.New with BaseEndpoint and HTTPClient. ec2.New reads no
//     environment, so AWS_CA_BUNDLE does not matter; config.LoadDefaultConfig
//     with config.WithHTTPClient would refuse a plain *http.Client when it is
//     set (see the README).
//   - Stripe: stripe.NewClient with Backends of URL and HTTPClient.
//   - Kubernetes: kubernetes.NewForConfigAndClient with the URL as Host and
//     the given client.
//
// The SDKs' backoffs are capped well under kvx's 2s provider budget, and
// client-go's client-side rate limit (5 QPS) is off.
func NewClients(d contract.Deps, o ClientOptions) (Clients, error) {
	cloud, billing, kube := d.Service(fakes.ServiceCloud), d.Service(fakes.ServiceBilling), d.Service(fakes.ServiceKube)
	if o.EC2Attempts <= 0 {
		o.EC2Attempts = 3
	}
	ec2c := ec2.New(ec2.Options{
		Region:       Region,
		BaseEndpoint: aws.String(cloud.URL),
		HTTPClient:   cloud.HTTPClient,
		Credentials:  aws.CredentialsProviderFunc(fakeCredentials),
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = o.EC2Attempts
			so.MaxBackoff = 50 * time.Millisecond
			so.RateLimiter = ratelimit.None
		}),
	})
	stripec := stripe.NewClient("sk_test_workproof", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(billing.URL),
		HTTPClient:        billing.HTTPClient,
		MaxNetworkRetries: stripe.Int64(o.StripeRetries),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	kubec, err := kubernetes.NewForConfigAndClient(&rest.Config{Host: kube.URL, QPS: -1}, kube.HTTPClient)
	if err != nil {
		return Clients{}, fmt.Errorf("kvxsdk: kubernetes client: %w", err)
	}
	return Clients{EC2: ec2c, Stripe: stripec, Kube: kubec}, nil
}
