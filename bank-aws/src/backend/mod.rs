//! [`AwsBackend`]: every store of the seed's AWS system opened together — the PostgreSQL stores
//! (ledger, transfers with their outbox, users, audit log, notification log, deposit requests),
//! idempotency keys on DynamoDB, the transfer queue on SQS FIFO, events on an SNS FIFO topic
//! read through SQS FIFO subscription queues, statements and sealed audit segments on S3 with
//! Object Lock, account views cached in Redis — ready to be assembled into `bank-core`'s services by a server (the reference
//! server's `BANK_BACKEND=aws` does exactly this), one process or many sharing the services.
//!
//! [`create_resources`] makes the AWS resources (first installs, emulators); [`AwsBackend::open`]
//! checks they exist and have the shape the adapters rely on, so that a wrong name or a missing
//! resource stops the start, naming it ([`OpenError::resource`]).

mod names;

use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;
use bank_core::cache::{CachedLedger, VIEW_TTL_DEFAULT};
use bank_core::clock::Clock;
use bank_core::money::Currency;

pub use names::{
    AwsResources, check_bucket_name, check_queue_name, check_queue_prefix, check_table_name, check_topic_name,
};

use crate::aws::{AwsSettings, StaticCredentials, sdk_config, sdk_err};
use crate::dynamodb::{DynamoIdempotencyStore, create_table};
use crate::postgres::{PgConfig, PgDb, PgError, PgStores};
use crate::redis::{RedisClient, RedisConfig, RedisViewCache};
use crate::s3::S3BlobStore;
use crate::sns::{
    SnsEventPublisher, SqsEventSubscriber, check_subscription_queue, create_event_topic, create_subscription_queue,
    subscription_queue_name,
};
use crate::sqs::{SqsTransferQueue, create_transfer_queue, queue_urls};

/// One resource of the backend, to name what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// The PostgreSQL writer.
    Database,
    /// The PostgreSQL reader.
    DatabaseReader,
    /// [`AwsResources::idempotency_table`].
    IdempotencyTable,
    /// [`AwsResources::transfer_queue`] (and its dead-letter queue).
    TransferQueue,
    /// [`AwsResources::events_topic`].
    EventsTopic,
    /// A subscription queue ([`AwsResources::subscription_queue_prefix`]).
    SubscriptionQueue,
    /// [`AwsResources::statements_bucket`].
    StatementsBucket,
    /// [`AwsResources::audit_bucket`].
    AuditBucket,
    /// The Redis cache.
    Redis,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Database => "the PostgreSQL writer",
            Resource::DatabaseReader => "the PostgreSQL reader",
            Resource::IdempotencyTable => "the idempotency table",
            Resource::TransferQueue => "the transfer queue",
            Resource::EventsTopic => "the events topic",
            Resource::SubscriptionQueue => "the subscription queue",
            Resource::StatementsBucket => "the statements bucket",
            Resource::AuditBucket => "the audit bucket",
            Resource::Redis => "Redis",
        })
    }
}

/// Why the backend could not be opened or its resources created.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database could not be used (unreachable, not this bank's, not migrated, …).
    #[error("{resource}: {source}")]
    Database {
        /// [`Resource::Database`] or [`Resource::DatabaseReader`].
        resource: Resource,
        /// What went wrong.
        source: PgError,
    },
    /// A resource is missing, has the wrong shape, or does not answer.
    #[error("{resource} {name:?}: {source}")]
    Service {
        /// Which one.
        resource: Resource,
        /// Its name as configured.
        name: String,
        /// What went wrong.
        source: bank_core::Error,
    },
}

impl OpenError {
    /// The resource at fault.
    pub fn resource(&self) -> Resource {
        match self {
            OpenError::Database { resource, .. } | OpenError::Service { resource, .. } => *resource,
        }
    }

    fn service(resource: Resource, name: &str) -> impl FnOnce(bank_core::Error) -> OpenError + '_ {
        move |source| OpenError::Service { resource, name: name.to_owned(), source }
    }
}

/// How to open the backend. `Debug` leaves the URLs out (they may carry passwords).
#[derive(Clone)]
pub struct AwsBackendConfig {
    /// Region and endpoint.
    pub settings: AwsSettings,
    /// Static credentials (an emulator's); `None`: the standard AWS chain.
    pub credentials: Option<StaticCredentials>,
    /// The PostgreSQL writer and reader.
    pub database: PgConfig,
    /// The AWS resources' names.
    pub resources: AwsResources,
    /// `redis://` or `rediss://` URL of the view cache and the shared rate limits.
    pub redis_url: String,
    /// The prefix of every Redis key of this bank.
    pub redis_key_prefix: String,
    /// Currencies the bank's own accounts are opened in.
    pub currencies: Vec<Currency>,
    /// The subscriptions to the event topic this bank reads (their queues are created by
    /// [`create_resources`] and checked by [`AwsBackend::open`]).
    pub subscriptions: Vec<String>,
}

