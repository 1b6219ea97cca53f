package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/domicile/domicile"
)

// Transition changes the ownership rows of a move's subjects in one
// transaction, under the precondition domicile.Transition describes. It
// runs on the mover's connection, with the statements it keeps.
func (s *Store) Transition(ctx context.Context, tr domicile.Transition) error {
	if err := tr.Validate(); err != nil {
		return err
	}
	// Transitions go before the writers waiting: they are short, and the
	// fence, the tombstone and the activation hold subjects blocked.
	err := s.bypassFor(ctx, true, func(tx *sql.Tx) error {
		q := s.cached(tx)
		have, err := ownershipOf(ctx, q, tr.Dataset, tr.Subjects)
		if err != nil {
			return err
		}
		writes, err := tr.Writes(have)
		if err != nil {
			return err
		}
		return upsertOwnership(ctx, q, writes)
	})
	if err != nil {
		return fmt.Errorf("transition of %d subjects of %s to %s in region %s: %w", len(tr.Subjects), tr.Dataset, tr.To, s.region, err)
	}
	return nil
}

// upsertOwnership writes ownership rows, set-based: one statement for each
// run of consecutive rows that differ only in their subject (a
// transition's rows are usually one such run), with the subjects bound as
// one JSON array, so that the statement's text is the same for any number
// of them and the mover's connection prepares it once (cachedTx).
func upsertOwnership(ctx context.Context, tx querierCtx, rows []domicile.Ownership) error {
	for len(rows) > 0 {
		o := rows[0]
		n := 1
		for n < len(rows) && rows[n].Dataset == o.Dataset && rows[n].State == o.State &&
			rows[n].Region == o.Region && rows[n].Epoch == o.Epoch && rows[n].MoveID == o.MoveID {
			n++
		}
		subjects := make([]string, n)
		valid := true
		for i, r := range rows[:n] {
			subjects[i] = r.Subject
			valid = valid && utf8.ValidString(r.Subject)
		}
		if !valid {
			// JSON would turn the invalid bytes into U+FFFD, another
			// subject: bind each id as it is.
			for _, r := range rows[:n] {
				if _, err := tx.ExecContext(ctx, upsertOwner, r.Subject, r.Dataset, string(r.State), r.Region, r.Epoch, r.MoveID); err != nil {
					return err
				}
			}
			rows = rows[n:]
			continue
		}
		list, err := json.Marshal(subjects)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, upsertOwners, string(list), o.Dataset, string(o.State), o.Region, o.Epoch, o.MoveID); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// ownerUpsert is what an ownership row written over another becomes.
const ownerUpsert = `
	ON CONFLICT (subject, dataset) DO UPDATE SET state = excluded.state, region = excluded.region,
	epoch = excluded.epoch, move_id = excluded.move_id`

// upsertOwner upserts one ownership row.
const upsertOwner = `INSERT INTO domicile_owner (` + ownerColumns + `) VALUES (?1, ?2, ?3, ?4, ?5, ?6)` + ownerUpsert

// upsertOwners upserts the ownership rows of the subjects of a JSON array
// with one dataset, state, region, epoch and move. (WHERE true tells the
// parser that ON CONFLICT is not a join's.)
const upsertOwners = `INSERT INTO domicile_owner (` + ownerColumns + `)
	SELECT j.value, ?2, ?3, ?4, ?5, ?6 FROM json_each(?1) AS j WHERE true` + ownerUpsert
