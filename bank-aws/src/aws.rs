//! What every AWS adapter of this crate shares: loading the SDK configuration (region, endpoint,
//! credentials) with an HTTPS client on rustls + ring, and mapping SDK failures to
//! [`bank_core::Error`].
//!
//! Credentials come from the standard chain of `aws-config` (environment, profile files, web
//! identity, ECS and EC2 instance roles) unless the caller passes static ones (tests against an
//! emulator). Nothing here logs a credential.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bank_core::Error;

/// Where the AWS services are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// `AWS_REGION`.
    pub region: String,
    /// `AWS_ENDPOINT_URL`: an emulator's address (`http://127.0.0.1:5000`), or `None` for AWS.
    pub endpoint: Option<String>,
}

/// Static credentials (an emulator's, or a test's); `None` uses the standard chain.
#[derive(Clone)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// The SDK configuration for `settings`: the region, the endpoint when one is set, rustls on ring
/// for HTTPS, and `credentials` or the standard chain.
pub async fn sdk_config(settings: &AwsSettings, credentials: Option<StaticCredentials>) -> SdkConfig {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(http).region(Region::new(settings.region.clone()));
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(StaticCredentials { access_key_id, secret_access_key }) = credentials {
        loader = loader.credentials_provider(Credentials::new(access_key_id, secret_access_key, None, None, "static"));
    }
    loader.load().await
}

/// A failure of an AWS call as a storage error: retryable when the request may succeed later
/// (no answer, a timeout, throttling, a 5xx), not for a refusal. `what` names the call.
pub(crate) fn sdk_err<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error() || retryable_code(service.err().code().unwrap_or_default())
        }
        _ => false,
    };
    let code = err.code().map(str::to_owned);
    let message = err.message().map(str::to_owned);
    Error::Storage {
        message: format!(
            "{what}: {}{}",
            code.unwrap_or_else(|| "no error code".to_owned()),
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        retryable,
    }
}

/// Error codes of refusals that may succeed later: throttling and server-side failures of S3,
/// DynamoDB, SQS and SNS (some come with a 400 status, so the status alone does not tell). SQS's
/// `OverLimit` (120,000 FIFO messages in flight) passes once consumers catch up.
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "InternalFailure"
            | "RequestThrottled"
            | "AWS.SimpleQueueService.RequestThrottled"
            | "KmsThrottled"
            | "OverLimit"
            | "Throttled"
            | "KMSThrottling"
    )
}

/// Test support: the emulator `scripts/services.sh` starts (`BANK_TEST_AWS_ENDPOINT`).
#[cfg(feature = "testkit")]
pub mod testing {
    use super::{AwsSettings, StaticCredentials, sdk_config};
    use crate::postgres::testing::services_required;

    /// The SDK configuration for the emulator at `BANK_TEST_AWS_ENDPOINT` (region `us-east-1`,
    /// the emulator's dummy credentials); `None` (after printing why) when it is unset, or a
    /// panic when `BANK_REQUIRE_SERVICES=1`.
    pub async fn emulator_config() -> Option<aws_config::SdkConfig> {
        let Ok(endpoint) = std::env::var("BANK_TEST_AWS_ENDPOINT") else {
            let reason = "no AWS emulator (BANK_TEST_AWS_ENDPOINT is unset)";
            assert!(!services_required(), "BANK_REQUIRE_SERVICES=1 and {reason}");
            eprintln!("skipped: {reason} (run scripts/services.sh start)");
            return None;
        };
        let settings = AwsSettings { region: "us-east-1".to_owned(), endpoint: Some(endpoint) };
        let credentials =
            StaticCredentials { access_key_id: "testing".to_owned(), secret_access_key: "testing".to_owned() };
        Some(sdk_config(&settings, Some(credentials)).await)
    }

    /// A name no other test run uses: `<prefix>-<random>` in lowercase (valid for buckets,
    /// queues, tables and topics).
    pub fn unique_name(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    fn refusal(status: u16, code: &str) -> SdkError<PutItemError, HttpResponse> {
        let meta = aws_sdk_dynamodb::error::ErrorMetadata::builder().code(code).build();
        let err = PutItemError::generic(meta);
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    fn is_retryable(err: &Error) -> bool {
        matches!(err, Error::Storage { retryable: true, .. })
    }

    #[test]
    fn throttling_and_server_failures_are_retryable_and_refusals_are_not() {
        assert!(is_retryable(&sdk_err("put", refusal(400, "ThrottlingException"))));
        assert!(is_retryable(&sdk_err("put", refusal(400, "ProvisionedThroughputExceededException"))));
        assert!(is_retryable(&sdk_err("put", refusal(500, "InternalServerError"))));
        assert!(is_retryable(&sdk_err("put", refusal(503, "SomethingNew"))), "any 5xx");
        assert!(is_retryable(&sdk_err("send", refusal(400, "RequestThrottled"))), "SQS throttling");
        assert!(is_retryable(&sdk_err("receive", refusal(403, "OverLimit"))), "SQS FIFO in-flight limit");
        assert!(is_retryable(&sdk_err("publish", refusal(400, "Throttled"))), "SNS throttling");
        assert!(!is_retryable(&sdk_err("put", refusal(400, "ValidationException"))));
        assert!(!is_retryable(&sdk_err("put", refusal(400, "ResourceNotFoundException"))));
        let typed = PutItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .meta(
                    aws_sdk_dynamodb::error::ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .build(),
                )
                .build(),
        );
        let raw = HttpResponse::new(400.try_into().expect("status"), SdkBody::empty());
        assert!(is_retryable(&sdk_err("put", SdkError::service_error(typed, raw))));
    }
}
