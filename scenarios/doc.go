// Package scenarios is what a team runs against its worker code: named
// regression scenarios (data: a short script aimed at one failure mode) and
// programs drawn by rapid, each ending in sim.Env.Finish (heal, converge,
// every invariant check of package sim/check). Every fault comes from the
// one catalogue, package sim/nemesis.
//
// A map of the package:
//
//   - named.go, named_bugs.go: the named scenarios (the first regressions,
//     and one aimed at each bug class of package kvx/mutants); a scenario
//     may record a violation it observes itself while it runs, such as a
//     liveness bound missed during a fault (sim.Env.Violate).
//   - program.go: Program and Action (plain data: printed, saved,
//     replayed), the families (weightings over the catalogue) and
//     ProgramGen, Execute.
//   - explore.go: the explore family — workloads traced fault-free, one
//     experiment per point × fault of nemesis.Menu, pairs with lag,
//     coverage; Experiment ids that replay, shards; RunExperiment.
//   - run.go: Options and Budget, Run and its one family runner (examples
//     run concurrently, the lowest-index failure reported), RunProgram,
//     RunScenario, Shrink.
//   - verify.go: Verify, the entry point a team calls from its _test.go: the
//     same runner as Run, one subtest per family and example, fail files
//     under testdata/workproof/, reports under the test's artifact
//     directory.
//   - soak/: the long-running soak (traffic, a fault profile over the same
//     catalogue, quiescent checkpoints).
package scenarios
