"""schemathesis hooks of scripts/schemathesis.sh.

Without them the fuzzer's transfers name random account ids, and nearly every one stops at 404
or 403 before the money rules. This hook points each generated schema-valid `POST /v1/transfers`
at real accounts of the signed-in customer (BANK_ST_FROM_ACCOUNT and BANK_ST_TO_ACCOUNT, in turns
one way and the other, so the funds keep moving instead of draining from one account) in their
currency (USD: a currency mismatch stops at validation, as random ids did), leaving every other
field as generated: amounts, references, external beneficiaries and the Idempotency-Key reach the
hold and the ledger. Refusals of a wrong currency and unknown accounts are the coverage phase's
and the other operations' to find.
"""

import itertools
import os

import schemathesis

ACCOUNTS = (os.environ["BANK_ST_FROM_ACCOUNT"], os.environ["BANK_ST_TO_ACCOUNT"])
TURNS = itertools.count()


@schemathesis.hook
def map_case(ctx, case):
    operation = case.operation
    is_transfer = operation.path == "/v1/transfers" and operation.method.upper() == "POST"
    if not is_transfer or not isinstance(case.body, dict):
        return case
    if case.meta is not None and case.meta.generation.mode.is_negative:
        # A request meant to break the schema stays as generated: the server must refuse it.
        return case
    source, destination = ACCOUNTS if next(TURNS) % 2 == 0 else ACCOUNTS[::-1]
    body = dict(case.body)
    body["from_account_id"] = source
    body["currency"] = "USD"
    if "to_account_id" in body:
        body["to_account_id"] = destination
    case.body = body
    return case
