// The live page's layout in headless Chromium (issue 18):
//   node layout.mjs ADMIN_URL FILE RING3 RING12 RING12_EDITED RING30 SCREENSHOT_DIR
// FILE is what `topo up` watches; the others are saved over it in turn.
// Checks, from the DOM: unchanged nodes keep their exact positions across
// reloads that add and remove nodes and across a reload of the page; a
// dragged node stays where it was dropped; no label box overlaps a node or
// another label at 3, 12 and 30 nodes. Prints one JSON line; exits 0 on success.
import { launch } from './launch.mjs';
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';

const [adminUrl, file, ring3, ring12, ring12edited, ring30, shots] = process.argv.slice(2);
const LIMIT = 30000;

function fail(message) {
  console.error(`layout test failed: ${message}`);
  process.exit(1);
}
function save(from) {
  copyFileSync(from, `${file}.tmp`);
  renameSync(`${file}.tmp`, file);
}

const watchdog = setTimeout(() => fail('did not finish in 150 s'), 150000);
const browser = await launch();

// name -> transform of every node drawn.
const positions = (page) => page.evaluate(() => Object.fromEntries(
  [...document.querySelectorAll('#vertices [data-node]')].map((g) => [g.dataset.node, g.getAttribute('transform')])));

// Every pair of overlapping boxes among vertex shapes, node names, shown
// badges and shown edge labels (a vertex's own name and badge may sit on it).
const overlaps = (page) => page.evaluate(() => {
  const boxes = [];
  const add = (e, owner, what) => {
    if (e.closest('[data-hidden="true"]')) return;
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return;
    boxes.push({ r, owner, what });
  };
  for (const g of document.querySelectorAll('#vertices > g')) {
    for (const s of g.querySelectorAll('circle, polygon, rect, .name, .badge')) add(s, g, `${g.dataset.id} ${s.getAttribute('class') || s.tagName}`);
  }
  for (const t of document.querySelectorAll('#edges text')) add(t, t, `label of ${t.parentNode.dataset.edge}`);
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const bad = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      if (boxes[i].owner !== boxes[j].owner && hit(boxes[i].r, boxes[j].r)) bad.push(`${boxes[i].what} × ${boxes[j].what}`);
    }
  }
  const shown = (s) => [...document.querySelectorAll(s)].filter((e) => !e.closest('[data-hidden="true"]')).length;
  return { bad, names: shown('#vertices .name'), badges: shown('#vertices .badge'), labels: shown('#edges text'), boxes: boxes.length };
});

const waitNodes = (page, n, generation) => Promise.all([
  page.waitForSelector(`#gen[data-generation="${generation}"]`, { timeout: LIMIT }),
  page.waitForFunction((k) => document.querySelectorAll('#vertices [data-node]').length === k, n, { timeout: LIMIT }),
]);

