//! bank-aws's AWS tests, one binary: each adapter against its port's conformance suite and its own
//! cases, on the AWS API emulator `scripts/services.sh` starts (moto, `BANK_TEST_AWS_ENDPOINT`),
//! and the Redis adapters on its Redis (`BANK_TEST_REDIS_URL`).
//! Without it each case prints why and skips; it fails when `BANK_REQUIRE_SERVICES=1`.

mod dynamodb;
mod redis;
mod s3;
mod sns;
mod sqs;
