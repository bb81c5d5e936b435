//! The DynamoDB requests of the idempotency store, built here (and only here) so that unit tests
//! can read each one's condition without an emulator: every state change is one conditional
//! write whose condition states exactly when the change is allowed.
//!
//! Expressions name attributes through `#name` placeholders (`state`, `token`, `ttl` … are
//! DynamoDB reserved words) and take values through `:value` placeholders; `now` is always the
//! store's clock, never DynamoDB's.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use bank_core::idempotency::LeaseToken;

use super::item::{
    COMPLETED, EXPIRES_AT, IN_FLIGHT, IN_FLIGHT_ORDER, Item, LEASE_UNTIL, PK, RESPONSE, SHARD, STATE, TOKEN, b, n, s,
};
use super::table::{BY_EXPIRY_INDEX, IN_FLIGHT_INDEX};

/// Items a query page evaluates (DynamoDB also stops a page at 1 MB).
pub(crate) const QUERY_PAGE_ITEMS: i32 = 100;

/// `begin` on a new key, or over a record past retention (which counts as absent).
pub(crate) const CREATE_CONDITION: &str = "attribute_not_exists(#pk) OR #expires_at <= :now";
/// A takeover: the lease the caller saw is still the current one (same token, still in flight)
/// and has ended by the stored lease end; the record is within retention.
pub(crate) const TAKE_OVER_CONDITION: &str =
    "#token = :seen_token AND #state = :in_flight AND #lease_until <= :now AND #expires_at > :now";
/// The new lease of a takeover; resource and first use stay.
pub(crate) const TAKE_OVER_UPDATE: &str = "SET #token = :token, #lease_until = :lease_until";
/// `complete` and `release`: the caller's token is the current one of a key in flight within
/// retention (the lease may have ended: a token stays current until someone takes over).
pub(crate) const HELD_CONDITION: &str = "#token = :token AND #state = :in_flight AND #expires_at > :now";
/// The response stored; out of the in-flight index.
pub(crate) const COMPLETE_UPDATE: &str = "SET #state = :completed, #response = :response REMOVE #in_flight_order";
/// `purge_expired` deletes a record only while it is past retention (not one a `begin` replaced
/// since the index was read).
pub(crate) const PURGE_CONDITION: &str = "#expires_at <= :now";
/// In-flight records of one index partition first used at `:from` or later (so within retention).
pub(crate) const ABANDONED_KEY_CONDITION: &str = "#shard = :shard AND #in_flight_order >= :from";
/// Of those, the ones whose lease has ended (and, again, within retention).
pub(crate) const ABANDONED_FILTER: &str = "#lease_until <= :now AND #expires_at > :now";
/// Records of one index partition past retention.
pub(crate) const EXPIRED_KEY_CONDITION: &str = "#shard = :shard AND #expires_at <= :now";

fn names<const N: usize>(names: [&str; N]) -> HashMap<String, String> {
    names.into_iter().map(|name| (format!("#{name}"), name.to_owned())).collect()
}

fn values<const N: usize>(values: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    values.into_iter().map(|(name, value)| (format!(":{name}"), value)).collect()
}

fn token_value(token: LeaseToken) -> AttributeValue {
    s(token.0.to_string())
}

