// Debian's Chromium, headless, with the flags this closed network needs.
import { chromium } from "playwright-core";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
}

// Records what a person would notice going wrong on a page.
export function watch(page, result) {
  result.consoleErrors = [];
  result.pageErrors = [];
  result.dialogs = [];
  page.on("console", (m) => { if (m.type() === "error") result.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("dialog", async (d) => { result.dialogs.push(d.message()); await d.dismiss(); });
}
