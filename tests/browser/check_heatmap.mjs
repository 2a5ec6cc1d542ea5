// Opens a heatmap's index.html, follows the first file link, and reports the coloured lines:
//   node check_heatmap.mjs DIR SCREENSHOT.png
import { launch, watch } from "./launch.mjs";

const [dir, screenshot] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  watch(page, result);
  await page.goto("file://" + dir + "/index.html");
  result.indexFiles = await page.$$eval("table.files a", (as) => as.map((a) => a.textContent));
  await page.click("table.files a >> nth=0");
  await page.waitForSelector(".code-line");
  const lines = () => page.$$eval(".code-line", (ls) => ls.map((l) => ({ n: l.id, bg: l.style.background, title: l.title, text: l.querySelector(".src").textContent })));
  result.selfLines = (await lines()).filter((l) => l.bg);
  await page.click("#color-total");
  result.totalLines = (await lines()).filter((l) => l.bg);
  result.allText = (await lines()).map((l) => l.text);
  await page.screenshot({ path: screenshot, fullPage: false });
  result.callees = await page.$$eval("a.callee", (as) => as.map((a) => a.getAttribute("href")));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