impl fmt::Debug for AwsBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackendConfig")
            .field("settings", &self.settings)
            .field("credentials", &self.credentials)
            .field("resources", &self.resources)
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("currencies", &self.currencies)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// The opened stores. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    /// Time, as every store reads it.
    pub clock: Arc<dyn Clock>,
    /// The SDK configuration every client was built from.
    pub sdk: SdkConfig,
    /// Ledger, transfers + outbox, users, the bank's own accounts.
    pub postgres: PgStores,
    /// The ledger to use: the PostgreSQL ledger behind the Redis view cache (reads of account
    /// views served from Redis, every write invalidating them, whichever process wrote).
    pub ledger: Arc<CachedLedger>,
    /// The Redis connection (the cache's; the server's shared rate limits use it too).
    pub redis: RedisClient,
    /// Idempotency keys.
    pub idempotency: Arc<DynamoIdempotencyStore>,
    /// The transfer queue.
    pub queue: Arc<SqsTransferQueue>,
    /// Where the outbox relay publishes events.
    pub publisher: Arc<SnsEventPublisher>,
    /// Subscriptions to the events (existing queues only: made by [`create_resources`]).
    pub subscriber: Arc<SqsEventSubscriber>,
    /// Statements.
    pub statements: Arc<S3BlobStore>,
    /// Sealed audit segments.
    pub audit_blobs: Arc<S3BlobStore>,
}

impl AwsBackend {
    /// Connects to the database (whose schema must be this binary's), checks every AWS resource
    /// and opens the stores. Must run inside a tokio runtime.
    pub async fn open(config: &AwsBackendConfig, clock: Arc<dyn Clock>) -> Result<AwsBackend, OpenError> {
        let db = connect(&config.database).await?;
        db.check_schema().await.map_err(|source| OpenError::Database { resource: Resource::Database, source })?;
        let postgres = PgStores::open(&db, Arc::clone(&clock), &config.currencies)
            .await
            .map_err(OpenError::service(Resource::Database, db.name()))?;
        // Lazy: a Redis that is down is no reason not to start (views fall through to the database);
        // only a URL this build cannot use stops the start.
        let redis_config =
            RedisConfig { key_prefix: config.redis_key_prefix.clone(), ..RedisConfig::new(&config.redis_url) };
        let redis =
            RedisClient::connect(&redis_config).map_err(OpenError::service(Resource::Redis, "BANK_REDIS_URL"))?;
        let cache = Arc::new(RedisViewCache::new(redis.clone()));
        let ledger = Arc::new(CachedLedger::new(postgres.ledger.clone(), cache, Arc::clone(&clock), VIEW_TTL_DEFAULT));
        let sdk = sdk_config(&config.settings, config.credentials.clone()).await;
        let names = &config.resources;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let idempotency = Arc::new(DynamoIdempotencyStore::new(dynamodb, &names.idempotency_table, Arc::clone(&clock)));
        idempotency
            .check_table()
            .await
            .map_err(OpenError::service(Resource::IdempotencyTable, &names.idempotency_table))?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let urls = queue_urls(&sqs, &names.transfer_queue)
            .await
            .map_err(OpenError::service(Resource::TransferQueue, &names.transfer_queue))?;
        let queue = Arc::new(SqsTransferQueue::new(sqs.clone(), urls));
        queue.check().await.map_err(OpenError::service(Resource::TransferQueue, &names.transfer_queue))?;
        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic = topic_arn(&sns, &names.events_topic)
            .await
            .map_err(OpenError::service(Resource::EventsTopic, &names.events_topic))?;
        let publisher = Arc::new(SnsEventPublisher::new(sns.clone(), &topic));
        publisher.check().await.map_err(OpenError::service(Resource::EventsTopic, &names.events_topic))?;
        for subscription in &config.subscriptions {
            let prefix = &names.subscription_queue_prefix;
            let checked = async {
                let name = subscription_queue_name(prefix, subscription)?;
                let urls = queue_urls(&sqs, &name).await?;
                check_subscription_queue(&sqs, &sns, &topic, &urls).await
            };
            checked.await.map_err(OpenError::service(Resource::SubscriptionQueue, prefix))?;
        }
        let subscriber =
            Arc::new(SqsEventSubscriber::new(sqs, sns, &topic, &names.subscription_queue_prefix).existing_only());
        let s3 = aws_sdk_s3::Client::new(&sdk);
        let statements = Arc::new(S3BlobStore::new(s3.clone(), &names.statements_bucket, Arc::clone(&clock)));
        statements
            .check_bucket()
            .await
            .map_err(OpenError::service(Resource::StatementsBucket, &names.statements_bucket))?;
        let audit_blobs = Arc::new(S3BlobStore::new(s3, &names.audit_bucket, Arc::clone(&clock)));
        audit_blobs.check_bucket().await.map_err(OpenError::service(Resource::AuditBucket, &names.audit_bucket))?;
        Ok(AwsBackend {
            clock,
            sdk,
            postgres,
            ledger,
            redis,
            idempotency,
            queue,
            publisher,
            subscriber,
            statements,
            audit_blobs,
        })
    }

