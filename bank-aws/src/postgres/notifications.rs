//! [`PgNotificationLog`]: the [`NotificationLog`] on PostgreSQL, in the `notification_deliveries`
//! table (migration `0006_notifications_and_deposit_requests.sql`), shared by every
//! notifications process.
//!
//! # Rules
//! - `claim` is one `INSERT … ON CONFLICT DO NOTHING` on the key (the primary key): of any number
//!   of concurrent claims, in any number of processes, exactly one inserts the row, so exactly one
//!   answers `true`; the claim is durable once answered.
//! - `mark` records the outcome with one `UPSERT` (a claim purged since, or never made, is recorded
//!   anew, so the delivery stays claimed for good).
//! - `claim_all` and `mark_all` are one statement each for the whole list (`UNNEST` of arrays):
//!   a notifications step costs two statements, not two per delivery.
//! - `release` deletes the row only while it is `claimed` (one statement); a row with an outcome
//!   is refused (`InvalidInput`), an unknown key ignored.
//! - **Retention**: by age, not count (many processes share the table, so no process can count
//!   for the others). [`PgNotificationLog::purge_expired`] deletes records last changed more than
//!   the retention ago ([`NOTIFICATION_RETENTION_DEFAULT`], 30 days: far beyond any redelivery —
//!   SQS keeps a message at most 14 days). The log calls it itself at most once per
//!   [`NOTIFICATION_PURGE_PERIOD`] per process, before the first claim after the period, so every
//!   deployment keeps the table bounded with no scheduler to wire.
//! - *Time* comes only from the injected [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::notifications::{Channel, DeliveryKey, DeliveryOutcome, DeliveryState, NotificationLog};
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};

use super::{PgDb, RowOf, db_err};

/// How long delivery records are kept after their last change.
pub const NOTIFICATION_RETENTION_DEFAULT: TimeDelta = TimeDelta::days(30);
/// Most records one [`PgNotificationLog::purge_expired`] statement deletes (it loops until done),
/// so a purge never holds many row locks for long.
pub const NOTIFICATION_PURGE_CHUNK_MAX: i64 = 10_000;

/// How often a process purges expired records (before a claim, when due).
pub const NOTIFICATION_PURGE_PERIOD: TimeDelta = TimeDelta::hours(1);

const ROW: RowOf = RowOf("notification log row");

/// The notification log in PostgreSQL (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct PgNotificationLog {
    db: PgDb,
    clock: Arc<dyn Clock>,
    retention: TimeDelta,
    /// When this process purges next (Unix seconds; 0: at the first claim).
    next_purge: Arc<AtomicI64>,
}

impl PgNotificationLog {
    /// A log over `db`, reading time from `clock`, keeping records
    /// [`NOTIFICATION_RETENTION_DEFAULT`].
    pub fn new(db: &PgDb, clock: Arc<dyn Clock>) -> Self {
        PgNotificationLog::with_retention(db, clock, NOTIFICATION_RETENTION_DEFAULT)
    }

    /// A log keeping records `retention` after their last change (at least one day: shorter would
    /// let a redelivered event be notified twice).
    pub fn with_retention(db: &PgDb, clock: Arc<dyn Clock>, retention: TimeDelta) -> Self {
        PgNotificationLog {
            db: db.clone(),
            clock,
            retention: retention.max(TimeDelta::days(1)),
            next_purge: Arc::new(AtomicI64::new(0)),
        }
    }

    /// How long records are kept.
    pub fn retention(&self) -> TimeDelta {
        self.retention
    }

    /// Deletes the records last changed more than the retention ago; answers how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        let cutoff = nanos(self.clock.now() - self.retention)?;
        let mut purged = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM notification_deliveries WHERE (event_id, channel, recipient) IN \
                 (SELECT event_id, channel, recipient FROM notification_deliveries WHERE updated_at < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(NOTIFICATION_PURGE_CHUNK_MAX)
            .execute(self.db.writer())
            .await
            .map_err(db_err)?;
            purged += done.rows_affected();
            if done.rows_affected() < NOTIFICATION_PURGE_CHUNK_MAX.unsigned_abs() {
                return Ok(purged);
            }
        }
    }

    /// Purges expired records if this process's period is up (one caller per period does it; a
    /// failure only delays it: logged, and the claim goes on).
    async fn purge_if_due(&self) {
        let now = self.clock.now().timestamp();
        let due = self.next_purge.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_purge
                .compare_exchange(
                    due,
                    now + NOTIFICATION_PURGE_PERIOD.num_seconds(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            match self.purge_expired().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired notification records deleted"),
                Err(err) => tracing::warn!(error = %err, "purging expired notification records failed"),
            }
        }
    }
}

fn nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt().ok_or_else(|| Error::InvalidInput(format!("time {at} is outside 1677..2262")))
}

fn channel_of(text: &str) -> Result<Channel> {
    Channel::ALL
        .into_iter()
        .find(|channel| channel.as_str() == text)
        .ok_or_else(|| ROW.corrupt(format!("channel {text:?}")))
}

#[async_trait]
impl NotificationLog for PgNotificationLog {
    async fn claim(&self, key: DeliveryKey) -> Result<bool> {
        Ok(self.claim_all(&[key]).await?.first().copied().unwrap_or(false))
    }

