// Opens a page of another origin (served by the Rust test) that attacks the
// admin server with a no-cors fetch POST and a form POST and opens a
// WebSocket on a chat node, and waits until all were answered:
//   node csrf.mjs EVIL_PAGE_URL
// Prints what the page saw; exits 0 when it finished (the test then checks
// that no probe ran and that the WebSocket was refused).
import { launch } from './launch.mjs';

const [url] = process.argv.slice(2);
const LIMIT = 20000;

function fail(message) {
  console.error(`csrf page test failed: ${message}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail('did not finish in 40 s'), 40000);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url, { timeout: LIMIT });
  await page.waitForFunction(() => document.title === 'done', null, { timeout: LIMIT });
  console.log(await page.evaluate(() => document.body.dataset.results));
} catch (e) {
  fail(String(e));
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
