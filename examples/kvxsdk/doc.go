// Package kvxsdk is kvx — the reference control plane of package
// github.com/workproof/workproof/kvx — with its provider steps written
// against the real SDKs: aws-sdk-go-v2's service/ec2, stripe-go and
// client-go. It is what a team's worker code looks like under the gate,
// and it lives in its own module so that the SDKs never reach the core
// module's build.
//
// A map of the package:
//
//   - clients.go: Clients, built from a worker's contract.Deps — the three
//     one-liners that point each SDK at the harness's endpoint and
//     instrumented *http.Client.
//   - steps.go: the provider steps (CreateVM, ResizeVM, ApplyDeployment,
//     Charge, TerminateVMs, DeleteDeployment) and Classify, the SDK errors
//     mapped to what the work runner does; New assembles the system from
//     kvx with these steps.
//   - mutants.go: bugs that only exist with the real SDKs, each breaking
//     one invariant.
//
// The email service has no SDK to be compatible with: kvxsdk sends the
// welcome email as kvx does, through package fakes' small client.
package kvxsdk
