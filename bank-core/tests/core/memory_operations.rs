//! The in-memory audit log and deposit-request store against their conformance suites.

use bank_core::testkit::approvals::MemoryDepositRequestsHarness;
use bank_core::testkit::audit::MemoryAuditHarness;

bank_core::audit_conformance_tests!(MemoryAuditHarness);
bank_core::deposit_requests_conformance_tests!(MemoryDepositRequestsHarness);
