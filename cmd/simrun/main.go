package main

import (
	"os"
	"strings"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/kvx/mutants"
	lib "github.com/workproof/workproof/simrun"
)

func main() {
	os.Exit(lib.Main(os.Args[1:], os.Stdout, os.Stderr, lib.Options{Systems: systems()}))
}

// systems are the reference and its seeded bugs.
func systems() []lib.System {
	out := []lib.System{{
		Name: "kvx",
		Doc:  "the reference control plane (correct)",
		New:  func() contract.System { return kvx.New(kvx.Options{}) },
	}}
	for _, m := range mutants.All() {
		out = append(out, lib.System{Name: m.Name, Doc: "mutant, breaks " + string(m.Breaks) + ": " + firstSentence(m.Doc), Breaks: m.Breaks, New: m.New})
	}
	return out
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
