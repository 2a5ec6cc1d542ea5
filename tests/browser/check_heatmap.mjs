// Opens a heatmap's index.html, filters the file list, follows the first file link, and
// reports the coloured lines, headers, legend and navigation links:
//   node check_heatmap.mjs DIR SCREENSHOT.png FILTER
import { launch, watch } from "./launch.mjs";

const [dir, screenshot, filter] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  watch(page, result);
  await page.goto("file://" + dir + "/index.html");
  result.indexFiles = await page.$$eval("table.files a", (as) => as.map((a) => a.textContent));
  result.indexHeaders = await page.$$eval("table.files th", (ths) => ths.map((t) => t.textContent));
  result.sparkBars = await page.$$eval("tr.file-row", (rows) => rows.map((r) => r.querySelectorAll("svg.spark rect").length));
  result.indexStats = await page.textContent(".stats");
  await page.fill("#file-search", filter);
  result.filteredFiles = await page.$$eval("tr.file-row", (rows) => rows.filter((r) => !r.hidden).map((r) => r.dataset.path));
  await page.fill("#file-search", "");
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-index.png"), fullPage: true });
  await page.click("table.files a >> nth=0");
  await page.waitForSelector(".code-line");
  const lines = () => page.$$eval(".code-line:not(.code-header)", (ls) => ls.map((l) => ({ n: l.id, bg: l.style.background, title: l.title, text: l.querySelector(".src").textContent })));
  result.header = await page.$$eval(".code-header span", (ss) => ss.map((s) => s.textContent));
  result.legend = await page.textContent(".legend");
  result.legendScale = await page.$eval(".legend .scale", (s) => getComputedStyle(s).backgroundImage);
  result.selfLines = (await lines()).filter((l) => l.bg);
  await page.click("#color-total");
  result.totalLines = (await lines()).filter((l) => l.bg);
  result.allText = (await lines()).map((l) => l.text);
  await page.screenshot({ path: screenshot, fullPage: false });
  result.callees = await page.$$eval("a.callee", (as) => as.map((a) => a.getAttribute("href")));
  result.callers = await page.$$eval("a.caller", (as) => as.map((a) => [a.closest(".code-line").id, a.getAttribute("href"), a.textContent]));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
