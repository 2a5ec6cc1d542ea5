// Opens one of tachyon's flame graph pages in headless Chromium (Debian's /usr/bin/chromium)
// and reports what a person would see, as JSON on stdout:
//   node check_html.mjs PAGE.html SCREENSHOT.png HOVER_TEXT
// It hovers the first frame whose label contains HOVER_TEXT, reads the tooltip and the status
// bar, searches (recording which frames change colour), checks every visible label's contrast
// in both themes, toggles module names / paths, the inverted and elided views, drives the
// keyboard, reloads a shared view from its address, exports the SVG, and records console
// errors and dialogs.
import { launch, watch } from "./launch.mjs";

const [page_path, screenshot, hoverText] = process.argv.slice(2);
const browser = await launch();
const result = {};
const settle = (page) => page.waitForTimeout(450); // the chart's 300 ms transitions

// Fill and label of every frame: [label text, rect fill, label colour, label shown].
const framesOf = (page) => page.$$eval("#chart svg g.frame", (gs) => gs.map((g) => {
  const div = g.querySelector("div.d3-flame-graph-label");
  return [g.textContent.trim(), g.querySelector("rect").getAttribute("fill"),
          div ? getComputedStyle(div).color : "", div ? getComputedStyle(div).display !== "none" : false];
}));

