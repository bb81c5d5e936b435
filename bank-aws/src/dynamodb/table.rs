//! The idempotency table's shape, described once: [`create_table`] makes it (emulators, first
//! installs) and [`check_table`] refuses, at start-up, a table that does not have it.
//!
//! | | partition key | sort key | projection | holds |
//! |---|---|---|---|---|
//! | table | `pk` (S) | — | — | every record |
//! | GSI `in_flight` | `shard` (S) | `in_flight_order` (S) | all | records in flight (sparse: `complete` removes the sort key) |
//! | GSI `by_expiry` | `shard` (S) | `expires_at` (N) | keys | every record |
//!
//! On-demand capacity; TTL on `ttl`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use bank_core::{Error, Result};

use super::item::{EXPIRES_AT, IN_FLIGHT_ORDER, PK, SHARD, TTL};
use crate::aws::sdk_err;

/// The index of records in flight, oldest first per shard (`abandoned`).
pub(crate) const IN_FLIGHT_INDEX: &str = "in_flight";
/// The index of every record by `expires_at` per shard (`purge_expired`).
pub(crate) const BY_EXPIRY_INDEX: &str = "by_expiry";
/// Longest wait for a new table to become active.
const CREATE_WAIT_SECONDS_MAX: u64 = 300;

/// The key attributes and their types.
fn key_attributes() -> [(&'static str, ScalarAttributeType); 4] {
    [
        (PK, ScalarAttributeType::S),
        (SHARD, ScalarAttributeType::S),
        (IN_FLIGHT_ORDER, ScalarAttributeType::S),
        (EXPIRES_AT, ScalarAttributeType::N),
    ]
}

/// An index: name, partition key, sort key, projection.
struct IndexShape {
    name: &'static str,
    partition: &'static str,
    sort: &'static str,
    projection: ProjectionType,
}

fn index_shapes() -> [IndexShape; 2] {
    [
        IndexShape {
            name: IN_FLIGHT_INDEX,
            partition: SHARD,
            sort: IN_FLIGHT_ORDER,
            // `abandoned` answers whole records from the index.
            projection: ProjectionType::All,
        },
        // `purge_expired` needs only the keys.
        IndexShape { name: BY_EXPIRY_INDEX, partition: SHARD, sort: EXPIRES_AT, projection: ProjectionType::KeysOnly },
    ]
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_err)
}

fn build_err(err: impl std::fmt::Display) -> Error {
    Error::storage(format!("dynamodb: building a table request: {err}"), false)
}

/// The `CreateTable` request of the idempotency table `table`.
pub(crate) fn create_table_request(client: &Client, table: &str) -> Result<CreateTableFluentBuilder> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element(PK, KeyType::Hash)?);
    for (name, attribute_type) in key_attributes() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(attribute_type)
                .build()
                .map_err(build_err)?,
        );
    }
    for shape in index_shapes() {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(shape.name)
                .key_schema(key_element(shape.partition, KeyType::Hash)?)
                .key_schema(key_element(shape.sort, KeyType::Range)?)
                .projection(Projection::builder().projection_type(shape.projection).build())
                .build()
                .map_err(build_err)?,
        );
    }
    Ok(request)
}

/// Creates the idempotency table `table` (an existing one is fine), waits until it is active,
/// and turns TTL on (on `ttl`). For first installs and emulators (`bank-server migrate
/// --create-aws-resources`); [`check_table`] then checks its shape.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    match create_table_request(client, table)?.send().await {
        Ok(_) => {}
        Err(err) if matches!(err.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {}
        Err(err) => return Err(sdk_err("dynamodb CreateTable", err)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(CREATE_WAIT_SECONDS_MAX))
        .await
        .map_err(|err| Error::storage(format!("dynamodb table {table} did not become active: {err}"), true))?;
    if ttl_status(client, table).await?.is_none() {
        let specification =
            TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL).build().map_err(build_err)?;
        match client.update_time_to_live().table_name(table).time_to_live_specification(specification).send().await {
            Ok(_) => {}
            // Turned on by a concurrent `create_table` meanwhile.
            Err(err) if err.code() == Some("ValidationException") && ttl_status(client, table).await?.is_some() => {}
            Err(err) => return Err(sdk_err("dynamodb UpdateTimeToLive", err)),
        }
    }
    Ok(())
}

