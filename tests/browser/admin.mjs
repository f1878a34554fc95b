// Drives the live admin page of a running `topo up` in headless Chromium:
//   node admin.mjs ADMIN_URL TOPOLOGY_FILE INVALID_FILE EDITED_FILE SCREENSHOT_DIR
// Expects the 3-node ZeroMQ mesh drawn (3 nodes, 6 links, all up), dots moving
// after a message sent from a node's box, a rejected save's errors with
// line:column, then a valid save that adds node `d` appearing highlighted
// (with a NATS link: a NATS broker vertex and its two edges, up), and a
// probe colouring every matrix cell green. Exits 0 on success.
import { launch } from './launch.mjs';
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';

const [adminUrl, file, invalid, edited, shots] = process.argv.slice(2);
const LIMIT = 20000;

function fail(message) {
  console.error(`admin page test failed: ${message}`);
  process.exit(1);
}

// An editor's atomic save: write a temporary file, rename it over.
function save(from) {
  copyFileSync(from, `${file}.tmp`);
  renameSync(`${file}.tmp`, file);
}

const watchdog = setTimeout(() => fail('did not finish in 80 s'), 80000);
const browser = await launch();
const count = (page, selector) => page.evaluate((s) => document.querySelectorAll(s).length, selector);
const waitCount = (page, selector, n) => page.waitForFunction(
  ([s, k]) => document.querySelectorAll(s).length === k, [selector, n], { timeout: LIMIT });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(adminUrl, { timeout: LIMIT });

  // The picture: three nodes, six ZeroMQ links, every node and link up.
  await waitCount(page, '#vertices [data-node]', 3);
  await waitCount(page, '#edges [data-edge]', 6);
  await waitCount(page, '#vertices [data-node][data-state="up"]', 3);
  await waitCount(page, '#edges [data-edge][data-state="up"]', 6);
  if ((await count(page, '#matrix td[data-predicted="1"]')) !== 9) fail('the reach matrix is not 3×3 ones');
  const labels = await page.evaluate(() => [...document.querySelectorAll('#edges [data-edge] text')].map((t) => t.textContent));
  if (!labels.every((l) => l === 'chat')) fail(`edge labels: ${labels}`);

  // A message from a's box moves along a's outgoing links.
  await page.fill('[data-send="a"] input', 'hello from the admin page');
  await page.click('[data-send="a"] button');
  await page.waitForFunction(() => Number(document.getElementById('dotlayer').dataset.spawned) > 0, null, { timeout: LIMIT });
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/admin-3node.png` });

  // A rejected save: its errors with line and column, the picture unchanged.
  save(invalid);
  await page.waitForSelector('#rejected[data-shown="true"]', { timeout: LIMIT });
  const rejected = await page.textContent('#rejected-errors');
  if (!/:\d+:\d+: /.test(rejected)) fail(`rejected errors without line:column: ${rejected}`);
  await page.screenshot({ path: `${shots}/admin-rejected.png` });
  if ((await count(page, '#vertices [data-node]')) !== 3) fail('a rejected save changed the picture');

  // A valid save adds d (and a subscribes to it): d appears, highlighted; the errors go.
  save(edited);
  await page.waitForSelector('#gen[data-generation="1"]', { timeout: LIMIT });
  await waitCount(page, '#vertices [data-node]', 4);
  await page.waitForSelector('#vertices [data-node="d"].added', { timeout: LIMIT });
  await page.waitForSelector('#vertices [data-node="a"].changed', { timeout: LIMIT });
  await page.waitForSelector('#rejected[data-shown="false"]', { state: 'attached', timeout: LIMIT });
  await waitCount(page, '#edges [data-edge]', 12);
  await waitCount(page, '#vertices [data-broker][data-kind="nats"]', 1);
  await waitCount(page, '#edges [data-kind="nats-pub"], #edges [data-kind="nats-sub"]', 2);
  await page.screenshot({ path: `${shots}/admin-reload.png` });
  await waitCount(page, '#vertices [data-node][data-state="up"]', 4);
  await waitCount(page, '#edges [data-edge][data-state="up"]', 12);

  // Probe: every cell green. A fresh ZeroMQ link may miss its first frames
  // (slow joiner), so a probe with missing messages is repeated.
  let agree = false;
  for (let i = 0; i < 5 && !agree; i++) {
    await page.click('#probe');
    await page.waitForSelector('#probe-result[data-agree]', { timeout: LIMIT });
    agree = (await page.getAttribute('#probe-result', 'data-agree')) === 'true';
  }
  if (!agree) fail(`probe disagrees: ${await page.textContent('#probe-result')}`);
  const cells = await count(page, '#matrix td');
  const green = await count(page, '#matrix td.ok');
  if (cells !== 16 || green !== 16) fail(`${green} of ${cells} cells green`);
  await page.screenshot({ path: `${shots}/admin-probe.png` });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, screenshots: ['admin-3node.png', 'admin-rejected.png', 'admin-reload.png', 'admin-probe.png'] }));
} catch (error) {
  fail(error.stack || String(error));
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
