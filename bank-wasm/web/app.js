// The bank's web app: a page over bank-wasm (the Rust client compiled to WebAssembly).
//
// Every call goes through the BankClient of ./pkg (token refresh, safe retries, one
// Idempotency-Key per transfer, problem errors): this file only shows things. The client, and so
// the tokens, live in this module's memory only — never in localStorage, sessionStorage or a
// cookie — so a reload signs out. Amounts are the API's decimal strings, shown as they come and
// sent as typed: no JS number ever holds money.

import init, { BankClient, BankError } from "./pkg/bank_wasm.js";

const TRANSFER_POLL_MS = 400;
const TRANSFER_POLL_MAX = 75; // 30 s, then the status is left as last seen
const HISTORY_PAGE_SIZE = 10;
const PROBLEMS = "https://bank.example/problems/";

const $ = (id) => document.getElementById(id);

/** The signed-in client, or null. */
let bank = null;
let accounts = [];
let selected = null; // the account whose history and statements are shown
let history = { cursors: [null], index: 0, next: null }; // cursors of the pages seen, for Newer/Older

// --- Problems in plain words ------------------------------------------------------------------

/** A sentence for people about `error`: what happened and, when useful, what to do. */
function plainWords(error, context) {
  if (!(error instanceof BankError)) {
    return { text: "Something went wrong in this page. Reload it and try again.", ref: String(error) };
  }
  const kind = error.type.startsWith(PROBLEMS) ? error.type.slice(PROBLEMS.length) : error.type;
  const detail = error.detail ? ` (${error.detail})` : "";
  const words = {
    "unauthorized": context === "signin"
      ? "The email, password or code is not right. Check them — the code changes every 30 seconds — and try again."
      : "Your session has ended. Please sign in again.",
    "invalid-request": `Please check what you typed${detail}.`,
    "malformed-body": `Please check what you typed${detail}.`,
    "insufficient-funds": "There is not enough money available in this account for that amount.",
    "account-not-open": "One of the accounts is frozen or closed, so no money can move.",
    "currency-mismatch": "Both accounts must use the same currency as the amount.",
    "not-found": context === "transfer"
      ? "No account with that id was found. Check the account id."
      : "That was not found.",
    "forbidden": "You are not allowed to do that.",
    "rate-limited": "Too many attempts in a short time. Wait a moment, then try again.",
    "idempotency-in-flight": "This transfer is still being processed. Wait a moment, then check its status.",
    "idempotency-key-reused": "This transfer was already sent with different details.",
    "unavailable": "The bank is not available right now. Try again in a minute.",
    "timeout": "The bank took too long to answer. Try again in a minute.",
    "internal": "The bank had a problem on its side. Try again later.",
    "client/transport": "The bank could not be reached. Check your connection and try again.",
    "client/not-logged-in": "Please sign in first.",
    "client/decode": "The bank's answer could not be read. Reload the page and try again.",
  }[kind];
  const text = words ?? `${error.title}${detail}`;
  return { text, ref: error.requestId ? `Reference for support: ${error.requestId}` : "" };
}

function showProblem(id, error, context) {
  const box = $(id);
  const { text, ref } = plainWords(error, context);
  box.replaceChildren(document.createTextNode(text));
  if (ref) {
    const small = document.createElement("span");
    small.className = "ref";
    small.textContent = ref;
    box.append(small);
  }
  box.hidden = false;
  if (error instanceof BankError && error.status === 401 && context !== "signin") signedOut();
}

function clearProblem(id) {
  $(id).hidden = true;
  $(id).replaceChildren();
}

// --- Small DOM helpers ------------------------------------------------------------------------

function cell(text, label, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (label) td.dataset.label = label;
  if (className) td.className = className;
  return td;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

// --- Sign in and out ----------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  clearProblem("signin-error");
  const email = $("email").value.trim();
  const password = $("password").value;
  const code = $("totp").value.trim();
  await busy($("signin-submit"), async () => {
    try {
      bank = await BankClient.login(location.origin, email, password, code);
    } catch (error) {
      showProblem("signin-error", error, "signin");
      $("totp").select();
      return;
    }
    $("password").value = "";
    $("totp").value = "";
    $("who").textContent = email;
    $("signin-view").hidden = true;
    $("session").hidden = false;
    $("bank-view").hidden = false;
    await loadAccounts();
    $("main").focus();
  });
}

