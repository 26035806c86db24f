// Command simrun is workproof's simrun for KVX on River: the same commands
// (soak, gate, replay, bench, merge), over the River system and its
// River-specific seeded bugs. River's modules stay in this module, out of
// the core's build.
//
//	cd examples/river && go run ./cmd/simrun gate
package main

import (
	"os"

	"github.com/workproof/workproof/contract"
	riverkvx "github.com/workproof/workproof/examples/river"
	"github.com/workproof/workproof/simrun"
)

func main() {
	systems := []simrun.System{{
		Name: "river",
		Doc:  "kvx on River (riverqueue/river v0.51.2, riverpgxv5), tuned (correct)",
		New:  func() contract.System { return riverkvx.New(riverkvx.Options{}) },
	}}
	for _, m := range riverkvx.Mutants() {
		systems = append(systems, simrun.System{Name: m.Name, Doc: "River mutant, breaks " + string(m.Breaks),
			Breaks: m.Breaks, New: m.New})
	}
	os.Exit(simrun.Main(os.Args[1:], os.Stdout, os.Stderr, simrun.Options{Systems: systems, Command: "go run ./cmd/simrun"}))
}
