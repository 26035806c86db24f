// Command simrun is workproof's simrun for the SDK reference: the same
// commands (soak, gate, replay, bench, merge), over kvxsdk, its own named
// scenarios and its SDK-only seeded bugs. It is the template of a team's own
// simrun: one list of systems handed to package simrun.
//
//	cd examples/kvxsdk && go run ./cmd/simrun gate
package main

import (
	"os"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/examples/kvxsdk"
	"github.com/workproof/workproof/simrun"
)

func main() {
	systems := []simrun.System{{
		Name:      "kvxsdk",
		Doc:       "kvx on aws-sdk-go-v2, stripe-go and client-go (correct)",
		New:       func() contract.System { return kvxsdk.New(kvxsdk.Options{}) },
		Scenarios: kvxsdk.Scenarios(),
	}}
	for _, m := range kvxsdk.Mutants() {
		systems = append(systems, simrun.System{Name: m.Name, Doc: "SDK-only mutant, breaks " + string(m.Breaks),
			Breaks: m.Breaks, New: m.New, Scenarios: kvxsdk.Scenarios()})
	}
	os.Exit(simrun.Main(os.Args[1:], os.Stdout, os.Stderr, simrun.Options{Systems: systems, Command: "go run ./cmd/simrun"}))
}
