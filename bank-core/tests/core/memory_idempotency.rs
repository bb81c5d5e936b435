//! The in-memory idempotency store runs the same conformance suite as every other adapter.

use bank_core::testkit::idempotency::MemoryIdempotencyHarness;

bank_core::idempotency_conformance_tests!(MemoryIdempotencyHarness);
