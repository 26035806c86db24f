// Package crash turns every statement a worker sends to Postgres and every
// call it makes to a provider into a crash point, with no code in the worker.
//
// A Gate sits on a worker's pgx pool (Tracer) and on its provider clients'
// HTTP transport (Transport). At each point it asks two questions:
//
//   - should this worker crash here? (Arm, Crash) — then the Gate calls
//     Options.OnCrash, which severs the worker's network links so Postgres
//     sees its connections drop and rolls back, and freezes the worker's
//     goroutine at the point. A frozen worker runs none of its deferred
//     code, as after a SIGKILL. Close releases frozen goroutines at the very
//     end, when their links are long dead.
//   - may this worker proceed? In scheduled mode every worker parks at each
//     point until the scenario releases exactly one (Parked, Release), so an
//     interleaving chosen by a seeded draw can be replayed. In free mode
//     (the default) workers run concurrently and find races.
//
// Items and traces: the harness tells the gate which work item a worker is
// inside (Enter, Leave: from the system's Observer), so a Rule can aim at
// one point of one entry of one item (Rule.Item, Entry, Nth), whichever
// worker gets there, and Trace records every point passed with its item,
// entry and occurrence — what the explorer enumerates.
//
// Point names: "sql:<verb>" or "sql:<verb> <table>" for statements, named
// by what they do (StatementPoint: "sql:begin", "sql:delete work",
// "sql:update instances", a CTE that inserts "sql:insert work",
// "sql:commit"), and, before a provider call, the name the Transport's
// caller gives it — the harness uses the fakes' endpoint names,
// "cloud:CreateVM" — and the same name with ":done" after its response
// arrived. Package sim/nemesis builds crash rules from these names.
package crash
