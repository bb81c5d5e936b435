//! Two-phase holds: reserve funds now, post (part of) them or release them later.
//!
//! A hold lowers `available` without touching `posted`. It ends in exactly one of three ways:
//! posted (fully or partly — the rest is released), voided, or expired once its `expires_at`
//! passes. Stores treat a hold whose expiry has passed as released even before a sweep marks it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::entry::{EntryKey, check_reference};
use crate::error::{Error, Result};
use crate::ids::{AccountId, HoldId};
use crate::money::{Amount, Money};

/// Longest a hold may last (30 days, as card authorisations do).
pub const HOLD_DURATION_SECONDS_MAX: i64 = 30 * 24 * 3600;

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Funds reserved.
    Active,
    /// Posted (in full or in part) by an entry.
    Posted,
    /// Released on request.
    Voided,
    /// Released because `expires_at` passed.
    Expired,
}

impl HoldStatus {
    /// Every status.
    pub const ALL: [HoldStatus; 4] = [HoldStatus::Active, HoldStatus::Posted, HoldStatus::Voided, HoldStatus::Expired];

    /// The status's name, as serialized and as stores keep it (`active`, `posted`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Posted => "posted",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    /// The status named `text` ([`HoldStatus::as_str`]); `None` for any other text.
    pub fn parse(text: &str) -> Option<HoldStatus> {
        HoldStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for HoldStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to reserve funds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewHold {
    /// Id of the hold; placing the same hold twice is a replay.
    pub id: HoldId,
    /// The account whose funds are reserved.
    pub account_id: AccountId,
    /// How much.
    pub money: Money,
    /// When the reservation lapses by itself.
    pub expires_at: DateTime<Utc>,
    /// Free text.
    pub reference: String,
}

impl NewHold {
    /// Checks the request against `now`: expiry in the future and within
    /// [`HOLD_DURATION_SECONDS_MAX`], reference valid.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<()> {
        check_reference(&self.reference)?;
        self.money.check()?;
        let seconds = (self.expires_at - now).num_seconds();
        if self.expires_at <= now || seconds > HOLD_DURATION_SECONDS_MAX {
            return Err(Error::invalid(format!(
                "hold expiry must be in the future and at most {HOLD_DURATION_SECONDS_MAX} s away"
            )));
        }
        Ok(())
    }
}

/// A hold id marked by [`crate::ports::LedgerStore::mark_hold`]: given up while no hold of it
/// could be seen, so that a hold placed under it afterwards — by a call still on its way — is
/// found and dealt with instead of reserving funds until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldMark {
    /// The marked id.
    pub id: HoldId,
    /// When it was marked (first marked, if marked again).
    pub marked_at: DateTime<Utc>,
    /// Its hold as of now, if one was placed.
    pub hold: Option<Hold>,
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Its id.
    pub id: HoldId,
    /// The account.
    pub account_id: AccountId,
    /// The amount reserved.
    pub money: Money,
    /// Current status (a stored `Active` hold past its expiry reads as `Expired`).
    pub status: HoldStatus,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// Free text.
    pub reference: String,
    /// The entry that posted it, once posted.
    pub posted_entry: Option<EntryKey>,
}

impl Hold {
    /// The hold a validated request places at `now`.
    pub fn from_new(new: NewHold, now: DateTime<Utc>) -> Self {
        Hold {
            id: new.id,
            account_id: new.account_id,
            money: new.money,
            status: HoldStatus::Active,
            created_at: now,
            expires_at: new.expires_at,
            reference: new.reference,
            posted_entry: None,
        }
    }

    /// Whether the hold still reserves funds at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.status == HoldStatus::Active && self.expires_at > now
    }

    /// The hold as seen at `now`: an active hold past its expiry reads as expired.
    pub fn as_of(mut self, now: DateTime<Utc>) -> Self {
        if self.status == HoldStatus::Active && self.expires_at <= now {
            self.status = HoldStatus::Expired;
        }
        self
    }

    /// Whether `new` is a replay of the request that placed this hold.
    pub fn matches(&self, new: &NewHold) -> bool {
        self.account_id == new.account_id
            && self.money == new.money
            && self.expires_at == new.expires_at
            && self.reference == new.reference
    }
}

/// A request to post a hold: debit the held account, credit `credit_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostHold {
    /// The hold.
    pub hold_id: HoldId,
    /// Key of the entry this creates.
    pub key: EntryKey,
    /// How much to post; `None` posts the full hold. The rest is released.
    pub amount: Option<Amount>,
    /// The account credited.
    pub credit_account: AccountId,
    /// Reference of the entry.
    pub reference: String,
}

impl PostHold {
    /// The amount to post from `hold`, refusing more than it reserves.
    pub fn amount_from(&self, hold: &Hold) -> Result<Money> {
        let amount = self.amount.unwrap_or(hold.money.amount);
        if amount.value() > hold.money.value() {
            return Err(Error::HoldExceeded { hold: hold.id, held: hold.money.value(), requested: amount.value() });
        }
        Money { amount, currency: hold.money.currency }.check()
    }
}
