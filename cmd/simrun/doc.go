// Command simrun runs workproof from the command line: long soak runs of a
// system under traffic and faults, and the named regression scenarios as a
// gate. Run `simrun help` for the subcommands, `simrun soak -h` for a
// subcommand's flags.
//
// Exit codes (Maelstrom's): 0 every invariant held; 1 an invariant was
// violated (the counterexample is in the report); 2 usage or
// infrastructure errors (bad flags, no Postgres) or an unknown verdict
// (interrupted before the final check).
//
// Map of the command:
//
//	main.go  subcommand dispatch; signals (Ctrl-C stops cleanly, a second one
//	         quits at once); the systems -system can name; flag parsing
//	soak.go  simrun soak: flags, Postgres (pgenv), scenarios/soak.Run, the
//	         progress line or log, the report (package reports), the summary
//	gate.go  simrun gate: the named regression scenarios once each, exit by verdict
//	replay.go   simrun replay: one example again, reproduced or diverged
//	bench.go    simrun bench: the seeded-bug catalogue
//	report.go   scenarios' results as package reports' model; the report
//	            directory every command creates before it starts (-out) and
//	            writes at the end, and the GitHub job summary
package main
