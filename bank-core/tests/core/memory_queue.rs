//! The in-memory transfer queue runs the same conformance suite as every other queue adapter.

use bank_core::testkit::queue::MemoryQueueHarness;

bank_core::queue_conformance_tests!(MemoryQueueHarness);