    /// Closes the database pools.
    pub async fn close(&self) {
        self.postgres.db.close().await;
    }

    /// `(check name, result)` for every service the bank cannot work without (readiness
    /// probes). Redis is not one of them — views fall through to the database and rate limits
    /// fail open — so it is checked apart (`self.redis.ping()`).
    pub async fn ready(&self) -> Vec<(&'static str, bank_core::Result<()>)> {
        vec![
            ("postgresql", self.postgres.db.ready().await),
            ("dynamodb", self.idempotency.check_table().await),
            ("sqs", self.queue.check().await.map(drop)),
            ("sns", self.publisher.check().await),
            ("s3", self.statements.check_bucket().await),
        ]
    }
}

/// Creates what is missing of `resources` (an existing resource of the right kind is left as it
/// is) and migrates the database. Returns one line per resource, for the operator.
pub async fn create_resources(config: &AwsBackendConfig) -> Result<Vec<String>, OpenError> {
    let sdk = sdk_config(&config.settings, config.credentials.clone()).await;
    let names = &config.resources;
    let mut done = Vec::new();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&dynamodb, &names.idempotency_table)
        .await
        .map_err(OpenError::service(Resource::IdempotencyTable, &names.idempotency_table))?;
    done.push(format!("DynamoDB table {} is ready", names.idempotency_table));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    create_transfer_queue(&sqs, &names.transfer_queue, bank_core::queue::MAX_RECEIVES_DEFAULT)
        .await
        .map_err(OpenError::service(Resource::TransferQueue, &names.transfer_queue))?;
    done.push(format!("SQS FIFO queue {} (with its dead-letter queue) is ready", names.transfer_queue));
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = if names.events_topic.starts_with("arn:") {
        topic_arn(&sns, &names.events_topic).await
    } else {
        create_event_topic(&sns, &names.events_topic).await
    }
    .map_err(OpenError::service(Resource::EventsTopic, &names.events_topic))?;
    done.push(format!("SNS FIFO topic {topic} is ready"));
    for subscription in &config.subscriptions {
        let prefix = &names.subscription_queue_prefix;
        let name = subscription_queue_name(prefix, subscription)
            .map_err(OpenError::service(Resource::SubscriptionQueue, prefix))?;
        create_subscription_queue(&sqs, &sns, &topic, &name)
            .await
            .map_err(OpenError::service(Resource::SubscriptionQueue, prefix))?;
        done.push(format!("SQS FIFO queue {name} is subscribed to the topic (raw delivery)"));
    }
    let s3 = aws_sdk_s3::Client::new(&sdk);
    for (resource, bucket) in
        [(Resource::StatementsBucket, &names.statements_bucket), (Resource::AuditBucket, &names.audit_bucket)]
    {
        S3BlobStore::create_bucket(&s3, bucket).await.map_err(OpenError::service(resource, bucket))?;
        done.push(format!("S3 bucket {bucket} (Object Lock) is ready"));
    }
    done.dedup();
    Ok(done)
}

/// The ARN of the topic `topic`: itself when it is one, else the topic of that name in the
/// account and region (`ListTopics`), so that a process needs no `CreateTopic` permission.
async fn topic_arn(sns: &aws_sdk_sns::Client, topic: &str) -> bank_core::Result<String> {
    let suffix = format!(":{topic}");
    let mut token = None;
    loop {
        let page = sns.list_topics().set_next_token(token).send().await.map_err(|e| sdk_err("sns ListTopics", e))?;
        let found =
            page.topics().iter().filter_map(|t| t.topic_arn()).find(|arn| *arn == topic || arn.ends_with(&suffix));
        if let Some(arn) = found {
            return Ok(arn.to_owned());
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => {
                return Err(bank_core::Error::storage(
                    format!("no SNS topic {topic} in this account and region"),
                    false,
                ));
            }
        }
    }
}

async fn connect(config: &PgConfig) -> Result<PgDb, OpenError> {
    PgDb::connect(config).await.map_err(|source| {
        let resource = match &source {
            PgError::Connect { role: crate::postgres::Role::Reader, .. } => Resource::DatabaseReader,
            _ => Resource::Database,
        };
        OpenError::Database { resource, source }
    })
}