async function signOut() {
  const client = bank;
  signedOut();
  if (client) {
    try {
      await client.logout();
    } catch {
      // The tokens are forgotten either way; a failed revocation only leaves the refresh token to
      // expire on its own.
    }
  }
}

function signedOut() {
  bank = null;
  accounts = [];
  selected = null;
  $("bank-view").hidden = true;
  $("session").hidden = true;
  $("account-view").hidden = true;
  $("signin-view").hidden = false;
  $("email").focus();
}

// --- Accounts ---------------------------------------------------------------------------------

async function loadAccounts() {
  clearProblem("accounts-error");
  try {
    accounts = await bank.listAccounts();
  } catch (error) {
    showProblem("accounts-error", error, "accounts");
    return;
  }
  const body = $("accounts").tBodies[0];
  body.replaceChildren();
  for (const account of accounts) {
    const row = document.createElement("tr");
    row.dataset.accountId = account.id;
    if (selected?.id === account.id) row.className = "selected";
    const name = document.createElement("td");
    name.dataset.label = "Account";
    const title = document.createElement("span");
    title.className = "account-name";
    title.textContent = `${account.name} (${account.currency})`;
    const id = document.createElement("span");
    id.className = "account-id";
    id.textContent = account.id;
    name.append(title, id);
    row.append(
      name,
      cell(`${account.posted} ${account.currency}`, "Posted", "num posted"),
      cell(`${account.pending} ${account.currency}`, "Pending", "num pending"),
      cell(`${account.available} ${account.currency}`, "Available", "num available"),
    );
    const actions = document.createElement("td");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "secondary";
    open.textContent = "History and statements";
    open.setAttribute("aria-label", `History and statements of ${account.name}`);
    open.addEventListener("click", () => selectAccount(account.id));
    actions.append(open);
    row.append(actions);
    body.append(row);
  }
  const from = $("from");
  const previous = from.value;
  from.replaceChildren(
    ...accounts.map((account) => {
      const option = document.createElement("option");
      option.value = account.id;
      option.textContent = `${account.name} — ${account.available} ${account.currency} available`;
      return option;
    }),
  );
  if (accounts.some((a) => a.id === previous)) from.value = previous;
  showCurrency();
  if (!selected && accounts.length > 0) await selectAccount(accounts[0].id, false);
  else if (selected) await loadHistory();
}

function showCurrency() {
  const account = accounts.find((a) => a.id === $("from").value);
  $("amount-currency").textContent = account ? `in ${account.currency}` : "";
}

async function selectAccount(accountId, focus = true) {
  selected = accounts.find((a) => a.id === accountId) ?? null;
  for (const row of $("accounts").tBodies[0].rows) {
    row.className = row.dataset.accountId === accountId ? "selected" : "";
  }
  if (!selected) return;
  $("account-title").textContent = `History of ${selected.name}`;
  $("account-view").hidden = false;
  history = { cursors: [null], index: 0, next: null };
  await Promise.all([loadHistory(), loadStatements()]);
  if (focus) $("account-title").scrollIntoView({ block: "start" });
}

// --- History (paginated) ----------------------------------------------------------------------

async function loadHistory() {
  clearProblem("history-error");
  if (!selected) return;
  let page;
  try {
    page = await bank.transactions(selected.id, { limit: HISTORY_PAGE_SIZE, cursor: history.cursors[history.index] ?? undefined });
  } catch (error) {
    showProblem("history-error", error, "history");
    return;
  }
  history.next = page.next_cursor;
  const body = $("history").tBodies[0];
  body.replaceChildren();
  if (page.items.length === 0) {
    const row = document.createElement("tr");
    const empty = cell("No entries yet.", "", "note");
    empty.colSpan = 4;
    row.append(empty);
    body.append(row);
  }
  for (const entry of page.items) {
    const row = document.createElement("tr");
    const sign = entry.direction === "debit" ? "−" : "+";
    row.append(
      cell(when(entry.posted_at), "Date"),
      cell(entry.reference || "—", "Reference"),
      cell(`${sign}${entry.amount} ${selected.currency}`, "Amount", `num ${entry.direction}`),
      cell(`${entry.balance_after} ${selected.currency}`, "Balance", "num"),
    );
    body.append(row);
  }
  $("newer").disabled = history.index === 0;
  $("older").disabled = !history.next;
  $("page-label").textContent = `Page ${history.index + 1}`;
}

