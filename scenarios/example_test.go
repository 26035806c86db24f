package scenarios_test

import (
	"context"
	"fmt"
	"regexp"

	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/pgenv"
)

// Run one named scenario against the reference system on a Postgres the
// harness finds or starts itself, and print the verdict. A team passes its
// own contract.System instead of kvx.
func ExampleRun() {
	ctx := context.Background()
	srv, err := pgenv.Start(ctx, pgenv.Options{})
	if err != nil {
		fmt.Println("no Postgres:", err)
		return
	}
	defer srv.Close()
	res, err := scenarios.Run(ctx, scenarios.Options{
		System:   kvx.New(kvx.Options{}),
		Server:   srv,
		Families: []string{scenarios.FamilyNamed},
		Only:     regexp.MustCompile(`^billing-response-lost$`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Families[0].Family, res.Verdict)
	// Output: named valid
}
