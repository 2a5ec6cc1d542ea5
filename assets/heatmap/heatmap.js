/* tachyon heatmap pages: colour lines by self or total samples, theme, cold-line filter. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const theme = localStorage.getItem("tachyon-theme");
  if (theme === "dark") document.body.className = "dark";
  const themeButton = $("toggle-theme");
  const label = () => (themeButton.textContent = document.body.className === "dark" ? "Light theme" : "Dark theme");
  label();
  themeButton.addEventListener("click", () => {
    document.body.className = document.body.className === "dark" ? "light" : "dark";
    localStorage.setItem("tachyon-theme", document.body.className);
    label();
  });
  /* Index: filter the files by path. */
  const fileSearch = $("file-search");
  if (fileSearch) {
    fileSearch.addEventListener("input", () => {
      const t = fileSearch.value.trim().toLowerCase();
      for (const row of document.querySelectorAll("tr.file-row")) row.hidden = !!t && !row.dataset.path.toLowerCase().includes(t);
    });
  }
  const code = $("code");
  if (!code) return;
  const lines = Array.from(code.querySelectorAll(".code-line:not(.code-header)"));
  function paint(by) {
    const key = by === "self" ? "selfIntensity" : "cumulativeIntensity";
    for (const line of lines) {
      const v = parseFloat(line.dataset[key]) || 0;
      line.style.background = v > 0 ? "rgba(var(--hot), " + (0.08 + 0.6 * v).toFixed(3) + ")" : "";
      line.classList.toggle("cold", (parseFloat(line.dataset.cumulativeIntensity) || 0) === 0);
    }
    $("color-self").setAttribute("aria-pressed", String(by === "self"));
    $("color-total").setAttribute("aria-pressed", String(by === "total"));
  }
  $("color-self").addEventListener("click", () => paint("self"));
  $("color-total").addEventListener("click", () => paint("total"));
  $("hide-cold").addEventListener("change", (e) => code.classList.toggle("hide-cold", e.target.checked));
  paint("self");
})();
