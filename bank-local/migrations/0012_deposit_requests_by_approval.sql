-- Approved deposit requests in approval order: what the sweep that completes interrupted
-- approvals reads (bank_core::deposits::DepositsService::complete_approved, every minute over the
-- last day's approvals).
CREATE INDEX deposit_requests_approved ON deposit_requests (approved_at, id) WHERE approved_by IS NOT NULL;
