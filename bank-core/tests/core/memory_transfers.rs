//! The in-memory transfer store runs the transfer-store/outbox conformance suite.

use bank_core::testkit::outbox::MemoryTransferStoreHarness;

bank_core::transfer_store_conformance_tests!(MemoryTransferStoreHarness);