    async fn claim_all(&self, keys: &[DeliveryKey]) -> Result<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.purge_if_due().await;
        let event_ids: Vec<uuid::Uuid> = keys.iter().map(|key| *key.event_id.as_uuid()).collect();
        let channels: Vec<&str> = keys.iter().map(|key| key.channel.as_str()).collect();
        let recipients: Vec<uuid::Uuid> = keys.iter().map(|key| *key.recipient.as_uuid()).collect();
        // One statement for the whole list; a key given twice conflicts with its own first row
        // and is skipped like any claimed key.
        let inserted: Vec<(uuid::Uuid, String, uuid::Uuid)> = sqlx::query_as(
            "INSERT INTO notification_deliveries (event_id, channel, recipient, state, reason, claimed_at, \
             updated_at) SELECT event_id, channel, recipient, 'claimed', NULL, $4, $4 \
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) AS keys (event_id, channel, recipient) \
             ON CONFLICT DO NOTHING RETURNING event_id, channel, recipient",
        )
        .bind(&event_ids)
        .bind(&channels)
        .bind(&recipients)
        .bind(nanos(self.clock.now())?)
        .fetch_all(self.db.writer())
        .await
        .map_err(db_err)?;
        let mut won: std::collections::HashSet<(uuid::Uuid, String, uuid::Uuid)> = inserted.into_iter().collect();
        // In order: the first occurrence of an inserted key won, any other lost.
        Ok(keys
            .iter()
            .map(|key| {
                won.remove(&(*key.event_id.as_uuid(), key.channel.as_str().to_owned(), *key.recipient.as_uuid()))
            })
            .collect())
    }

    async fn mark_all(&self, outcomes: Vec<(DeliveryKey, DeliveryOutcome)>) -> Result<()> {
        // The last outcome of a key listed twice wins, as with marks one after another (one
        // upsert may not touch a row twice).
        let mut last = std::collections::HashMap::new();
        for (index, (key, _)) in outcomes.iter().enumerate() {
            last.insert(*key, index);
        }
        let (mut event_ids, mut channels, mut recipients, mut states, mut reasons) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (index, (key, outcome)) in outcomes.into_iter().enumerate() {
            if last.get(&key) != Some(&index) {
                continue;
            }
            let state = DeliveryState::from(outcome);
            let (name, reason) = state.columns();
            if reason.is_some_and(|r| r.contains('\0')) {
                return Err(Error::InvalidInput("a failure reason may not contain NUL characters".into()));
            }
            event_ids.push(*key.event_id.as_uuid());
            channels.push(key.channel.as_str());
            recipients.push(*key.recipient.as_uuid());
            states.push(name);
            reasons.push(reason.map(str::to_owned));
        }
        if event_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO notification_deliveries (event_id, channel, recipient, state, reason, claimed_at, \
             updated_at) SELECT event_id, channel, recipient, state, reason, $6, $6 \
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[]) \
                 AS marks (event_id, channel, recipient, state, reason) \
             ON CONFLICT (event_id, channel, recipient) \
             DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at",
        )
        .bind(&event_ids)
        .bind(&channels)
        .bind(&recipients)
        .bind(&states)
        .bind(&reasons)
        .bind(nanos(self.clock.now())?)
        .execute(self.db.writer())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn mark(&self, key: DeliveryKey, outcome: DeliveryOutcome) -> Result<()> {
        self.mark_all(vec![(key, outcome)]).await
    }

    async fn release(&self, key: DeliveryKey) -> Result<()> {
        // One statement: delete the row if it is only claimed, and say what the row was (a row
        // with an outcome is not deleted and is refused below).
        let state: Option<String> = sqlx::query_scalar(
            "WITH released AS (DELETE FROM notification_deliveries \
                 WHERE event_id = $1 AND channel = $2 AND recipient = $3 AND state = 'claimed' RETURNING state) \
             SELECT state FROM released \
             UNION ALL \
             SELECT state FROM notification_deliveries \
                 WHERE event_id = $1 AND channel = $2 AND recipient = $3 AND state <> 'claimed' \
             LIMIT 1",
        )
        .bind(key.event_id.as_uuid())
        .bind(key.channel.as_str())
        .bind(key.recipient.as_uuid())
        .fetch_optional(self.db.writer())
        .await
        .map_err(db_err)?;
        match state.as_deref() {
            None | Some("claimed") => Ok(()),
            Some(_) => Err(Error::InvalidInput("a delivery with a recorded outcome cannot be released".into())),
        }
    }

    async fn state(&self, key: DeliveryKey) -> Result<Option<DeliveryState>> {
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT channel, state, reason FROM notification_deliveries \
             WHERE event_id = $1 AND channel = $2 AND recipient = $3",
        )
        .bind(key.event_id.as_uuid())
        .bind(key.channel.as_str())
        .bind(key.recipient.as_uuid())
        .fetch_optional(self.db.writer())
        .await
        .map_err(db_err)?;
        let Some((channel, state, reason)) = row else { return Ok(None) };
        // Decoding the channel checks the row is one this log wrote.
        channel_of(&channel)?;
        DeliveryState::from_columns(&state, reason)
            .map(Some)
            .ok_or_else(|| ROW.corrupt(format!("delivery state {state:?}")))
    }
}
