// Opens one of tachyon's HTML outputs in headless Chromium (Debian's /usr/bin/chromium) and
// reports what a person would see, as JSON on stdout:
//   node check_html.mjs PAGE.html SCREENSHOT.png HOVER_TEXT
// It hovers the first frame whose label contains HOVER_TEXT, reads the tooltip, toggles the
// inverted and (if present) elided views, searches, and records console errors and dialogs.
import { launch, watch } from "./launch.mjs";

const [page_path, screenshot, hoverText] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  watch(page, result);
  await page.goto("file://" + page_path);
  await page.waitForSelector("#chart svg g.frame", { timeout: 10000 });
  await page.waitForTimeout(800); // the chart's 300 ms entry transition
  const frames = () => page.$$eval("#chart svg g.frame", (gs) => gs.map((g) => g.textContent.trim()).filter((t) => t));
  result.title = await page.title();
  result.frameCount = (await frames()).length;
  result.labels = (await frames()).slice(0, 400);
  result.summary = await page.textContent("#summary");
  result.legend = await page.textContent("#legend");

  const target = page.locator("#chart svg g.frame", { hasText: hoverText }).first();
  await target.hover();
  await page.waitForSelector("#tooltip:not([hidden])", { timeout: 5000 });
  result.tooltip = await page.textContent("#tooltip");
  result.hoverFill = await target.locator("rect").evaluate((r) => getComputedStyle(r).fill || r.getAttribute("fill"));
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.fill("#search", hoverText);
  await page.waitForTimeout(400);
  result.searchMatches = await page.$$eval("#chart svg g.frame rect", (rs) => rs.filter((r) => (r.getAttribute("fill") || "").includes("rgb(230")
      || r.style.fill.includes("230")).length).catch(() => 0);
  await page.fill("#search", "");

  await page.click("#toggle-inverted");
  await page.waitForTimeout(400);
  result.invertedPressed = await page.getAttribute("#toggle-inverted", "aria-pressed");
  result.invertedLabels = (await frames()).slice(0, 50);
  await page.click("#toggle-inverted");
  await page.waitForTimeout(400);

  if (await page.isVisible("#thread-filter-label")) {
    const options = await page.$$eval("#thread-filter option", (os) => os.map((o) => o.value));
    result.threadOptions = options;
    await page.selectOption("#thread-filter", options[options.length - 1]);
    await page.waitForTimeout(400);
    result.threadLabels = (await frames()).slice(0, 200);
    await page.selectOption("#thread-filter", "all");
    await page.waitForTimeout(400);
  }
  if (await page.isVisible("#toggle-elided")) {
    await page.click("#toggle-elided");
    await page.waitForTimeout(400);
    result.elidedLabels = (await frames()).slice(0, 200);
    result.elidedFills = await page.$$eval("#chart svg g.frame rect", (rs) => [...new Set(rs.map((r) => r.style.fill || r.getAttribute("fill")))]);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-elided.png"), fullPage: true });
    await page.click("#toggle-elided");
  }
  if (await page.isVisible("#changes")) {
    result.regressions = await page.textContent("#regressions tbody");
    result.improvements = await page.textContent("#improvements tbody");
  }
  await page.click("#toggle-theme");
  result.theme = await page.evaluate(() => document.body.className);
  result.xss = await page.evaluate(() => window.__tachyon_xss === undefined ? null : window.__tachyon_xss);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
