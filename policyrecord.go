package domicile

import "context"

// LedgerPolicyVersion is the kind of the ledger entry that records a policy
// version: its ref is the version, its body the rules.
const LedgerPolicyVersion = "policy.version"

// PolicyRecorder is implemented by control stores that record in the
// ledger each policy version under which domicile acts (plans, moves,
// places subjects), once per version.
type PolicyRecorder interface {
	// RecordPolicy appends a policy.version entry with the version as its
	// ref and body as its body, unless the ledger has one for that
	// version already, in one transaction; recorded reports whether it
	// appended.
	RecordPolicy(ctx context.Context, version string, body any) (recorded bool, err error)
}
