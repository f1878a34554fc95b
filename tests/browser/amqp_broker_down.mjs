// The live page's "Broker down" switch on AMQP nodes in headless Chromium:
//   node amqp_broker_down.mjs ADMIN_URL SCREENSHOT_DIR
// Topology: a and durable b on one RabbitMQ exchange. Both nodes get the
// button; a's turns the publishing edge apub:a down, Probe turns a → b red,
// a message from a's box waits in its outbox (the badge says so), and
// Broker up brings the edge back and Probe green. Prints one JSON line;
// exits 0 on success.
import { launch } from './launch.mjs';
import { mkdirSync } from 'node:fs';

const [adminUrl, shots] = process.argv.slice(2);
const LIMIT = 30000;

function fail(message) {
  console.error(`amqp broker-down test failed: ${message}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail('did not finish in 170 s'), 170000);
const browser = await launch();
try {
  mkdirSync(shots, { recursive: true });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(adminUrl, { timeout: LIMIT });
  const waitFor = (selector) => page.waitForSelector(selector, { state: 'attached', timeout: LIMIT });
  await waitFor('#edges [data-edge="apub:a"][data-state="up"]');
  for (const node of ['a', 'b']) await waitFor(`.switches button[data-action="broker-down"][data-node="${node}"]`);

  const probe = async () => {
    await page.evaluate(() => document.getElementById('probe-result').removeAttribute('data-agree'));
    await page.click('#probe');
    await waitFor('#probe-result[data-agree]');
    return page.evaluate(() => [...document.querySelectorAll('#matrix td.bad')].map((td) => `${td.dataset.from}>${td.dataset.to}`));
  };
  const until = async (what, wanted) => {
    let bad = [];
    for (let i = 0; i < 6; i++) {
      bad = await probe();
      if (wanted(bad)) return bad;
    }
    fail(`${what}: probe shows ${JSON.stringify(bad)}`);
  };
  await until('start', (bad) => bad.length === 0);

  await page.click('.switches button[data-action="broker-down"][data-node="a"]');
  await waitFor('#edges [data-edge="apub:a"][data-state="down"]');
  await waitFor('#vertices [data-node="a"][data-broker-down="true"]');
  await waitFor('.switches button[data-action="broker-up"][data-node="a"][data-on="true"]');
  const red = await until('broker down', (bad) => bad.includes('a>b'));
  await page.fill('[data-send="a"] input', 'held while the broker is down');
  await page.click('[data-send="a"] button');
  await page.waitForFunction(() => /^outbox [1-9]/.test(document.querySelector('[data-stat="a"]').textContent), null, { timeout: LIMIT });
  await page.screenshot({ path: `${shots}/fault-amqp-broker-down.png` });

  await page.click('.switches button[data-action="broker-up"][data-node="a"]');
  await page.waitForFunction(() => document.querySelectorAll('#faults-active li').length === 0, null, { timeout: LIMIT });
  await waitFor('#edges [data-edge="apub:a"][data-state="up"]');
  await until('broker up', (bad) => bad.length === 0);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, red }));
} catch (error) {
  fail(error.stack || String(error));
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