// WCAG contrast of each shown label against its frame as drawn over the page background.
const contrasts = (page) => page.evaluate(() => {
  const probe = document.createElement("span");
  document.body.appendChild(probe);
  const rgba = (text) => { probe.style.color = "rgba(0,0,0,0)"; probe.style.color = text;
    const m = getComputedStyle(probe).color.match(/[\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const lum = ([r, g, b]) => [r, g, b].map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); })
    .reduce((s, c, i) => s + c * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = rgba(getComputedStyle(document.body).getPropertyValue("--bg").trim());
  const out = [];
  for (const g of document.querySelectorAll("#chart svg g.frame")) {
    const div = g.querySelector("div.d3-flame-graph-label");
    if (!div || getComputedStyle(div).display === "none" || !div.textContent.trim()) continue;
    const [r, gg, b, a] = rgba(g.querySelector("rect").getAttribute("fill") || "transparent");
    const drawn = [r * a + bg[0] * (1 - a), gg * a + bg[1] * (1 - a), b * a + bg[2] * (1 - a)];
    const l1 = lum(drawn), l2 = lum(rgba(getComputedStyle(div).color));
    out.push([div.textContent.trim(), (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05)]);
  }
  probe.remove();
  return out;
});

try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  watch(page, result);
  await page.goto("file://" + page_path);
  await page.waitForSelector("#chart svg g.frame", { timeout: 10000 });
  await settle(page);
  const labels = async () => (await framesOf(page)).map((f) => f[0]).filter((t) => t);
  result.title = await page.title();
  result.labels = (await labels()).slice(0, 400);
  result.frameCount = result.labels.length;
  result.summary = await page.textContent("#summary");
  result.legend = await page.textContent("#legend");
  result.hotspots = await page.textContent("#hotspots");
  result.threadStats = await page.isVisible("#thread-stats-section") ? await page.textContent("#thread-stats") : null;
  result.efficiency = await page.isVisible("#efficiency-section") ? await page.textContent("#efficiency") : null;
  result.docsLink = await page.getAttribute("#docs-link", "href");

  const target = page.locator("#chart svg g.frame", { hasText: hoverText }).first();
  await target.hover();
  await page.waitForSelector("#tooltip:not([hidden])", { timeout: 5000 });
  result.tooltip = await page.textContent("#tooltip");
  result.status = await page.textContent("#status-text");
  result.hoverFill = await target.locator("rect").evaluate((r) => getComputedStyle(r).fill || r.getAttribute("fill"));
  await page.screenshot({ path: screenshot, fullPage: true });

  // Search: the matching frames, and only they, take the highlight colour.
  const before = await framesOf(page);
  await page.keyboard.press("/");
  result.searchFocused = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.type(hoverText.replace(/ \($/, "").replace(/\($/, ""));
  await settle(page);
  const after = await framesOf(page);
  result.searchChanged = after.filter((f, i) => before[i] && f[1] !== before[i][1]).map((f) => [f[0], f[1]]);
  result.searchUnchanged = after.filter((f, i) => before[i] && f[1] === before[i][1]).map((f) => f[0]);
  result.fragmentAfterSearch = await page.evaluate(() => location.hash);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-search.png"), fullPage: true });
  await page.keyboard.press("Escape");
  await page.fill("#search", "");
  await settle(page);

  // Contrast of every visible label, in both themes.
  result.contrast = {};
  result.contrast[await page.evaluate(() => document.body.className)] = await contrasts(page);
  await page.click("#toggle-theme");
  await settle(page);
  result.theme = await page.evaluate(() => document.body.className);
  result.contrast[result.theme] = await contrasts(page);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-dark.png"), fullPage: true });
  await page.click("#toggle-theme");
  await settle(page);

  // Module names (the default) and file paths.
  await page.click("#toggle-paths");
  await settle(page);
  result.pathLabels = (await labels()).slice(0, 200);
  await page.click("#toggle-paths");
  await settle(page);

  // Inverted (the "i" key): roots heaviest first.
  await page.locator("#chart").click({ position: { x: 5, y: 5 } }).catch(() => {});
  await page.keyboard.press("i");
  await settle(page);
  result.invertedPressed = await page.getAttribute("#toggle-inverted", "aria-pressed");
  result.invertedLabels = (await labels()).slice(0, 50);
  result.invertedRoots = await page.evaluate(() => {
    const root = d3.select("#chart svg g.frame").datum();
    let top = root; while (top.parent) top = top.parent;
    return (top.children || []).map((c) => [c.data.name, c.value]);
  });
  await page.keyboard.press("i");
  await settle(page);

  // Zoom into the hovered frame; the address keeps zoom and search across a reload.
  await page.locator("#chart svg g.frame", { hasText: hoverText }).first().click();
  await settle(page);
  await page.fill("#search", hoverText.replace(/ \($/, ""));
  await settle(page);
  result.fragment = await page.evaluate(() => location.hash);
  const widthBefore = await page.locator("#chart svg g.frame", { hasText: hoverText }).first().locator("rect").getAttribute("width");
  await page.reload();
  await page.waitForSelector("#chart svg g.frame");
  await settle(page);
  result.searchAfterReload = await page.inputValue("#search");
  result.zoomedWidthAfterReload = [widthBefore, await page.locator("#chart svg g.frame", { hasText: hoverText }).first().locator("rect").getAttribute("width")];
  await page.keyboard.press("Escape");
  await settle(page);
  result.fragmentAfterEscape = await page.evaluate(() => location.hash);
  await page.fill("#search", "");
  await settle(page);

  // Export: the chart downloads as SVG.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-svg")]);
  result.exportName = download.suggestedFilename();

  if (await page.isVisible("#thread-filter-label")) {
    const options = await page.$$eval("#thread-filter option", (os) => os.map((o) => o.value));
    result.threadOptions = options;
    await page.selectOption("#thread-filter", options[options.length - 1]);
    await settle(page);
    result.threadLabels = (await labels()).slice(0, 200);
    await page.selectOption("#thread-filter", "all");
    await settle(page);
  }
  if (await page.isVisible("#toggle-elided")) {
    await page.click("#toggle-elided");
    await settle(page);
    result.elidedLabels = (await labels()).slice(0, 200);
    result.elidedSummary = await page.textContent("#summary");
    result.elidedFills = await page.$$eval("#chart svg g.frame rect", (rs) => [...new Set(rs.map((r) => r.getAttribute("fill")))]);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-elided.png"), fullPage: true });
    await page.click("#toggle-elided");
    await settle(page);
  }
  if (await page.isVisible("#changes")) {
    result.regressions = await page.textContent("#regressions tbody");
    result.improvements = await page.textContent("#improvements tbody");
  }
  result.xss = await page.evaluate(() => window.__tachyon_xss === undefined ? null : window.__tachyon_xss);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
