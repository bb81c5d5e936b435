// A small program over every call of the JS client, type-checked with `tsc --noEmit --strict`
// (scripts/test.sh) against the declarations wasm-bindgen and tsify generated from the Rust types.
// It is compiled, not run: the Node test (node.test.mjs) runs the same calls against a server.

import init, {
  type Account,
  BankClient,
  BankError,
  type HistoryEntry,
  type Page,
  type PageOptions,
  type StatementLink,
  type StatementSummary,
  type SubmittedTransfer,
  type Transfer,
  type TransferRequest,
  type TransferStatus,
} from "../pkg/web/bank_wasm.js";

/** Sums nothing: amounts are strings, shown as they come. */
function describe(account: Account): string {
  return `${account.name}: ${account.available} ${account.currency} available (${account.posted} posted, ${account.pending} pending)`;
}

function isFinal(status: TransferStatus): boolean {
  return status === "settled" || status === "failed";
}

export async function tour(baseUrl: string, email: string, password: string, totpCode: string, payee: string): Promise<void> {
  await init();
  let bank: BankClient;
  try {
    bank = await BankClient.login(baseUrl, email, password, totpCode);
  } catch (error) {
    if (error instanceof BankError) {
      const type: string = error.type;
      const status: number = error.status;
      const detail: string | undefined = error.detail;
      const requestId: string | undefined = error.requestId;
      const retryable: boolean = error.retryable;
      console.log(type, error.title, status, detail, requestId, retryable, error.message, error.toString());
    }
    return;
  }
  console.log(bank.baseUrl, bank.signedIn);
  await bank.refresh();

  const accounts: Account[] = await bank.listAccounts();
  const first = accounts[0];
  if (!first) return;
  const account: Account = await bank.getAccount(first.id);
  console.log(describe(account));

  const options: PageOptions = { limit: 20 };
  let page: Page<HistoryEntry> = await bank.transactions(account.id, options);
  while (page.next_cursor !== null) {
    for (const entry of page.items) console.log(entry.sequence, entry.direction, entry.amount, entry.balance_after, entry.transfer_id);
    page = await bank.transactions(account.id, { limit: 20, cursor: page.next_cursor });
  }
  const firstPage: Page<HistoryEntry> = await bank.transactions(account.id, {});
  console.log(firstPage.items.length);

  const request: TransferRequest = {
    from_account_id: account.id,
    to_account_id: payee,
    amount: "12.34",
    currency: account.currency,
    reference: "rent",
  };
  const sent: SubmittedTransfer = await bank.createTransfer(request);
  const key: string = sent.idempotency_key;
  const retried: SubmittedTransfer = await bank.createTransfer(request, key);
  console.log(retried.replayed, retried.transfer.id === sent.transfer.id);
  let transfer: Transfer = await bank.getTransfer(sent.transfer.id);
  while (!isFinal(transfer.status)) transfer = await bank.getTransfer(transfer.id);
  const failure: string | null = transfer.failure_reason;
  console.log(transfer.status, failure);

  const transfers: Page<Transfer> = await bank.listTransfers(account.id, { limit: 5 });
  console.log(transfers.items.map((t) => t.amount));

  const statements: StatementSummary[] = await bank.listStatements(account.id);
  for (const statement of statements) {
    const link: StatementLink = await bank.statementDownloadUrl(statement.id);
    console.log(statement.period, statement.sha256, link.url, link.expires_at);
  }
  await bank.logout();
}