/// `Some(status)` when TTL is on (or being turned on) on the `ttl` attribute.
async fn ttl_status(client: &Client, table: &str) -> Result<Option<TimeToLiveStatus>> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|err| sdk_err("dynamodb DescribeTimeToLive", err))?;
    Ok(described.time_to_live_description().and_then(|ttl| match ttl.time_to_live_status() {
        Some(status @ (TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
            if ttl.attribute_name() == Some(TTL) =>
        {
            Some(status.clone())
        }
        _ => None,
    }))
}

/// Checks that `table` exists, is usable and has the idempotency table's shape — key, indexes,
/// TTL on `ttl` — so a wrong table name or an old layout stops the server at start-up instead of
/// answering wrongly later.
pub async fn check_table(client: &Client, table: &str) -> Result<()> {
    let described =
        client.describe_table().table_name(table).send().await.map_err(|err| sdk_err("dynamodb DescribeTable", err))?;
    let description = described
        .table()
        .ok_or_else(|| Error::storage(format!("dynamodb table {table}: DescribeTable answered no table"), false))?;
    check_description(description).map_err(|why| Error::storage(format!("dynamodb table {table}: {why}"), false))?;
    if ttl_status(client, table).await?.is_none() {
        return Err(Error::storage(format!("dynamodb table {table}: TTL is not on for attribute {TTL}"), false));
    }
    Ok(())
}

fn keys_of(elements: &[KeySchemaElement]) -> Vec<(&str, &KeyType)> {
    elements.iter().map(|e| (e.attribute_name(), e.key_type())).collect()
}

/// Why `description` is not the idempotency table, if it is not.
pub(crate) fn check_description(description: &TableDescription) -> std::result::Result<(), String> {
    if !matches!(description.table_status(), Some(TableStatus::Active | TableStatus::Updating)) {
        return Err(format!("status {:?}, not active", description.table_status()));
    }
    if keys_of(description.key_schema()) != [(PK, &KeyType::Hash)] {
        return Err(format!("key schema {:?}, expected {PK} alone", keys_of(description.key_schema())));
    }
    for shape in index_shapes() {
        let index = description
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(shape.name))
            .ok_or_else(|| format!("no global secondary index {}", shape.name))?;
        let keys = keys_of(index.key_schema());
        if keys != [(shape.partition, &KeyType::Hash), (shape.sort, &KeyType::Range)] {
            return Err(format!("index {} has keys {keys:?}", shape.name));
        }
        let projection = index.projection().and_then(Projection::projection_type);
        if shape.projection == ProjectionType::All && projection != Some(&ProjectionType::All) {
            return Err(format!("index {} projects {projection:?}, not all attributes", shape.name));
        }
        if matches!(index.index_status(), Some(status) if *status != IndexStatus::Active) {
            return Err(format!("index {} is {:?}, not active", shape.name, index.index_status()));
        }
    }
    for (name, expected) in key_attributes() {
        let actual = description
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == name)
            .map(AttributeDefinition::attribute_type);
        if actual != Some(&expected) {
            return Err(format!("attribute {name} is {actual:?}, expected {expected:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription;

    use super::*;
    use crate::dynamodb::offline_client as offline;

    /// The description DynamoDB gives of the table `create_table` asks for.
    fn described() -> TableDescription {
        let request = create_table_request(&offline(), "t").expect("request");
        let input = request.as_input();
        let mut description = TableDescription::builder()
            .table_name("t")
            .table_status(TableStatus::Active)
            .set_key_schema(input.get_key_schema().clone())
            .set_attribute_definitions(input.get_attribute_definitions().clone());
        for index in input.get_global_secondary_indexes().clone().unwrap_or_default() {
            description = description.global_secondary_indexes(
                GlobalSecondaryIndexDescription::builder()
                    .index_name(index.index_name())
                    .set_key_schema(Some(index.key_schema().to_vec()))
                    .set_projection(index.projection().cloned())
                    .index_status(IndexStatus::Active)
                    .build(),
            );
        }
        description.build()
    }

    #[test]
    fn the_created_table_passes_the_check() {
        let request = create_table_request(&offline(), "t").expect("request");
        assert_eq!(request.as_input().get_billing_mode(), &Some(BillingMode::PayPerRequest));
        assert_eq!(check_description(&described()), Ok(()));
    }

    #[test]
    fn other_shapes_are_refused() {
        let mut no_index = described();
        no_index.global_secondary_indexes = Some(vec![no_index.global_secondary_indexes()[0].clone()]);
        assert!(check_description(&no_index).expect_err("one index missing").contains(BY_EXPIRY_INDEX));

        let mut keys_only = described();
        let mut indexes = keys_only.global_secondary_indexes().to_vec();
        indexes[0].projection = Some(Projection::builder().projection_type(ProjectionType::KeysOnly).build());
        keys_only.global_secondary_indexes = Some(indexes);
        assert!(check_description(&keys_only).expect_err("abandoned needs whole records").contains("projects"));

        let mut number_key = described();
        number_key.attribute_definitions = Some(
            number_key
                .attribute_definitions()
                .iter()
                .map(|d| {
                    let attribute_type =
                        if d.attribute_name() == PK { ScalarAttributeType::N } else { d.attribute_type().clone() };
                    AttributeDefinition::builder()
                        .attribute_name(d.attribute_name())
                        .attribute_type(attribute_type)
                        .build()
                        .expect("definition")
                })
                .collect(),
        );
        assert!(check_description(&number_key).expect_err("pk must be a string").contains("attribute pk"));

        let mut creating = described();
        creating.table_status = Some(TableStatus::Creating);
        assert!(check_description(&creating).is_err());
    }
}
