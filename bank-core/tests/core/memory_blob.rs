//! The in-memory blob store runs the same conformance suite as every other blob adapter.

use bank_core::testkit::blob::MemoryBlobHarness;

bank_core::blob_conformance_tests!(MemoryBlobHarness);
