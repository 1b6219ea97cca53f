// Package ledger keeps the evidence of the control store's hash-chained
// ledger verifiable from outside it: a head (the newest entry's sequence
// number and hash) signed with an Ed25519 key and kept in a file of its own,
// the check of a ledger against that head, and the ledger's export as JSON
// lines. docs/audit.md describes the formats.
//
// Whoever can write to the control store can rewrite the ledger and
// recompute every hash; they cannot sign a head. Entries removed from the
// end, or rewritten up to the newest, are caught by the signed head; every
// other change by the chain itself.
package ledger
