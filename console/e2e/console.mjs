// Drives the console in Debian's chromium (playwright-core; Playwright's own browsers are not
// used). Called by tests/tests/console.rs and `cargo xtask bench-console`:
//
//   node console/e2e/console.mjs COMMAND
//
// Environment: RF_URL (https://host:port), RF_LOGIN (JSON: {"username","password"} or
// {"token"}), RF_SHOTS (screenshot directory), RF_EXPECT (JSON, per command), RF_CHROMIUM
// (default /usr/bin/chromium). Prints one JSON object on stdout; exits 1 with the reason on
// stderr when a check fails.
//
// Commands: pages (every page shows what RF_EXPECT says; a screenshot of each), viewer (a
// viewer cannot apply or roll back, in the UI or by calling the API from the page), rollback
// (rolls back to RF_EXPECT.version through the confirmation), fcp (first contentful paint and
// time to data of every page, fresh loads).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const URL_BASE = process.env.RF_URL;
const LOGIN = JSON.parse(process.env.RF_LOGIN || '{}');
const EXPECT = JSON.parse(process.env.RF_EXPECT || '{}');
const SHOTS = process.env.RF_SHOTS || '';
const TIMEOUT = 20000;

// What shows that a page's data arrived.
const PAGES = {
  fleet: '[data-testid=nodes]',
  policies: '[data-testid=policy-history]',
  alerts: '[data-testid=alerts]',
  flows: '[data-testid=top-destinations]',
  audit: '[data-testid=audit]',
};

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'rf-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.RF_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const violations = [];
  context.on('console', (msg) => {
    if (/Content Security Policy|Refused to/.test(msg.text())) violations.push(msg.text());
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, violations, close };
}

async function login(context) {
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/.test(msg.text())) process.stderr.write(`CSP: ${msg.text()}\n`);
  });
  await page.goto(`${URL_BASE}/console/`);
  await page.waitForSelector('[data-testid=login]', { timeout: TIMEOUT });
  if (LOGIN.token) {
    await page.click('text=Use the admin credential');
    await page.fill('input[name=token]', LOGIN.token);
  } else {
    await page.fill('input[name=username]', LOGIN.username);
    await page.fill('input[name=password]', LOGIN.password);
  }
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=who]', { timeout: TIMEOUT });
  return page;
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function visit(page, hash, ready) {
  await page.goto(`${URL_BASE}/console/#/${hash}`);
  await page.waitForSelector(ready, { timeout: TIMEOUT });
}

// Waits until `selector` has text containing `text` (the page is reloaded while it waits, as
// an operator would: events and acknowledgements arrive over time).
async function waitForText(page, hash, selector, text) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await visit(page, hash, selector);
    const content = await page.textContent(selector);
    if (content.includes(text)) return;
    if (Date.now() > deadline) throw new Error(`${hash}: ${selector} never showed ${JSON.stringify(text)}: ${content.slice(0, 500)}`);
    await page.waitForTimeout(250);
  }
}

