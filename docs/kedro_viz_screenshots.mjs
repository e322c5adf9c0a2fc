// Retakes docs/kedro_viz.png (the default pipeline) and docs/kedro_viz_plot.png (a plot preview)
// in a headless Chromium that npm installs with the script's two packages:
//
//   kedro viz run --no-browser --port 4141 &          # in the project root, after a kedro run
//   d=$(mktemp -d) && cp docs/kedro_viz_screenshots.mjs "$d" && (cd "$d" &&
//     npm install @sparticuz/chromium puppeteer-core && node kedro_viz_screenshots.mjs "$OLDPWD/docs")
import chromium from '@sparticuz/chromium';
import puppeteer from 'puppeteer-core';

const out = process.argv[2] ?? '.';
const sleep = ms => new Promise(r => setTimeout(r, ms));
const browser = await puppeteer.launch({
  args: chromium.args, executablePath: await chromium.executablePath(), headless: true,
  defaultViewport: {width: 1600, height: 1000},
});
const page = await browser.newPage();
await page.goto('http://127.0.0.1:4141/', {waitUntil: 'networkidle0', timeout: 60000});
await sleep(3000);

// the version banner and the feature tour cover the graph on a first visit
for (const button of await page.$$('button, a, span')) {
  if (await button.evaluate(e => e.textContent.trim()) === 'Dismiss') { await button.click(); break; }
}
if (await page.$('.feature-hints__close')) await page.click('.feature-hints__close');
await sleep(7000);  // the "hints are in Settings" toast fades
await page.screenshot({path: `${out}/kedro_viz.png`});

for (const node of await page.$$('.pipeline-node')) {
  if (await node.evaluate(e => e.textContent.trim()) === 'cumulative_returns_plot') { await node.click(); break; }
}
await sleep(3000);
await page.screenshot({path: `${out}/kedro_viz_plot.png`});
await browser.close();
