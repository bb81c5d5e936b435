//! The in-memory user store runs the same conformance suite as every other user store.

use bank_core::testkit::users::MemoryUsersHarness;

bank_core::users_conformance_tests!(MemoryUsersHarness);