const report = {};
try {
  mkdirSync(shots, { recursive: true });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(adminUrl, { timeout: LIMIT });

  // Overlaps in the picture grown by reloads, then in a fresh layout (what
  // a new audience sees; the screenshot for the README).
  const check = async (n, shot) => {
    await page.waitForFunction((k) => document.querySelectorAll('#vertices [data-node][data-state="up"]').length === k, n, { timeout: LIMIT });
    for (const fresh of [false, true]) {
      if (fresh) {
        await page.click('#reset-layout');
        await page.waitForFunction((k) => document.querySelectorAll('#vertices [data-node][data-state="up"]').length === k, n, { timeout: LIMIT });
      }
      const o = await overlaps(page);
      if (o.bad.length) fail(`${n} nodes${fresh ? ' (fresh layout)' : ''}: ${o.bad.length} overlapping label boxes: ${o.bad.slice(0, 5).join('; ')}`);
      if (o.names !== n) fail(`${n} nodes: only ${o.names} names shown`);
      if (o.labels === 0) fail(`${n} nodes: no edge label shown at all`);
      report[`${n}${fresh ? ' fresh' : ''}`] = { names: o.names, badges: o.badges, edgeLabels: o.labels, boxes: o.boxes };
    }
    // Let the flash of a reload fade before the picture for the README.
    await page.waitForFunction(() => !document.querySelector('.added, .changed, #ghosts > *'), null, { timeout: LIMIT });
    await page.screenshot({ path: `${shots}/${shot}` });
  };

  await waitNodes(page, 3, 0);
  await check(3, 'live-3.png');
  const p3 = await positions(page);

  // Adding nine nodes: the first three stay exactly where they were.
  save(ring12);
  await waitNodes(page, 12, 1);
  const p12 = await positions(page);
  for (const name of Object.keys(p3)) if (p12[name] !== p3[name]) fail(`${name} moved from ${p3[name]} to ${p12[name]} when nodes were added`);
  await check(12, 'live-12.png');
  const p12fresh = await positions(page);

  // Removing n5 and adding n12, n13: every other node stays.
  save(ring12edited);
  await waitNodes(page, 13, 2);
  const pEdited = await positions(page);
  if ('n5' in pEdited) fail('n5 still drawn');
  for (const name of Object.keys(p12fresh)) if (name !== 'n5' && pEdited[name] !== p12fresh[name]) fail(`${name} moved from ${p12fresh[name]} to ${pEdited[name]} when n5 left`);
  const taken = Object.entries(pEdited).filter(([k]) => k === 'n12' || k === 'n13');
  if (taken.length !== 2) fail('n12 and n13 are not both drawn');

  // A dragged node keeps its place, also after the page reloads.
  const box = await page.locator('#vertices [data-node="n0"] circle').boundingBox();
  // Grabbed by its rim: the name in the middle is the link to its chat page.
  await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.12);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 60, box.y + box.height * 0.12 + 40, { steps: 5 });
  await page.mouse.up();
  const dragged = await positions(page);
  if (dragged.n0 === pEdited.n0) fail('n0 did not move when dragged');
  await page.reload();
  await waitNodes(page, 13, 2);
  const reloaded = await positions(page);
  for (const name of Object.keys(dragged)) if (reloaded[name] !== dragged[name]) fail(`${name} at ${dragged[name]} before the page reload, ${reloaded[name]} after`);

  // Reset: n0 back on its circle (not where it was dropped).
  await page.click('#reset-layout');
  const reset = await positions(page);
  if (reset.n0 === dragged.n0) fail('reset kept the dragged position');

  save(ring30);
  await waitNodes(page, 30, 3);
  await check(30, 'live-30.png');
  // The matrix: file order (n2 before n10), scrolling in its panel, headers stuck.
  const matrix = await page.evaluate(() => {
    const wrap = document.querySelector('.matrix-wrap');
    const heads = [...document.querySelectorAll('#matrix thead th')].map((th) => th.textContent).slice(1);
    wrap.scrollTop = 200; wrap.scrollLeft = 200;
    const head = document.querySelector('#matrix thead th:nth-child(2)').getBoundingClientRect();
    const side = document.querySelector('#matrix tbody th').getBoundingClientRect();
    const box = wrap.getBoundingClientRect();
    return { heads, scrolls: wrap.scrollHeight > wrap.clientHeight && wrap.scrollWidth > wrap.clientWidth,
      headStuck: Math.abs(head.top - box.top) < 3, sideStuck: Math.abs(side.left - box.left) < 3 };
  });
  const order = Array.from({ length: 30 }, (_, i) => `n${i}`);
  if (JSON.stringify(matrix.heads) !== JSON.stringify(order)) fail(`matrix order: ${matrix.heads}`);
  if (!matrix.scrolls || !matrix.headStuck || !matrix.sideStuck) fail(`matrix panel: ${JSON.stringify({ ...matrix, heads: undefined })}`);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, report }));
} catch (error) {
  fail(error.stack || String(error));
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
