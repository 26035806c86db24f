package work

// Exported for the tests of package work_test.
const (
	ClaimSkipLockedSQL = claimSkipLockedSQL
	ClaimFloorSQL      = claimFloorSQL
	FloorEvery         = floorEvery
	ChainSQL           = chainSQL
)