/// Test support: a fresh AWS backend's worth of resources on the services `scripts/services.sh`
/// starts (PostgreSQL, the AWS emulator, Redis).
#[cfg(feature = "testkit")]
pub mod testing {
    use super::{AwsBackendConfig, AwsResources, create_resources};
    use crate::aws::testing::unique_name;
    use crate::aws::{AwsSettings, StaticCredentials};
    use crate::postgres::PgConfig;
    use crate::postgres::testing::{skip, test_server_url};

    /// The emulator's region.
    pub const TEST_REGION: &str = "us-east-1";

    /// Resources no other test uses: a migrated schema of its own, uniquely named AWS resources
    /// (created), the Redis URL.
    #[derive(Debug, Clone)]
    pub struct TestAws {
        /// `BANK_DATABASE_URL` (a fresh schema, its connections named after the test).
        pub database_url: String,
        /// `AWS_ENDPOINT_URL`: the emulator.
        pub endpoint: String,
        /// The resources' names.
        pub resources: AwsResources,
        /// `BANK_REDIS_URL`.
        pub redis_url: String,
    }

    impl TestAws {
        /// Fresh resources for the test `name`, created; `None` (after printing why) when a
        /// service is missing, or a panic when `BANK_REQUIRE_SERVICES=1`.
        pub async fn new(name: &str) -> Option<TestAws> {
            let aws = TestAws::named(name).await?;
            create_resources(&aws.backend_config()).await.expect("create the test's AWS resources");
            Some(aws)
        }

        /// As [`TestAws::new`], but the AWS resources are only named, not created (the schema
        /// is).
        pub async fn named(name: &str) -> Option<TestAws> {
            let Ok(endpoint) = std::env::var("BANK_TEST_AWS_ENDPOINT") else {
                return skip("no AWS emulator (BANK_TEST_AWS_ENDPOINT is unset; run scripts/services.sh start)");
            };
            let Ok(redis_url) = std::env::var("BANK_TEST_REDIS_URL") else {
                return skip("no Redis (BANK_TEST_REDIS_URL is unset; run scripts/services.sh start)");
            };
            let database_url = test_server_url(name).await?;
            let fifo = |prefix: &str| format!("{}.fifo", unique_name(prefix));
            let resources = AwsResources {
                idempotency_table: unique_name("idempotency"),
                transfer_queue: fifo("transfers"),
                events_topic: fifo("events"),
                subscription_queue_prefix: unique_name("sub"),
                // 63 characters at most: a short prefix before the 32-digit suffix.
                statements_bucket: unique_name("stmt"),
                audit_bucket: unique_name("audit"),
            };
            Some(TestAws { database_url, endpoint, resources, redis_url })
        }

        /// The backend's configuration (the emulator's dummy credentials).
        pub fn backend_config(&self) -> AwsBackendConfig {
            AwsBackendConfig {
                settings: AwsSettings { region: TEST_REGION.into(), endpoint: Some(self.endpoint.clone()) },
                credentials: Some(StaticCredentials {
                    access_key_id: "testing".into(),
                    secret_access_key: "testing".into(),
                }),
                database: PgConfig::new(&self.database_url),
                resources: self.resources.clone(),
                redis_url: self.redis_url.clone(),
                redis_key_prefix: format!("{}:", self.resources.idempotency_table),
                currencies: bank_core::money::Currency::ALL.to_vec(),
                subscriptions: vec!["notifications".to_owned()],
            }
        }

        /// The server's variables for these resources (`BANK_BACKEND=aws`, `AWS_*`, names, URLs),
        /// keys excepted.
        pub fn env(&self) -> Vec<(&'static str, String)> {
            let r = &self.resources;
            vec![
                ("BANK_BACKEND", "aws".into()),
                ("BANK_DATABASE_URL", self.database_url.clone()),
                ("AWS_REGION", TEST_REGION.into()),
                ("AWS_ENDPOINT_URL", self.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
                ("BANK_IDEMPOTENCY_TABLE", r.idempotency_table.clone()),
                ("BANK_TRANSFER_QUEUE", r.transfer_queue.clone()),
                ("BANK_EVENTS_TOPIC", r.events_topic.clone()),
                ("BANK_SUBSCRIPTION_QUEUE_PREFIX", r.subscription_queue_prefix.clone()),
                ("BANK_STATEMENTS_BUCKET", r.statements_bucket.clone()),
                ("BANK_AUDIT_BUCKET", r.audit_bucket.clone()),
                ("BANK_REDIS_URL", self.redis_url.clone()),
                // Keys of their own: rate limits and views of one test never meet another's.
                ("BANK_REDIS_KEY_PREFIX", format!("{}:", r.idempotency_table)),
            ]
        }
    }
}
