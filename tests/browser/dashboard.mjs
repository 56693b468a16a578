// The dashboard in a real browser (Debian's Chromium, driven by
// playwright-core): sign in, see an event created through the API appear in
// the live feed within 2 s, see the health panel, survive a server-side cut of
// the stream without missing or repeating an event, and sign out. Saves a
// screenshot to docs/dashboard.png.
//
//   OVERSEER_BIN=target/debug/overseer node tests/browser/dashboard.mjs
//
// Starts its own instance of the service (SQLite, in a temporary folder).

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const binary = resolve(root, process.env.OVERSEER_BIN || "target/debug/overseer");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const ADMIN = "browser-test-super-admin-token-0123456789";

function check(condition, message) {
  if (!condition) throw new Error(`FAILED: ${message}`);
  console.log(`ok - ${message}`);
}

async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const workdir = mkdtempSync(join(tmpdir(), "overseer-browser-"));
const service = spawn(binary, [], {
  cwd: workdir,
  env: {
    ...process.env,
    BIND_ADDR: `127.0.0.1:${port}`,
    ADMIN_TOKEN: ADMIN,
    ENABLE_FAULT_INJECTION: "true",
    SSE_RETRY_MS: "500",
    LOG_LEVEL: "warn",
  },
  stdio: ["ignore", "ignore", "inherit"],
});

async function api(method, path, body, token = ADMIN) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function ingest(operation, extra = {}) {
  const { status, body } = await api("POST", "/api/v1/audit/events", [
    { tenant_id: "acme", operation, success: true, principal_id: "buyer-1", principal_name: "Buyer One", ...extra },
  ]);
  if (status !== 202) throw new Error(`ingest answered ${status}: ${JSON.stringify(body)}`);
  return body.log_ids[0];
}

let browser;
let exitCode = 1;
try {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {}
    if (i > 120) throw new Error("the service did not start");
    await new Promise((r) => setTimeout(r, 250));
  }
  check((await api("POST", "/api/v1/tenants", { id: "acme", name: "Acme" })).status === 201, "tenant created");
  const admin = await api("POST", "/api/v1/tenants/acme/admin-tokens", {});
  check(admin.status === 201, "tenant admin token created");
  // An authentication spike for acme (11 rejections > 10), evaluated now:
  // the alerts panel must show it firing.
  for (let i = 0; i < 11; i++) await ingest("token_rejected", { success: false, error: "unknown token" });
  const evaluated = await api("POST", "/admin/alerts/run", {});
  check(evaluated.status === 200 && evaluated.body.notified.some((n) => n.rule === "auth_failure_spike" && n.kind === "fired"),
    "auth_failure_spike fired for acme");

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));

  // Sign in.
  await page.goto(`${base}/admin`);
  await page.getByLabel("Admin token").fill(admin.body.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#dashboard").waitFor({ state: "visible", timeout: 5000 });
  check((await page.locator("#who").textContent()).includes("acme"), "signed in as acme's admin");
  await page.locator("#stream-state.live").waitFor({ timeout: 5000 });
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "overseer_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "HttpOnly, SameSite=Strict session cookie");

  // An event created through the API appears within 2 s.
  const started = Date.now();
  const first = await ingest("create_media_buy", { details: { status: "pending_approval", budget: 25000 } });
  await page.locator(`#feed li[data-log-id="${first}"]`).waitFor({ timeout: 2000 });
  const elapsed = Date.now() - started;
  check(elapsed <= 2000, `event in the feed ${elapsed} ms after it was sent`);
  check(await page.locator(`#feed li[data-log-id="${first}"].action`).count() === 1, "action required is marked");
  const failedId = await ingest("sync_creatives", { success: false, error: "creative rejected by the ad server" });
  await page.locator(`#feed li[data-log-id="${failedId}"].failed`).waitFor({ timeout: 2000 });
  check(true, "a failure is highlighted");

  // The health panel.
  await page.locator("#actors tr").first().waitFor({ timeout: 7000 });
  const status = await page.locator("#health-status").textContent();
  check(["healthy", "degraded"].includes(status), `health panel shows '${status}'`);
  check(await page.locator("#actors tr", { hasText: "sse_hub" }).count() === 1, "the actors table lists the hub");
  await page.locator("#alerts li", { hasText: "auth_failure_spike (acme)" }).waitFor({ timeout: 7000 });
  check(await page.locator("#alerts li.fail", { hasText: "firing" }).count() === 1, "the alerts panel shows the firing alert");

  // A server-side cut: the hub panics on its next event and ends every
  // stream; EventSource reconnects with Last-Event-ID and nothing is lost.
  const armed = await api("POST", "/admin/debug/faults", { actor: "sse_hub", kind: "panic" });
  check(armed.status === 202, "hub panic armed");
  const during = [];
  for (let i = 0; i < 5; i++) {
    during.push(await ingest(`during_cut_${i}`));
    await new Promise((r) => setTimeout(r, 150));
  }
  for (const id of during) {
    await page.locator(`#feed li[data-log-id="${id}"]`).waitFor({ timeout: 10000 });
  }
  for (const id of [first, failedId, ...during]) {
    const n = await page.locator(`#feed li[data-log-id="${id}"]`).count();
    if (n !== 1) throw new Error(`FAILED: event ${id} shown ${n} times`);
  }
  check(true, "after the cut every event is shown exactly once");
  const health = await (await fetch(`${base}/health`)).json();
  check(health.components.actors.sse_hub.restarts >= 1, "the hub was restarted");

  // A few more for the picture, then the screenshot.
  await ingest("approve_workflow", { principal_id: "ops@acme.example", principal_name: "Ops" });
  await ingest("token_rejected", { success: false, error: "unknown token", security_violation: true });
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(root, "docs", "dashboard.png"), fullPage: false });
  check(true, "screenshot saved to docs/dashboard.png");

  // Sign out.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#signin").waitFor({ state: "visible", timeout: 5000 });
  const after = await page.evaluate(async () => (await fetch("/admin/session")).status);
  check(after === 401, "signed out: the session is gone");

  // A session the server cannot check (a 503 from /admin/session, as in a
  // database outage; tests/api/dashboard.rs has the real one) is said so,
  // not shown as a plain sign-in.
  await page.route("**/admin/session", (route) =>
    route.request().method() === "GET"
      ? route.fulfill({
          status: 503,
          contentType: "application/json",
          body: JSON.stringify({
            error: { code: "database_unavailable", message: "the database is unavailable, try again later" },
          }),
        })
      : route.continue());
  await page.goto(`${base}/admin`);
  await page.locator("#signin-error").waitFor({ state: "visible", timeout: 5000 });
  const said = await page.locator("#signin-error").textContent();
  check(said.includes("could not be checked") && said.includes("database is unavailable"),
    `an unchecked session is said so: '${said}'`);
  await page.unroute("**/admin/session");
  exitCode = 0;
} catch (error) {
  console.error(error);
} finally {
  if (browser) await browser.close();
  service.kill("SIGTERM");
  rmSync(workdir, { recursive: true, force: true });
}
process.exit(exitCode);
