// The live page's fault switches in headless Chromium (issue 18):
//   node faults.mjs ADMIN_URL SCREENSHOT_DIR
// Topology: a <-> b over ZeroMQ, a and c on one Redis broker (channel
// chat_messages). Each switch — cut b's SUB to a, cut c's Redis
// subscription, hold a's broker link down, stop b — must change the picture,
// make Probe turn the affected cells red, and after its undo button Probe
// green again. Prints one JSON line; exits 0 on success.
import { launch } from './launch.mjs';
import { mkdirSync } from 'node:fs';

const [adminUrl, shots] = process.argv.slice(2);
const LIMIT = 30000;

function fail(message) {
  console.error(`fault switch test failed: ${message}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail('did not finish in 170 s'), 170000);
const browser = await launch();
const report = {};
try {
  mkdirSync(shots, { recursive: true });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(adminUrl, { timeout: LIMIT });
  const waitFor = (selector) => page.waitForSelector(selector, { state: 'attached', timeout: LIMIT });
  await page.waitForFunction(() => document.querySelectorAll('#vertices [data-node][data-state="up"]').length === 3, null, { timeout: LIMIT });

  // One probe; the red cells (from → to) it shows.
  const probe = async () => {
    await page.evaluate(() => document.getElementById('probe-result').removeAttribute('data-agree'));
    await page.click('#probe');
    await waitFor('#probe-result[data-agree]');
    return page.evaluate(() => [...document.querySelectorAll('#matrix td.bad')].map((td) => `${td.dataset.from}>${td.dataset.to}`));
  };
  // Green, allowing a relinked ZeroMQ SUB or a flushed outbox to settle.
  const green = async (what) => {
    let bad = [];
    for (let i = 0; i < 6; i++) {
      bad = await probe();
      if (bad.length === 0) return;
    }
    fail(`${what}: still red after restore: ${bad}`);
  };
  const red = async (what, cells) => {
    let bad = [];
    for (let i = 0; i < 3; i++) {
      bad = await probe();
      if (cells.every((c) => bad.includes(c))) return bad;
    }
    fail(`${what}: probe shows ${JSON.stringify(bad)}, expected at least ${cells}`);
  };
  await green('start');

  // Trace: a message from a's box lights a, b, c and the links it crossed.
  const traceFrom = async (node, message) => {
    await page.evaluate(() => document.getElementById('graph').removeAttribute('data-trace'));
    await page.fill(`[data-send="${node}"] input`, message);
    await page.click(`[data-send="${node}"] button`);
    await waitFor('#graph[data-trace="done"]');
    return page.evaluate(() => ({
      lit: [...document.querySelectorAll('#vertices .traced')].map((g) => g.dataset.id),
      predicted: [...document.querySelectorAll('#vertices .predicted')].map((g) => g.dataset.id),
      edges: [...document.querySelectorAll('#edges .traced')].map((g) => g.dataset.edge),
      predictedEdges: [...document.querySelectorAll('#edges .predicted')].map((g) => g.dataset.edge),
    }));
  };
  const t = await traceFrom('a', 'trace me');
  for (const id of ['n:a', 'n:b', 'n:c']) if (!t.lit.includes(id)) fail(`trace: ${id} not lit: ${JSON.stringify(t)}`);
  for (const id of ['zmq:a>b', 'pub:a', 'sub:c:chat_messages']) if (!t.edges.includes(id)) fail(`trace: ${id} not lit: ${JSON.stringify(t)}`);
  if (t.predictedEdges.includes('zmq:b>a') || t.predictedEdges.includes('sub:a:chat_messages')) fail(`trace: b -> a predicted for a message from a: ${JSON.stringify(t)}`);
  await page.screenshot({ path: `${shots}/trace.png` });
  report.trace = t;

  const cases = [
    { name: 'cut zmq sub', on: '[data-action="cut"][data-edge="zmq:a>b"]', off: '[data-action="restore"][data-edge="zmq:a>b"]',
      picture: '#edges [data-edge="zmq:a>b"][data-cut="true"]', cells: ['a>b'] },
    { name: 'cut redis subscription', on: '[data-action="cut"][data-edge="sub:c:chat_messages"]', off: '[data-action="restore"][data-edge="sub:c:chat_messages"]',
      picture: '#edges [data-edge="sub:c:chat_messages"][data-state="cut"]', cells: ['a>c'] },
    { name: 'broker down', on: '[data-action="broker-down"][data-node="a"]', off: '[data-action="broker-up"][data-node="a"]',
      picture: '#edges [data-edge="pub:a"][data-state="down"]', cells: ['a>c', 'c>a'] },
    { name: 'stop node', on: '[data-action="stop"][data-node="b"]', off: '[data-action="start"][data-node="b"]',
      picture: '#vertices [data-node="b"][data-fault="stopped"][data-state="down"]', cells: ['a>b'] },
  ];
  for (const c of cases) {
    await page.click(`.switches button${c.on}`);
    await waitFor(c.picture);
    await waitFor('#faults-active li');
    const bad = await red(c.name, c.cells);
    if (c.name === 'broker down') {
      // The outbox fills: a message from a's box waits, and a's badge says so.
      await page.fill('[data-send="a"] input', 'held while the broker is down');
      await page.click('[data-send="a"] button');
      await page.waitForFunction(() => /^outbox [1-9]/.test(document.querySelector('[data-stat="a"]').textContent), null, { timeout: LIMIT });
    }
    if (c.name === 'cut zmq sub') {
      // Traced beside the prediction: b predicted, not lit; the log says so.
      const cut = await traceFrom('a', 'trace me again');
      if (!cut.predicted.includes('n:b') || cut.lit.includes('n:b')) fail(`trace with a cut: ${JSON.stringify(cut)}`);
      const line = await page.textContent('#log li');
      if (!/trace from a: .*missing b/.test(line)) fail(`trace log: ${line}`);
    }
    await page.screenshot({ path: `${shots}/fault-${c.name.replaceAll(' ', '-')}.png` });
    await page.click(`.switches button${c.off}`);
    await page.waitForFunction(() => document.querySelectorAll('#faults-active li').length === 0, null, { timeout: LIMIT });
    await page.waitForFunction(() => document.querySelectorAll('#vertices [data-node][data-state="up"]').length === 3, null, { timeout: LIMIT });
    await green(c.name);
    report[c.name] = bad;
  }
  const logged = await page.evaluate(() => document.getElementById('log').children.length);
  if (logged < cases.length * 2) fail(`only ${logged} log lines`);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, red: report, logged }));
} catch (error) {
  fail(error.stack || String(error));
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