/// Writes `item` (a new record, see [`super::item::NewRecord`]) unless a live record holds its
/// key; a refusal carries the record that refused.
pub(crate) fn create(client: &Client, table: &str, item: Item, now: i64) -> PutItemFluentBuilder {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(CREATE_CONDITION)
        .set_expression_attribute_names(Some(names([PK, EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([("now", n(now))])))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
}

/// Takes over the abandoned record `pk` whose lease `seen` the caller saw end: a new token and
/// lease; a refusal carries the record as it is now.
pub(crate) fn take_over(
    client: &Client,
    table: &str,
    pk: &str,
    seen: LeaseToken,
    token: LeaseToken,
    lease_until: i64,
    now: i64,
) -> UpdateItemFluentBuilder {
    client
        .update_item()
        .table_name(table)
        .key(PK, s(pk))
        .update_expression(TAKE_OVER_UPDATE)
        .condition_expression(TAKE_OVER_CONDITION)
        .set_expression_attribute_names(Some(names([TOKEN, STATE, LEASE_UNTIL, EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([
            ("seen_token", token_value(seen)),
            ("in_flight", s(IN_FLIGHT)),
            ("now", n(now)),
            ("token", token_value(token)),
            ("lease_until", n(lease_until)),
        ])))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
}

/// Stores the response of the request holding `token`; a refusal carries the record as it is.
pub(crate) fn complete(
    client: &Client,
    table: &str,
    pk: &str,
    token: LeaseToken,
    response: Vec<u8>,
    now: i64,
) -> UpdateItemFluentBuilder {
    client
        .update_item()
        .table_name(table)
        .key(PK, s(pk))
        .update_expression(COMPLETE_UPDATE)
        .condition_expression(HELD_CONDITION)
        .set_expression_attribute_names(Some(names([TOKEN, STATE, EXPIRES_AT, RESPONSE, IN_FLIGHT_ORDER])))
        .set_expression_attribute_values(Some(values([
            ("token", token_value(token)),
            ("in_flight", s(IN_FLIGHT)),
            ("now", n(now)),
            ("completed", s(COMPLETED)),
            ("response", b(response)),
        ])))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
}

/// Forgets the key in flight under `token`.
pub(crate) fn release(client: &Client, table: &str, pk: &str, token: LeaseToken, now: i64) -> DeleteItemFluentBuilder {
    client
        .delete_item()
        .table_name(table)
        .key(PK, s(pk))
        .condition_expression(HELD_CONDITION)
        .set_expression_attribute_names(Some(names([TOKEN, STATE, EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([
            ("token", token_value(token)),
            ("in_flight", s(IN_FLIGHT)),
            ("now", n(now)),
        ])))
}

/// Deletes the record `key` if it is past retention.
pub(crate) fn purge(client: &Client, table: &str, key: Item, now: i64) -> DeleteItemFluentBuilder {
    client
        .delete_item()
        .table_name(table)
        .set_key(Some(key))
        .condition_expression(PURGE_CONDITION)
        .set_expression_attribute_names(Some(names([EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([("now", n(now))])))
}

/// The record `pk` as of every write acknowledged before (a strongly consistent read).
pub(crate) fn read(client: &Client, table: &str, pk: &str) -> GetItemFluentBuilder {
    client.get_item().table_name(table).key(PK, s(pk)).consistent_read(true)
}

/// A page of the in-flight index partition `shard`: records first used at `from_created_at` or
/// later, oldest first, those whose lease ended by `now` kept.
pub(crate) fn abandoned_page(
    client: &Client,
    table: &str,
    shard: &str,
    from: String,
    now: i64,
    start: Option<Item>,
) -> QueryFluentBuilder {
    client
        .query()
        .table_name(table)
        .index_name(IN_FLIGHT_INDEX)
        .key_condition_expression(ABANDONED_KEY_CONDITION)
        .filter_expression(ABANDONED_FILTER)
        .set_expression_attribute_names(Some(names([SHARD, IN_FLIGHT_ORDER, LEASE_UNTIL, EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([("shard", s(shard)), ("from", s(from)), ("now", n(now))])))
        .scan_index_forward(true)
        .limit(QUERY_PAGE_ITEMS)
        .set_exclusive_start_key(start)
}

/// A page of the expiry index partition `shard`: keys of records past retention at `now`.
pub(crate) fn expired_page(
    client: &Client,
    table: &str,
    shard: &str,
    now: i64,
    start: Option<Item>,
) -> QueryFluentBuilder {
    client
        .query()
        .table_name(table)
        .index_name(BY_EXPIRY_INDEX)
        .key_condition_expression(EXPIRED_KEY_CONDITION)
        .set_expression_attribute_names(Some(names([SHARD, EXPIRES_AT])))
        .set_expression_attribute_values(Some(values([("shard", s(shard)), ("now", n(now))])))
        .limit(QUERY_PAGE_ITEMS)
        .set_exclusive_start_key(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::offline_client as offline;

    /// `expression` with every `#name` and `:value` replaced by what the request maps it to, so a
    /// test reads the condition DynamoDB evaluates. Panics on a placeholder the request does not
    /// define, and on one it defines but no expression uses (DynamoDB refuses both).
    fn resolved(
        expressions: &[&str],
        names: Option<&HashMap<String, String>>,
        values: Option<&HashMap<String, AttributeValue>>,
    ) -> Vec<String> {
        let names = names.cloned().unwrap_or_default();
        let values = values.cloned().unwrap_or_default();
        let mut used = std::collections::HashSet::new();
        let out = expressions
            .iter()
            .map(|expression| {
                let mut out = String::new();
                let mut rest = *expression;
                while let Some(at) = rest.find(['#', ':']) {
                    out.push_str(&rest[..at]);
                    let end = rest[at + 1..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(rest.len(), |e| at + 1 + e);
                    let placeholder = &rest[at..end];
                    let text = if placeholder.starts_with('#') {
                        names.get(placeholder).unwrap_or_else(|| panic!("{placeholder} undefined")).clone()
                    } else {
                        match values.get(placeholder).unwrap_or_else(|| panic!("{placeholder} undefined")) {
                            AttributeValue::S(text) => format!("'{text}'"),
                            AttributeValue::N(number) => number.clone(),
                            AttributeValue::B(blob) => format!("<{} bytes>", blob.as_ref().len()),
                            other => format!("{other:?}"),
                        }
                    };
                    used.insert(placeholder.to_owned());
                    out.push_str(&text);
                    rest = &rest[end..];
                }
                out.push_str(rest);
                out
            })
            .collect();
        for defined in names.keys().chain(values.keys()) {
            assert!(used.contains(defined), "{defined} is defined but unused");
        }
        out
    }

    #[test]
    fn a_new_record_is_written_only_over_nothing_or_a_record_past_retention() {
        let item = HashMap::from([(PK.to_owned(), s("alice\u{1f}k"))]);
        let request = create(&offline(), "t", item.clone(), 42);
        let input = request.as_input();
        assert_eq!(input.get_table_name().as_deref(), Some("t"));
        assert_eq!(input.get_item().as_ref(), Some(&item));
        let condition = resolved(
            &[input.get_condition_expression().as_deref().expect("a condition")],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(condition, ["attribute_not_exists(pk) OR expires_at <= 42"]);
        assert_eq!(
            input.get_return_values_on_condition_check_failure(),
            &Some(ReturnValuesOnConditionCheckFailure::AllOld),
            "a refusal carries the record that refused, read atomically with the check"
        );
    }

    #[test]
    fn a_takeover_needs_the_seen_token_an_ended_lease_and_retention() {
        let (seen, token) = (LeaseToken::new(), LeaseToken::new());
        let request = take_over(&offline(), "t", "alice\u{1f}k", seen, token, 90, 60);
        let input = request.as_input();
        assert_eq!(input.get_key().as_ref(), Some(&HashMap::from([(PK.to_owned(), s("alice\u{1f}k"))])));
        let resolved = resolved(
            &[
                input.get_condition_expression().as_deref().expect("a condition"),
                input.get_update_expression().as_deref().expect("an update"),
            ],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(
            resolved,
            [
                format!("token = '{}' AND state = 'in_flight' AND lease_until <= 60 AND expires_at > 60", seen.0),
                format!("SET token = '{}', lease_until = 90", token.0),
            ]
        );
        assert_eq!(
            input.get_return_values_on_condition_check_failure(),
            &Some(ReturnValuesOnConditionCheckFailure::AllOld)
        );
    }

    #[test]
    fn complete_needs_the_current_token_and_leaves_the_in_flight_index() {
        let token = LeaseToken::new();
        let request = complete(&offline(), "t", "alice\u{1f}k", token, vec![0, 255], 60);
        let input = request.as_input();
        let resolved = resolved(
            &[
                input.get_condition_expression().as_deref().expect("a condition"),
                input.get_update_expression().as_deref().expect("an update"),
            ],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(
            resolved,
            [
                format!("token = '{}' AND state = 'in_flight' AND expires_at > 60", token.0),
                "SET state = 'completed', response = <2 bytes> REMOVE in_flight_order".to_owned(),
            ],
            "no lease check: a token stays current after its lease until someone takes over"
        );
        assert_eq!(
            input.get_return_values_on_condition_check_failure(),
            &Some(ReturnValuesOnConditionCheckFailure::AllOld)
        );
    }

    #[test]
    fn release_deletes_only_a_key_in_flight_under_the_token() {
        let token = LeaseToken::new();
        let request = release(&offline(), "t", "alice\u{1f}k", token, 60);
        let input = request.as_input();
        let condition = resolved(
            &[input.get_condition_expression().as_deref().expect("a condition")],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(condition, [format!("token = '{}' AND state = 'in_flight' AND expires_at > 60", token.0)]);
    }

    #[test]
    fn purge_deletes_only_a_record_still_past_retention() {
        let key = HashMap::from([(PK.to_owned(), s("alice\u{1f}k"))]);
        let request = purge(&offline(), "t", key.clone(), 60);
        let input = request.as_input();
        assert_eq!(input.get_key().as_ref(), Some(&key));
        let condition = resolved(
            &[input.get_condition_expression().as_deref().expect("a condition")],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(condition, ["expires_at <= 60"]);
    }

    #[test]
    fn reads_are_strongly_consistent() {
        let request = read(&offline(), "t", "alice\u{1f}k");
        assert_eq!(request.as_input().get_consistent_read(), &Some(true));
    }

    #[test]
    fn abandoned_reads_the_in_flight_index_oldest_first() {
        let request = abandoned_page(&offline(), "t", "3", "00000000000000000007".into(), 60, None);
        let input = request.as_input();
        assert_eq!(input.get_index_name().as_deref(), Some(IN_FLIGHT_INDEX));
        assert_eq!(input.get_scan_index_forward(), &Some(true), "oldest first");
        assert_eq!(input.get_limit(), &Some(QUERY_PAGE_ITEMS));
        let resolved = resolved(
            &[
                input.get_key_condition_expression().as_deref().expect("a key condition"),
                input.get_filter_expression().as_deref().expect("a filter"),
            ],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(
            resolved,
            ["shard = '3' AND in_flight_order >= '00000000000000000007'", "lease_until <= 60 AND expires_at > 60",]
        );
    }

    #[test]
    fn purge_reads_the_expiry_index_up_to_now() {
        let start = HashMap::from([(PK.to_owned(), s("alice\u{1f}k"))]);
        let request = expired_page(&offline(), "t", "3", 60, Some(start.clone()));
        let input = request.as_input();
        assert_eq!(input.get_index_name().as_deref(), Some(BY_EXPIRY_INDEX));
        assert_eq!(input.get_exclusive_start_key().as_ref(), Some(&start));
        let resolved = resolved(
            &[input.get_key_condition_expression().as_deref().expect("a key condition")],
            input.get_expression_attribute_names().as_ref(),
            input.get_expression_attribute_values().as_ref(),
        );
        assert_eq!(resolved, ["shard = '3' AND expires_at <= 60"]);
    }
}
