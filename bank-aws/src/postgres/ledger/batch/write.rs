//! Step 5 of a batch: writing what its operations decided, each kind of row with one
//! multi-row statement (`INSERT … SELECT FROM UNNEST`, `UPDATE … FROM UNNEST`), in a fixed order:
//! entries (in key order), their lines, new holds (in id order), ended holds, balances.

use bank_core::Error;
use bank_core::ids::HoldId;
use bank_core::ledger::PostedEntry;
use rust_decimal::Decimal;
use rustc_hash::FxHashSet;
use sqlx::PgConnection;
use uuid::Uuid;

use super::super::rows::{self, nanos};
use super::Plan;
use crate::postgres::{db_err, is_unique_violation};

/// A failed write: a unique violation (a concurrent writer of the same key) or anything else.
pub(super) enum Write {
    Unique(sqlx::Error),
    Other(Error),
}

impl From<sqlx::Error> for Write {
    fn from(err: sqlx::Error) -> Self {
        if is_unique_violation(&err) { Write::Unique(err) } else { Write::Other(db_err(err)) }
    }
}

impl From<Error> for Write {
    fn from(err: Error) -> Self {
        Write::Other(err)
    }
}

impl Plan {
    /// Step 5: writes what the batch decided, in a fixed order (entries, lines, new holds, ended
    /// holds, balances), each a single statement.
    pub(super) async fn write(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        self.insert_entries(conn).await?;
        self.insert_holds(conn).await?;
        self.end_holds(conn).await?;
        self.update_accounts(conn).await?;
        Ok(())
    }