const commands = {
  async pages(context) {
    const page = await login(context);
    const seen = {};
    await waitForText(page, 'fleet', '[data-testid=nodes]', EXPECT.node_id);
    await shot(page, 'fleet');
    await visit(page, `node/${encodeURIComponent(EXPECT.node_id)}`, '[data-testid=node-page]');
    await waitForText(page, `node/${encodeURIComponent(EXPECT.node_id)}`, '[data-testid=node-policy]', `v${EXPECT.policy_version} applied`);
    await shot(page, 'node');
    await waitForText(page, 'policies', '[data-testid=policy-history]', `v${EXPECT.policy_version}`);
    await shot(page, 'policies');
    for (const kind of EXPECT.alert_kinds) {
      await waitForText(page, 'alerts', '[data-testid=alerts]', kind);
      seen[kind] = await page.locator(`[data-testid=alerts] tr[data-kind="${kind}"]`).count();
      if (!seen[kind]) throw new Error(`no ${kind} row in the alerts table`);
    }
    // Filter to one kind, acknowledge the first.
    const only = EXPECT.alert_kinds[EXPECT.alert_kinds.length - 1];
    await page.fill('[data-testid=alert-filter] input[name=kind]', only);
    await page.click('[data-testid=alert-filter] button[type=submit]');
    await page.waitForFunction(
      (kind) => [...document.querySelectorAll('[data-testid=alerts] tr[data-kind]')].every((r) => r.dataset.kind === kind),
      only,
      { timeout: TIMEOUT },
    );
    await page.click('[data-testid=alerts] [data-testid=ack] >> nth=0');
    await page.waitForSelector('[data-testid=alerts] td:has-text("acknowledged by")', { timeout: TIMEOUT });
    await shot(page, 'alerts');
    await visit(page, 'flows', '[data-testid=top-destinations]');
    await waitForText(page, 'flows', '[data-testid=top-destinations]', EXPECT.destination);
    await page.waitForSelector('[data-testid=chart-events] canvas', { timeout: TIMEOUT });
    await shot(page, 'flows');
    await visit(page, 'audit', '[data-testid=audit]');
    await page.waitForSelector('[data-testid=chain].ok', { timeout: TIMEOUT });
    const chain = await page.textContent('[data-testid=chain]');
    await shot(page, 'audit');
    return { seen, chain };
  },

  async viewer(context) {
    const page = await login(context);
    await visit(page, 'policies', '[data-testid=policy-history]');
    const applyDisabled = await page.isDisabled('[data-testid=apply]');
    const rollbackDisabled = await page.locator('[data-testid^=rollback-]').evaluateAll((bs) => bs.every((b) => b.disabled));
    await shot(page, 'policies-viewer');
    // The API refuses too, with the session's own CSRF token.
    const api = await page.evaluate(async () => {
      const s = await (await fetch('/console/api/session')).json();
      const r = await fetch('/console/api/policies/apply', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf },
        body: JSON.stringify({ policy_yaml: 'x', selector: {} }),
      });
      return { status: r.status, body: await r.text() };
    });
    if (!applyDisabled || !rollbackDisabled) throw new Error('a viewer sees enabled apply/rollback buttons');
    if (api.status !== 403) throw new Error(`a viewer's apply answered ${api.status}: ${api.body}`);
    return { applyDisabled, rollbackDisabled, apiStatus: api.status };
  },

  async rollback(context) {
    const page = await login(context);
    await visit(page, 'policies', '[data-testid=policy-history]');
    await page.click(`[data-testid=rollback-${EXPECT.version}]`);
    await page.waitForSelector('[data-testid=confirm]', { timeout: TIMEOUT });
    await shot(page, 'rollback-confirm');
    await page.click('[data-testid=confirm-yes]');
    await page.waitForSelector('[data-testid=policy-message].ok', { timeout: TIMEOUT });
    const message = await page.textContent('[data-testid=policy-message]');
    const version = Number(/version (\d+)/.exec(message)[1]);
    // The diff between the rolled-back-to version and the new one is empty.
    await shot(page, 'rollback-done');
    return { message, version };
  },

  async fcp(context) {
    const page = await login(context);
    await page.close();
    const results = {};
    const hashes = { ...PAGES, [`node/${encodeURIComponent(EXPECT.node_id)}`]: '[data-testid=node-page] [data-testid=node-events]' };
    for (const [hash, ready] of Object.entries(hashes)) {
      const runs = [];
      for (let i = 0; i < 3; i += 1) {
        const p = await context.newPage();
        const t0 = Date.now();
        await p.goto(`${URL_BASE}/console/#/${hash}`);
        await p.waitForSelector(ready, { timeout: 60000 });
        const ready_ms = Date.now() - t0;
        const fcp = await p.evaluate(() => {
          const e = performance.getEntriesByName('first-contentful-paint')[0];
          return e ? e.startTime : null;
        });
        runs.push({ fcp_ms: fcp, data_ms: ready_ms });
        if (i === 0) await shot(p, `bench-${hash.split('/')[0]}`);
        await p.close();
      }
      const worst = (k) => Math.max(...runs.map((r) => r[k]));
      results[hash.split('/')[0]] = { fcp_ms_worst: Math.round(worst('fcp_ms')), data_ms_worst: worst('data_ms'), runs };
    }
    return results;
  },
};

const command = process.argv[2];
if (!commands[command]) {
  process.stderr.write(`usage: console.mjs ${Object.keys(commands).join('|')}\n`);
  process.exit(2);
}
const { context, violations, close } = await launch();
try {
  const result = await commands[command](context);
  if (violations.length) throw new Error(`CSP violations: ${violations.join('; ')}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (e) {
  process.stderr.write(`${command}: ${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  await close();
}
