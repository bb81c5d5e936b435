// The `nodejs` build of bank-wasm (bank-wasm/pkg/node, from scripts/build-wasm.sh) against a real
// `bank-server serve --demo` on loopback: every call of the JS API, its errors as BankError, the
// idempotency key of a transfer reused on a retry, and pagination. Run: node --test bank-wasm/tests/

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { missing, nextCode, pkgDir, serverBinary, startDemoServer, wrongCode } from "./server.mjs";

const modulePath = join(pkgDir, "node", "bank_wasm.js");
const skip = missing([
  ["the bank-wasm nodejs package (run scripts/build-wasm.sh)", modulePath],
  ["the bank-server binary (cargo build --release -p bank-server, or set BANK_SERVER_BIN)", serverBinary()],
]);
if (skip) console.log(`# skipped: ${skip}`);

const PROBLEMS = "https://bank.example/problems/";

/** Asserts that `promise` rejects with a BankError of `kind` (a suffix of the type URI) and `status`. */
async function rejectsWith(promise, BankError, kind, status) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof BankError, `not a BankError: ${caught}`);
  assert.equal(caught.type, PROBLEMS + kind, caught.toString());
  assert.equal(caught.status, status, caught.toString());
  assert.equal(typeof caught.title, "string");
  return caught;
}

async function waitForFinal(bank, transferId) {
  for (let polls = 0; polls < 200; polls++) {
    const transfer = await bank.getTransfer(transferId);
    if (transfer.status === "settled" || transfer.status === "failed") return transfer;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`transfer ${transferId} did not settle in 20 s`);
}

