// What the JS tests share: a real `bank-server serve --demo` on a loopback port with its own data
// folder, the demo's credentials read from its standard output, and TOTP codes computed here.
//
// Environment:
//   BANK_SERVER_BIN        the server binary (default: $CARGO_TARGET_DIR/release/bank-server)
//   BANK_REQUIRE_SERVICES  when 1, a missing binary or package fails the test instead of skipping

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const here = dirname(fileURLToPath(import.meta.url));
export const pkgDir = join(here, "..", "pkg");
const STARTUP_MS_MAX = 120_000;

export function serverBinary() {
  const targetDir = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache", "bank-target");
  return process.env.BANK_SERVER_BIN ?? join(targetDir, "release", "bank-server");
}

/**
 * Why these tests cannot run here (a missing server binary or package), or null. Under
 * BANK_REQUIRE_SERVICES=1 a reason is an error instead.
 */
export function missing(paths) {
  for (const [what, path] of paths) {
    if (!existsSync(path)) {
      const reason = `${what} not found at ${path}`;
      if (process.env.BANK_REQUIRE_SERVICES === "1") throw new Error(`${reason} (BANK_REQUIRE_SERVICES=1)`);
      return reason;
    }
  }
  return null;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The demo banner's users: `{alice, bob, operator}` with email, password, secret, accountId. */
function parseBanner(text) {
  const users = {};
  const line = /^\s+(\S+@\S+)\s+password\s+(\S+)\s+role\s+(\S+)\s+totp_secret\s+(\S+)(?:\s+USD account\s+(\S+))?/gm;
  for (const match of text.matchAll(line)) {
    const [, email, password, role, secret, accountId] = match;
    users[email.split("@")[0]] = { email, password, role, secret, accountId, lastStep: -1 };
  }
  return users;
}

/**
 * Starts `bank-server serve --demo` on a free loopback port with a fresh data folder; resolves once
 * it listens and has printed the demo users. `stop()` ends it and removes the folder.
 */
export async function startDemoServer() {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const dataDir = mkdtempSync(join(tmpdir(), "bank-wasm-test-"));
  const child = spawn(serverBinary(), ["serve", "--demo"], {
    env: {
      ...process.env,
      BANK_LISTEN: `127.0.0.1:${port}`,
      BANK_PUBLIC_URL: baseUrl,
      BANK_DATA_DIR: dataDir,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const users = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start in ${STARTUP_MS_MAX} ms:\n${stderr}`)), STARTUP_MS_MAX);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited (${code}) before listening:\n${stderr}`));
      });
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
        const users = parseBanner(stdout);
        if (stdout.includes("listening on http://") && users.alice && users.bob) {
          clearTimeout(timer);
          resolve(users);
        }
      });
    });
    return { baseUrl, users, stop, stderr: () => stderr };
  } catch (error) {
    await stop();
    throw error;
  }
}

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const bytes = [];
  for (const char of text.replace(/=+$/, "").toUpperCase()) {
    const index = alphabet.indexOf(char);
    if (index < 0) throw new Error(`not base32: ${char}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of `secret` for time step `step`. */
export function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const number = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(number).padStart(6, "0");
}

/**
 * A fresh code for `user`: the server takes each time step once per user (a code logs in at most
 * once), so this uses the current step, or the next one (within the server's one step of skew),
 * waiting for the clock when both are spent.
 */
export async function nextCode(user) {
  for (;;) {
    const current = Math.floor(Date.now() / 30_000);
    const step = Math.max(current, user.lastStep + 1);
    if (step <= current + 1) {
      user.lastStep = step;
      return totpAt(user.secret, step);
    }
    await new Promise((resolve) => setTimeout(resolve, 30_000 - (Date.now() % 30_000) + 50));
  }
}

/** A code that is certainly wrong now (not the code of any step the server accepts). */
export function wrongCode(user) {
  const current = Math.floor(Date.now() / 30_000);
  const near = new Set([-2, -1, 0, 1, 2].map((d) => totpAt(user.secret, current + d)));
  for (let n = 0; ; n++) {
    const code = String(n).padStart(6, "0");
    if (!near.has(code)) return code;
  }
}
