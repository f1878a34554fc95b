// Drives two chat pages of a running topology in headless Chromium:
//   node chat.mjs URL_A NODE_A URL_B NODE_B SCREENSHOT_DIR
// Sends from A, expects the text on B; sends markup from B and expects it
// shown as text on A, with no script run. Exits 0 on success, 1 on failure.
import { launch } from './launch.mjs';
import { mkdirSync } from 'node:fs';

const [urlA, nodeA, urlB, nodeB, shots] = process.argv.slice(2);
const LIMIT = 15000;

function fail(message) {
  console.error(`browser test failed: ${message}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail('did not finish in 40 s'), 40000);
const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 720, height: 540 } });
  const open = async (url, node) => {
    const page = await context.newPage();
    await page.goto(url, { timeout: LIMIT });
    await page.waitForSelector('#state[data-state="open"]', { timeout: LIMIT });
    await page.waitForFunction((n) => document.getElementById('node').textContent === n, node, { timeout: LIMIT });
    return page;
  };
  const a = await open(urlA, nodeA);
  const b = await open(urlB, nodeB);

  const send = async (page, text) => {
    await page.fill('#msgBox', text);
    await page.click('#send');
  };
  const arrives = (page, text) => page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent === t),
    text, { timeout: LIMIT });

  const hello = `hello from ${nodeA} ${Date.now()}`;
  await send(a, hello);
  await arrives(b, hello);
  await arrives(a, hello);

  const markup = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>`;
  await send(b, markup);
  await arrives(a, markup);
  const injected = await a.evaluate(() => ({
    pwned: window.__pwned ?? null,
    elements: document.querySelectorAll('#messages script, #messages img, #messages b').length,
  }));
  if (injected.pwned !== null || injected.elements !== 0) {
    fail(`markup was rendered as HTML: ${JSON.stringify(injected)}`);
  }
  if ((await a.title()) !== `topo · ${nodeA}`) fail(`title is ${await a.title()}`);

  mkdirSync(shots, { recursive: true });
  await a.screenshot({ path: `${shots}/chat-${nodeA}.png` });
  await b.screenshot({ path: `${shots}/chat-${nodeB}.png` });
  console.log(JSON.stringify({ ok: true, sent: hello, screenshots: [`${shots}/chat-${nodeA}.png`, `${shots}/chat-${nodeB}.png`] }));
} catch (error) {
  fail(error.stack || String(error));
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