    async fn insert_entries(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.posted.is_empty() {
            return Ok(());
        }
        // In key order, so waits on keys another process is writing cannot form a cycle (see the
        // batch module doc).
        let mut keys = self.posted.clone();
        keys.sort_unstable();
        let entries: Vec<&PostedEntry> = keys.iter().filter_map(|k| self.entries.get(k)).collect();
        let posted_at = nanos(self.now)?;
        let mut e = EntryColumns::default();
        let mut l = LineColumns::default();
        for entry in &entries {
            // At most ENTRY_LINES_MAX (16) lines.
            let line_count = i16::try_from(entry.lines.len())
                .map_err(|_| Error::InvalidInput(format!("an entry of {} lines", entry.lines.len())))?;
            e.transfer_ids.push(*entry.key.transfer_id.as_uuid());
            e.legs.push(i32::from(entry.key.leg));
            e.entry_ids.push(*entry.id.as_uuid());
            e.line_counts.push(line_count);
            e.references.push(entry.reference.as_str());
            e.reverses_transfer_ids.push(entry.reverses.map(|k| *k.transfer_id.as_uuid()));
            e.reverses_legs.push(entry.reverses.map(|k| i32::from(k.leg)));
            for (line_no, line) in (0i16..).zip(&entry.lines) {
                l.transfer_ids.push(*entry.key.transfer_id.as_uuid());
                l.legs.push(i32::from(entry.key.leg));
                l.line_nos.push(line_no);
                l.line_counts.push(line_count);
                l.account_ids.push(*line.account_id.as_uuid());
                l.sides.push(line.side.as_str());
                l.amounts.push(line.money.value());
                l.currencies.push(line.money.currency.code());
                l.sequences.push(rows::sql_sequence(line.sequence));
                l.balances.push(line.balance_after);
            }
        }
        sqlx::query(
            "INSERT INTO entries (transfer_id, leg, entry_id, line_count, reference, posted_at_ns, \
                                  reverses_transfer_id, reverses_leg) \
             SELECT t, l, e, n, r, $6, rt, rl \
               FROM UNNEST($1::uuid[], $2::int4[], $3::uuid[], $4::int2[], $5::text[], $7::uuid[], $8::int4[]) \
                    AS u (t, l, e, n, r, rt, rl)",
        )
        .bind(&e.transfer_ids)
        .bind(&e.legs)
        .bind(&e.entry_ids)
        .bind(&e.line_counts)
        .bind(&e.references)
        .bind(posted_at)
        .bind(&e.reverses_transfer_ids)
        .bind(&e.reverses_legs)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO entry_lines (transfer_id, leg, line_no, line_count, account_id, side, amount, currency, \
                                      sequence, balance_after) \
             SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int2[], $4::int2[], $5::uuid[], $6::text[], \
                                  $7::numeric[], $8::text[], $9::int8[], $10::numeric[])",
        )
        .bind(&l.transfer_ids)
        .bind(&l.legs)
        .bind(&l.line_nos)
        .bind(&l.line_counts)
        .bind(&l.account_ids)
        .bind(&l.sides)
        .bind(&l.amounts)
        .bind(&l.currencies)
        .bind(&l.sequences)
        .bind(&l.balances)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn insert_holds(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.placed.is_empty() {
            return Ok(());
        }
        // In id order, for the same reason as entries.
        let mut ids = self.placed.clone();
        ids.sort_unstable();
        let mut h = HoldColumns::default();
        for hold in ids.iter().filter_map(|id| self.holds.get(id)) {
            h.ids.push(*hold.id.as_uuid());
            h.accounts.push(*hold.account_id.as_uuid());
            h.amounts.push(hold.money.value());
            h.currencies.push(hold.money.currency.code());
            h.statuses.push(hold.status.as_str());
            h.created.push(nanos(hold.created_at)?);
            h.expires.push(nanos(hold.expires_at)?);
            h.references.push(hold.reference.as_str());
            h.posted_transfer_ids.push(hold.posted_entry.map(|k| *k.transfer_id.as_uuid()));
            h.posted_legs.push(hold.posted_entry.map(|k| i32::from(k.leg)));
        }
        sqlx::query(
            "INSERT INTO holds (id, account_id, amount, currency, status, created_at_ns, expires_at_ns, reference, \
                                posted_transfer_id, posted_leg) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::numeric[], $4::text[], $5::text[], $6::int8[], \
                                  $7::int8[], $8::text[], $9::uuid[], $10::int4[])",
        )
        .bind(&h.ids)
        .bind(&h.accounts)
        .bind(&h.amounts)
        .bind(&h.currencies)
        .bind(&h.statuses)
        .bind(&h.created)
        .bind(&h.expires)
        .bind(&h.references)
        .bind(&h.posted_transfer_ids)
        .bind(&h.posted_legs)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Posted or voided stored holds (a hold placed by this batch is inserted as it ended).
    async fn end_holds(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        let placed: FxHashSet<HoldId> = self.placed.iter().copied().collect();
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut transfer_ids = Vec::new();
        let mut legs = Vec::new();
        for hold in self.ended.iter().filter(|id| !placed.contains(id)).filter_map(|id| self.holds.get(id)) {
            ids.push(*hold.id.as_uuid());
            statuses.push(hold.status.as_str());
            transfer_ids.push(hold.posted_entry.map(|k| *k.transfer_id.as_uuid()));
            legs.push(hold.posted_entry.map(|k| i32::from(k.leg)));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let updated = sqlx::query(
            "UPDATE holds h SET status = u.status, posted_transfer_id = u.t, posted_leg = u.l \
               FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int4[]) AS u (id, status, t, l) \
              WHERE h.id = u.id AND h.status = 'active'",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&transfer_ids)
        .bind(&legs)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated != u64::try_from(ids.len()).unwrap_or(u64::MAX) {
            // Every hold changes under its account's lock, which this batch holds: a hold that
            // is no longer active here means that rule was broken somewhere.
            return Err(Write::Other(Error::Storage {
                message: format!("postgresql: only {updated} of {} holds to end were still active", ids.len()),
                retryable: false,
            }));
        }
        Ok(())
    }

    async fn update_accounts(&self, conn: &mut PgConnection) -> std::result::Result<(), Write> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(self.changed.len());
        let mut posted = Vec::with_capacity(self.changed.len());
        let mut held = Vec::with_capacity(self.changed.len());
        let mut sequences = Vec::with_capacity(self.changed.len());
        for state in self.changed.iter().filter_map(|id| self.states.get(id)) {
            ids.push(*state.account.id.as_uuid());
            posted.push(state.posted);
            held.push(state.held);
            sequences.push(rows::sql_sequence(state.sequence));
        }
        sqlx::query(
            "UPDATE accounts a SET posted = u.posted, held = u.held, sequence = u.sequence \
               FROM UNNEST($1::uuid[], $2::numeric[], $3::numeric[], $4::int8[]) AS u (id, posted, held, sequence) \
              WHERE a.id = u.id",
        )
        .bind(&ids)
        .bind(&posted)
        .bind(&held)
        .bind(&sequences)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct EntryColumns<'a> {
    transfer_ids: Vec<Uuid>,
    legs: Vec<i32>,
    entry_ids: Vec<Uuid>,
    line_counts: Vec<i16>,
    references: Vec<&'a str>,
    reverses_transfer_ids: Vec<Option<Uuid>>,
    reverses_legs: Vec<Option<i32>>,
}

#[derive(Default)]
struct LineColumns {
    transfer_ids: Vec<Uuid>,
    legs: Vec<i32>,
    line_nos: Vec<i16>,
    line_counts: Vec<i16>,
    account_ids: Vec<Uuid>,
    sides: Vec<&'static str>,
    amounts: Vec<Decimal>,
    currencies: Vec<&'static str>,
    sequences: Vec<i64>,
    balances: Vec<Decimal>,
}

#[derive(Default)]
struct HoldColumns<'a> {
    ids: Vec<Uuid>,
    accounts: Vec<Uuid>,
    amounts: Vec<Decimal>,
    currencies: Vec<&'static str>,
    statuses: Vec<&'static str>,
    created: Vec<i64>,
    expires: Vec<i64>,
    references: Vec<&'a str>,
    posted_transfer_ids: Vec<Option<Uuid>>,
    posted_legs: Vec<Option<i32>>,
}