describe("bank-wasm on Node against bank-server --demo", { skip: skip ?? false }, () => {
  let server;
  let wasm;
  let alice;
  let bank;
  let account;

  before(async () => {
    wasm = createRequire(import.meta.url)(modulePath);
    server = await startDemoServer();
    alice = server.users.alice;
  });
  after(async () => {
    await server?.stop();
  });

  test("a wrong TOTP code is a 401 BankError with the request id", async () => {
    const error = await rejectsWith(
      wasm.BankClient.login(server.baseUrl, alice.email, alice.password, wrongCode(alice)),
      wasm.BankError,
      "unauthorized",
      401,
    );
    assert.match(error.requestId, /^[0-9a-f-]{36}$/);
    assert.equal(error.retryable, false);
    assert.ok(error.message.length > 0);
  });

  test("no answer is a transport BankError with status 0", async () => {
    const error = await rejectsWith(
      wasm.BankClient.login("http://127.0.0.1:9", alice.email, alice.password, "000000"),
      wasm.BankError,
      "client/transport",
      0,
    );
    assert.equal(error.requestId, undefined);
    await rejectsWith(wasm.BankClient.login("ftp://x", "a@b", "p", "1"), wasm.BankError, "client/invalid-url", 0);
  });

  test("login, accounts and balances as decimal strings", async () => {
    bank = await wasm.BankClient.login(server.baseUrl, alice.email, alice.password, await nextCode(alice));
    assert.equal(bank.signedIn, true);
    assert.equal(bank.baseUrl, server.baseUrl);
    const accounts = await bank.listAccounts();
    assert.equal(accounts.length, 1);
    account = accounts[0];
    assert.equal(account.id, alice.accountId);
    assert.equal(account.currency, "USD");
    assert.deepEqual([account.posted, account.pending, account.available], ["1000.00", "0.00", "1000.00"]);
    assert.deepEqual(await bank.getAccount(account.id), account);
  });

  test("someone else's account is not found; a malformed id is refused before sending", async () => {
    await rejectsWith(bank.getAccount(server.users.bob.accountId), wasm.BankError, "not-found", 404);
    const error = await rejectsWith(bank.getAccount("../admin"), wasm.BankError, "invalid-request", 400);
    assert.equal(error.requestId, undefined, "nothing was sent");
    assert.match(error.detail, /accountId/);
  });

  test("bad amounts are refused and move nothing", async () => {
    const request = (amount) => ({
      from_account_id: account.id,
      to_account_id: server.users.bob.accountId,
      amount,
      currency: "USD",
      reference: "bad",
    });
    // Three decimals pass the grammar, but USD has two: the server refuses it.
    const server400 = await rejectsWith(bank.createTransfer(request("12.345")), wasm.BankError, "invalid-request", 400);
    assert.ok(server400.requestId, "the server answered");
    // Not amounts at all: refused by the client with the same rule, before sending.
    for (const amount of ["1e3", "12,50", "", 12.5]) {
      const local = await rejectsWith(bank.createTransfer(request(amount)), wasm.BankError, "invalid-request", 400);
      assert.equal(local.requestId, undefined, `${amount} was not sent`);
      assert.match(local.detail, /amount|string/);
    }
    await rejectsWith(
      bank.createTransfer({ ...request("1.00"), to_acount_id: "x" }),
      wasm.BankError,
      "invalid-request",
      400,
    );
    await rejectsWith(bank.createTransfer(request("5000.00")), wasm.BankError, "insufficient-funds", 422);
    assert.equal((await bank.getAccount(account.id)).available, "1000.00");
  });

  test("a transfer under one idempotency key: replayed on retry, refused with another request", async () => {
    const request = {
      from_account_id: account.id,
      to_account_id: server.users.bob.accountId,
      amount: "25.50",
      currency: "USD",
      reference: "rent",
    };
    const sent = await bank.createTransfer(request);
    assert.match(sent.idempotency_key, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, "a UUID v7 made by the client");
    assert.equal(sent.replayed, false);
    assert.equal(sent.transfer.amount, "25.50");
    assert.ok(["accepted", "processing", "pending", "settled"].includes(sent.transfer.status));

    const again = await bank.createTransfer(request, sent.idempotency_key);
    assert.equal(again.replayed, true);
    assert.equal(again.idempotency_key, sent.idempotency_key);
    assert.equal(again.transfer.id, sent.transfer.id);

    await rejectsWith(
      bank.createTransfer({ ...request, amount: "26.00" }, sent.idempotency_key),
      wasm.BankError,
      "idempotency-key-reused",
      422,
    );

    const final = await waitForFinal(bank, sent.transfer.id);
    assert.equal(final.status, "settled");
    const after = await bank.getAccount(account.id);
    assert.deepEqual([after.posted, after.available], ["974.50", "974.50"], "moved exactly once");
  });

  test("pages of transfers and of the history follow next_cursor", async () => {
    const second = await bank.createTransfer({
      from_account_id: account.id,
      to_account_id: server.users.bob.accountId,
      amount: "1.25",
      currency: "USD",
      reference: "coffee",
    });
    await waitForFinal(bank, second.transfer.id);

    const first = await bank.listTransfers(account.id, { limit: 1 });
    assert.equal(first.items.length, 1);
    assert.equal(first.items[0].reference, "coffee", "newest first");
    assert.equal(typeof first.next_cursor, "string");
    const next = await bank.listTransfers(account.id, { limit: 1, cursor: first.next_cursor });
    assert.equal(next.items[0].reference, "rent");

    const entries = [];
    let cursor;
    do {
      const page = await bank.transactions(account.id, { limit: 1, cursor });
      assert.ok(page.items.length <= 1);
      entries.push(...page.items);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.deepEqual(
      entries.map((e) => [e.direction, e.amount, e.balance_after]),
      [
        ["debit", "1.25", "973.25"],
        ["debit", "25.50", "974.50"],
        ["credit", "1000.00", "1000.00"],
      ],
    );
    const all = await bank.transactions(account.id);
    assert.equal(all.items.length, 3, "default page size holds them all");
    await rejectsWith(bank.transactions(account.id, { size: 1 }), wasm.BankError, "invalid-request", 400);
  });

  test("statements: none yet, and a download link of an unknown statement is not found", async () => {
    assert.deepEqual(await bank.listStatements(account.id), []);
    await rejectsWith(bank.statementDownloadUrl(`${account.id}_2020-01`), wasm.BankError, "not-found", 404);
    await rejectsWith(bank.statementDownloadUrl("../accounts"), wasm.BankError, "not-found", 404);
  });

  test("refresh keeps the session; logout ends it", async () => {
    await bank.refresh();
    assert.equal((await bank.listAccounts()).length, 1);
    await bank.logout();
    assert.equal(bank.signedIn, false);
    await rejectsWith(bank.listAccounts(), wasm.BankError, "client/not-logged-in", 0);
    await rejectsWith(bank.refresh(), wasm.BankError, "client/not-logged-in", 0);
  });
});