async function older() {
  if (!history.next) return;
  history.cursors[history.index + 1] = history.next;
  history.index += 1;
  await loadHistory();
}

async function newer() {
  if (history.index === 0) return;
  history.index -= 1;
  await loadHistory();
}

// --- Statements ---------------------------------------------------------------------------------

async function loadStatements() {
  clearProblem("statements-error");
  const list = $("statements");
  list.replaceChildren();
  let statements;
  try {
    statements = await bank.listStatements(selected.id);
  } catch (error) {
    showProblem("statements-error", error, "statements");
    return;
  }
  if (statements.length === 0) {
    const item = document.createElement("li");
    item.className = "note";
    item.textContent = "No statements yet: the first one comes after the end of the month.";
    list.append(item);
  }
  for (const statement of statements) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `${statement.period} — ${Math.ceil(statement.size / 1024)} KB`;
    const download = document.createElement("button");
    download.type = "button";
    download.className = "secondary";
    download.textContent = "Download PDF";
    download.setAttribute("aria-label", `Download the statement of ${statement.period}`);
    download.addEventListener("click", () =>
      busy(download, async () => {
        clearProblem("statements-error");
        try {
          // A short-lived signed link: opened at once, never stored.
          const link = await bank.statementDownloadUrl(statement.id);
          const a = document.createElement("a");
          a.href = link.url;
          a.download = `statement-${statement.period}.pdf`;
          a.rel = "noopener";
          document.body.append(a);
          a.click();
          a.remove();
        } catch (error) {
          showProblem("statements-error", error, "statements");
        }
      }),
    );
    item.append(label, download);
    list.append(item);
  }
}

// --- Transfers ----------------------------------------------------------------------------------

const STATUS_WORDS = {
  accepted: "Accepted — waiting to be processed…",
  processing: "Processing…",
  pending: "Pending — the payment network is busy; it will be retried…",
  settled: "Settled: the money has moved.",
  failed: "Failed",
};

function showStatus(transfer) {
  const status = $("transfer-status");
  let text = STATUS_WORDS[transfer.status] ?? transfer.status;
  if (transfer.status === "failed" && transfer.failure_reason) text += `: ${transfer.failure_reason}`;
  status.textContent = `${transfer.amount} ${transfer.currency} — ${text}`;
  status.className = `status ${transfer.status}`;
  status.dataset.status = transfer.status;
}

async function sendTransfer(event) {
  event.preventDefault();
  clearProblem("transfer-error");
  const from = accounts.find((a) => a.id === $("from").value);
  if (!from) return;
  const request = {
    from_account_id: from.id,
    to_account_id: $("to").value.trim(),
    amount: $("amount").value.trim(), // a string, as typed: the client checks it with the API's grammar
    currency: from.currency,
    reference: $("reference").value,
  };
  await busy($("transfer-submit"), async () => {
    let sent;
    try {
      sent = await bank.createTransfer(request);
    } catch (error) {
      $("transfer-status").textContent = "";
      showProblem("transfer-error", error, "transfer");
      $("amount").focus();
      return;
    }
    showStatus(sent.transfer);
    $("amount").value = "";
    let transfer = sent.transfer;
    for (let polls = 0; !["settled", "failed"].includes(transfer.status) && polls < TRANSFER_POLL_MAX; polls++) {
      await new Promise((resolve) => setTimeout(resolve, TRANSFER_POLL_MS));
      try {
        transfer = await bank.getTransfer(transfer.id);
      } catch (error) {
        showProblem("transfer-error", error, "status");
        break;
      }
      showStatus(transfer);
    }
    await loadAccounts();
  });
}

// --- Start --------------------------------------------------------------------------------------

async function start() {
  try {
    await init();
  } catch (error) {
    $("loading").textContent = "This browser could not start the app (it needs WebAssembly).";
    throw error;
  }
  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("reload").addEventListener("click", () => busy($("reload"), loadAccounts));
  $("transfer").addEventListener("submit", sendTransfer);
  $("from").addEventListener("change", showCurrency);
  // loadHistory sets whether each of these can be used.
  $("older").addEventListener("click", older);
  $("newer").addEventListener("click", newer);
  $("loading").hidden = true;
  $("signin-view").hidden = false;
  document.body.dataset.ready = "true";
  $("email").focus();
}

start();
