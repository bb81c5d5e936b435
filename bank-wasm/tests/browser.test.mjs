// The web app in headless Chromium (Debian's `chromium`, driven by playwright-core) against a real
// `bank-server serve --demo`, which serves the app at `/`: sign in (a wrong TOTP code first, then
// the right one, computed here), a refused bad amount, a transfer followed until it settles, the
// balance that changes, the history, no Content-Security-Policy violation; screenshots at desktop
// and phone width. Run: node --test bank-wasm/tests/browser.test.mjs
//
// Environment (besides server.mjs's): BANK_CHROMIUM (default /usr/bin/chromium),
// BANK_SCREENSHOTS_DIR (default bank-wasm/tests/screenshots).

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { here, missing, nextCode, serverBinary, startDemoServer, wrongCode } from "./server.mjs";

const chromiumPath = process.env.BANK_CHROMIUM ?? "/usr/bin/chromium";
const screenshots = process.env.BANK_SCREENSHOTS_DIR ?? join(here, "screenshots");
const skip = missing([
  ["the web app's bank-wasm build (run scripts/build-wasm.sh)", join(here, "..", "web", "pkg", "bank_wasm_bg.wasm")],
  ["the bank-server binary (cargo build --release -p bank-server, or set BANK_SERVER_BIN)", serverBinary()],
  ["chromium (apt-get install chromium)", chromiumPath],
  ["playwright-core (npm install in bank-wasm/tests)", join(here, "node_modules", "playwright-core")],
]);
if (skip) console.log(`# skipped: ${skip}`);

const TIMEOUT_MS = 30_000;

describe("the web app in headless Chromium", { skip: skip ?? false }, () => {
  let server;
  let browser;
  let page;
  const problems = []; // console errors, CSP violations, uncaught exceptions

  before(async () => {
    const { chromium } = await import("playwright-core");
    server = await startDemoServer();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      // Root in a container has no user namespace for Chromium's sandbox.
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    mkdirSync(screenshots, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("the page is served with a strict Content-Security-Policy and starts", async () => {
    const response = await page.goto(`${server.baseUrl}/`);
    assert.equal(response.status(), 200);
    const csp = response.headers()["content-security-policy"];
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(response.headers()["x-content-type-options"], "nosniff");
    await page.waitForSelector("body[data-ready=true]");
    assert.equal(await page.isVisible("#signin"), true);
  });

  test("a wrong TOTP code is explained, then signing in with the keyboard works", async () => {
    const alice = server.users.alice;
    await page.fill("#email", alice.email);
    await page.fill("#password", alice.password);
    await page.fill("#totp", wrongCode(alice));
    await page.press("#totp", "Enter");
    const error = page.locator("#signin-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.innerText(), /email, password or code is not right/);

    await page.fill("#password", alice.password);
    await page.fill("#totp", await nextCode(alice));
    await page.press("#totp", "Enter");
    await page.locator("#bank-view").waitFor({ state: "visible" });
    const row = page.locator(`#accounts tr[data-account-id="${alice.accountId}"]`);
    await row.waitFor();
    assert.equal(await row.locator("td.available").innerText(), "1000.00 USD");
    assert.equal(await row.locator("td.posted").innerText(), "1000.00 USD");
    assert.equal(await row.locator("td.pending").innerText(), "0.00 USD");
    await page.screenshot({ path: join(screenshots, "web-app-signed-in-desktop.png"), fullPage: true });
  });

  test("a bad amount is refused in plain words and moves nothing", async () => {
    const bob = server.users.bob;
    await page.fill("#to", bob.accountId);
    for (const amount of ["12.345", "1e3"]) {
      await page.fill("#amount", amount);
      await page.click("#transfer-submit");
      const error = page.locator("#transfer-error");
      await error.waitFor({ state: "visible" });
      assert.match(await error.innerText(), /Please check what you typed/);
      await page.locator("#transfer-submit:enabled").waitFor();
    }
    const row = page.locator(`#accounts tr[data-account-id="${server.users.alice.accountId}"]`);
    assert.equal(await row.locator("td.available").innerText(), "1000.00 USD");
  });

  test("a transfer is followed until it settles and the balance changes", async () => {
    const bob = server.users.bob;
    await page.fill("#to", bob.accountId);
    await page.fill("#amount", "40.00");
    await page.fill("#reference", "dinner");
    await page.click("#transfer-submit");
    await page.locator("#transfer-status[data-status=settled]").waitFor();
    assert.match(await page.locator("#transfer-status").innerText(), /40\.00 USD — Settled/);
    assert.equal(await page.isVisible("#transfer-error"), false);
    const row = page.locator(`#accounts tr[data-account-id="${server.users.alice.accountId}"]`);
    await page.waitForFunction(
      (id) => document.querySelector(`#accounts tr[data-account-id="${id}"] td.available`)?.textContent === "960.00 USD",
      server.users.alice.accountId,
    );
    assert.equal(await row.locator("td.posted").innerText(), "960.00 USD");
    const newest = page.locator("#history tbody tr").first();
    await page.waitForFunction(() => document.querySelector("#history tbody tr")?.textContent?.includes("dinner"));
    assert.match(await newest.innerText(), /−40\.00 USD/);
    await page.screenshot({ path: join(screenshots, "web-app-desktop.png"), fullPage: true });
  });

  test("at phone width the app fits the screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: join(screenshots, "web-app-phone.png"), fullPage: true });
  });

  test("signing out forgets the session; nothing went wrong in the page", async () => {
    await page.click("#signout");
    await page.locator("#signin-view").waitFor({ state: "visible" });
    const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
    assert.equal(stored, 0, "no token in web storage or cookies");
    assert.deepEqual(
      problems.filter((p) => !/status of 4\d\d/.test(p)),
      [],
      "no CSP violation, script error or console error (besides the refused requests' 4xx)",
    );
  });
});
