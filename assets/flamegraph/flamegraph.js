/* tachyon flame graph viewer: renders EMBEDDED_DATA with d3-flame-graph. The data has CPython
   3.15.2's shape: the root node itself (a promoted "Program Root: ..." function, or "Program
   Root"), with the string table, stats and threads on it; the elided view
   (stats.elided_flamegraph) carries its own string table and stats. */
(function () {
  "use strict";
  const data = EMBEDDED_DATA;
  const stats = data.stats || {};
  const elided = stats.elided_flamegraph || null;
  let S = data.strings;  /* the string table of the tree on screen */
  const isDiff = !!stats.is_differential;
  const interval = stats.sample_interval_usec || 0;
  const MODES = ["wall", "cpu", "gil", "all", "exception"];
  const GIL_MODE = 2;
  /* d3-flame-graph's own search colour: visible on every frame colour, in both themes. */
  const HIGHLIGHT = "#e600e6";
  const makeChart = typeof window.flamegraph === "function" ? window.flamegraph : window.flamegraph.default;
  /* What the view shows; kept in the address bar's fragment so a view can be shared. */
  const state = { thread: "all", inverted: false, elided: false, paths: false, search: "", zoom: [] };
  let chart = null;
  let shownTotal = data.value;

  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.body).getPropertyValue(name).trim();
  function fmtTime(samples) {
    if (!interval) return "--";
    const ms = samples * interval / 1000;
    if (Math.abs(ms) >= 1000) return (ms / 1000).toFixed(2) + " s";
    return ms.toFixed(Math.abs(ms) < 10 ? 2 : 1) + " ms";
  }
  const pct = (n, of) => (of > 0 ? (100 * n / of).toFixed(1) : "0.0") + "%";
  const signed = (x, text) => (x > 0 ? "+" : "") + text;
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  /* ---- the address bar: #search=…&zoom=a|b|c&inverted=1&elided=1&paths=1&thread=N ---- */
  function readFragment() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.search = p.get("search") || "";
    state.zoom = p.get("zoom") ? p.get("zoom").split("\u001f") : [];
    state.inverted = p.get("inverted") === "1";
    state.elided = p.get("elided") === "1" && !!elided;
    state.paths = p.get("paths") === "1";
    state.thread = p.get("thread") || "all";
  }
  function writeFragment() {
    const p = new URLSearchParams();
    if (state.search) p.set("search", state.search);
    if (state.zoom.length) p.set("zoom", state.zoom.join("\u001f"));
    if (state.inverted) p.set("inverted", "1");
    if (state.elided) p.set("elided", "1");
    if (state.paths) p.set("paths", "1");
    if (state.thread !== "all") p.set("thread", state.thread);
    const text = p.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }

  /* Our nodes -> d3-flame-graph nodes, for one thread or all. Frames are named by module
     (`func (pkg.mod:12)`, 3.15's default) or by path. */
  function convert(node, thread) {
    const tv = node.thread_values && node.thread_values[thread];
    const value = thread === "all" ? node.value : (tv ? tv[0] : 0);
    const self = thread === "all" ? node.self : (tv ? tv[1] : 0);
    const nameId = state.paths || node.label === undefined ? node.name : node.label;
    /* "Program Root" (no function of its own) is drawn but not described. */
    const out = { name: S[nameId], value: value, self: self, info: node, isRoot: node.filename === undefined, children: [] };
    for (const child of node.children) {
      const c = convert(child, thread);
      if (c.value > 0) out.children.push(c);
    }
    return out;
  }

  /* Callers view: every function with self time at the top, its callers below it; roots and
     children heaviest first, as 3.15 sorts them. */
  function invert(root) {
    const inv = { name: root.name, value: 0, self: 0, info: Object.assign({}, root.info), isRoot: true, children: [], index: {} };
    function visit(node, path) {
      const here = path.concat([node]);
      if (node.self > 0) {
        inv.value += node.self;
        let at = inv;
        for (let i = here.length - 1; i >= 1; i--) {
          const n = here[i];
          let child = at.index[n.name];
          if (!child) {
            child = { name: n.name, value: 0, self: 0, children: [], index: {},
                      info: Object.assign({}, n.info, { baseline: 0, diff: 0, self_time: 0 }) };
            at.index[n.name] = child;
            at.children.push(child);
          }
          child.value += node.self;
          if (i === here.length - 1) child.self += node.self;
          if (isDiff) {
            child.info.baseline += node.info.baseline || 0;
            child.info.diff += node.info.diff || 0;
            child.info.self_time += node.self;
            const b = child.info.baseline;
            child.info.diff_pct = b > 0 ? 100 * child.info.diff / b : (child.info.self_time > 0 ? 100 : 0);
          }
          at = child;
        }
      }
      for (const c of node.children) visit(c, here);
    }
    visit(root, []);
    (function sort(n) {
      n.children.sort((a, b) => b.value - a.value);
      n.children.forEach(sort);
    })(inv);
    return inv;
  }

  function heatColor(node) {
    const f = shownTotal > 0 ? node.value / shownTotal : 0;
    const level = f >= 0.6 ? 8 : f >= 0.35 ? 7 : f >= 0.18 ? 6 : f >= 0.12 ? 5 : f >= 0.06 ? 4 : f >= 0.03 ? 3 : f >= 0.01 ? 2 : 1;
    return css("--heat-" + level);
  }

  /* Tachyon's thresholds; changes within sampling noise stay neutral. */
  function diffClass(info) {
    if (state.elided || info.elided) return "elided";
    const p = info.diff_pct || 0;
    if (p === 100 && info.self_time > 0 && Math.abs(info.diff - info.self_time) < 0.1) return "new";
    if (info.significant === false || Math.abs(p) < 15) return "neutral";
    if (p >= 100) return "regression-deep";
    if (p > 50) return "regression-medium";
    if (p > 30) return "regression-light";
    if (p > 0) return "regression-minor";
    if (p <= -100) return "improvement-deep";
    if (p < -50) return "improvement-medium";
    if (p < -30) return "improvement-light";
    return "improvement-minor";
  }

  function color(d) {
    const node = d.data;
    if (d.highlight) return HIGHLIGHT;
    if (!node.info || node.isRoot) return "transparent";
    return isDiff ? css("--diff-" + diffClass(node.info)) : heatColor(node);
  }

  /* ---- label colours by contrast (WCAG): black or white, whichever reads better on the
     frame's colour as drawn over the page ---- */
  const parsed = new Map();
  function rgba(text) {
    if (parsed.has(text)) return parsed.get(text);
    const probe = document.createElement("span");
    probe.style.color = "rgba(0, 0, 0, 0)";
    probe.style.color = text;
    document.body.appendChild(probe);
    const m = getComputedStyle(probe).color.match(/[\d.]+/g).map(Number);
    probe.remove();
    const out = [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
    parsed.set(text, out);
    return out;
  }
  function luminance([r, g, b]) {
    const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  }
  function drawnColor(fill) {
    const bg = rgba(css("--bg"));
    const [r, g, b, a] = rgba(fill || "transparent");
    return [r * a + bg[0] * (1 - a), g * a + bg[1] * (1 - a), b * a + bg[2] * (1 - a)];
  }
  const contrast = (l1, l2) => (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  function labelColor(fill) {
    const l = luminance(drawnColor(fill));
    return contrast(l, 0) >= contrast(l, 1) ? "#000000" : "#ffffff";
  }
  function fixLabels() {
    document.querySelectorAll("#chart g.frame").forEach((g) => {
      const rect = g.querySelector("rect");
      const label = g.querySelector("div.d3-flame-graph-label");
      if (rect && label) label.style.color = labelColor(rect.getAttribute("fill"));
    });
  }
  let labelsPending = false;
  new MutationObserver(() => {
    if (labelsPending) return;
    labelsPending = true;
    requestAnimationFrame(() => { labelsPending = false; fixLabels(); });
  }).observe($("chart"), { subtree: true, childList: true, attributes: true, attributeFilter: ["fill"] });

  /* "LOAD_ATTR_INSTANCE_VALUE (LOAD_ATTR)" for specialized instructions, as Tachyon shows. */
  function opcodeName(op) {
    const map = data.opcode_mapping;
    if (!map || !map.names[op]) return "opcode " + op;
    const base = map.deopt[op];
    return map.names[op] + (base !== undefined && map.names[base] ? " (" + map.names[base] + ")" : "");
  }

  function place(info) {
    const file = info.filename !== undefined ? S[info.filename] : "";
    if (!file || file === "~") return "";
    const where = !state.paths && info.module !== undefined ? S[info.module] : file;
    return where + (info.lineno > 0 ? ":" + info.lineno : "");
  }

  function tooltipHtml(node) {
    const info = node.info || {};
    const file = info.filename !== undefined ? S[info.filename] : "";
    const func = info.funcname !== undefined ? S[info.funcname] : node.name;
    let html = '<div class="fn">' + escapeHtml(func) + "</div>";
    if (file && file !== "~") {
      html += '<div class="loc">' + escapeHtml(file) + (info.lineno > 0 ? ":" + info.lineno : "") + "</div>";
      if (info.module !== undefined) html += '<div class="loc">module ' + escapeHtml(S[info.module]) + "</div>";
    }
    html += "<table>";
    html += "<tr><td>Total time</td><td>" + fmtTime(node.value) + " (" + pct(node.value, shownTotal) + ")</td></tr>";
    if (node.self > 0) html += "<tr><td>Self time</td><td>" + fmtTime(node.self) + " (" + pct(node.self, shownTotal) + ")</td></tr>";
    if (info.threads && info.threads.length) html += "<tr><td>Threads</td><td>" + info.threads.length + "</td></tr>";
    html += "</table>";
    if (isDiff && info.baseline !== undefined) {
      const cls = info.diff > 0 ? "regression" : info.diff < 0 ? "improvement" : "neutral";
      html += "<div><b>Self-Time Comparison:</b></div><table>";
      html += "<tr><td>Baseline Self</td><td>" + fmtTime(info.baseline) + "</td></tr>";
      html += "<tr><td>Current Self</td><td>" + fmtTime(info.self_time || 0) + "</td></tr>";
      html += '<tr class="' + cls + '"><td>Difference</td><td>' + signed(info.diff, fmtTime(info.diff)) + " (" + signed(info.diff_pct, (info.diff_pct || 0).toFixed(1)) + "%)</td></tr>";
      if (info.function_diff !== undefined) {
        /* A change split over several lines of one function is still one change. */
        html += "<tr><td>Whole function (self)</td><td>" + signed(info.function_diff, fmtTime(info.function_diff)) + " (" + signed(info.function_diff_pct, info.function_diff_pct.toFixed(1)) + "%)</td></tr>";
      }
      if (info.total_diff !== undefined) {
        html += "<tr><td>Inclusive</td><td>" + fmtTime(info.baseline_total) + " → " + fmtTime(node.value) + " (" + signed(info.total_diff_pct, info.total_diff_pct.toFixed(1)) + "%)</td></tr>";
      }
      html += "</table>";
      if (info.run_verdict !== undefined) {
        /* Sets of runs: the function's change across them, with its confidence interval. */
        const c = info.run_change || [];
        const pct = (v) => (v === null || v === undefined) ? "n/a" : signed(v, v.toFixed(1)) + "%";
        html += "<div><b>Across runs:</b> " + info.run_verdict + (c[0] !== undefined && c[0] !== null
          ? ", " + pct(c[0]) + " (" + (stats.run_confidence || 99) + "% CI " + pct(c[1]) + " to " + pct(c[2]) + ")" : "") + "</div>";
      } else if (info.significant === false) html += '<div class="noise">Within sampling noise</div>';
      if (info.elided) html += '<div class="noise">Removed: no counterpart in the current profile</div>';
    }
    if (info.source && info.source.length) {
      html += "<pre>" + info.source.map((i) => escapeHtml(S[i])).join("\n") + "</pre>";
    }
    if (info.opcodes) {
      const ops = Object.entries(info.opcodes).sort((a, b) => b[1] - a[1]).slice(0, 8);
      html += "<div><b>Bytecode instructions:</b></div><table>" + ops.map(([op, n]) => "<tr><td>" + escapeHtml(opcodeName(op)) +
        "</td><td>" + pct(n, node.value) + "</td></tr>").join("") + "</table>";
    }
    return html;
  }

  function showTooltip(d) {
    const tip = $("tooltip");
    if (!d || !d.data || d.data.isRoot) { tip.hidden = true; return; }
    tip.innerHTML = tooltipHtml(d.data);
    tip.hidden = false;
    const info = d.data.info || {};
    const func = info.funcname !== undefined ? S[info.funcname] : d.data.name;
    $("status-text").textContent = [place(info), func, fmtTime(d.data.value), pct(d.data.value, shownTotal)].filter((x) => x).join("   ·   ");
  }

  /* Plain text, not a regular expression (a query like "parse(" must not throw); also
     Tachyon's "file.py:42" form. Names, modules and files all match. */
  function searchMatch(d, term) {
    const info = (d.data && d.data.info) || {};
    if (d.data.isRoot) return false;
    const file = info.filename !== undefined ? S[info.filename] : "";
    const at = /^(.+):(\d+)$/.exec(term);
    if (at && file) return file.endsWith(at[1]) && info.lineno === Number(at[2]);
    const t = term.toLowerCase();
    const module = info.module !== undefined ? S[info.module] : "";
    return String(d.data.name || "").toLowerCase().includes(t) || file.toLowerCase().includes(t) || module.toLowerCase().includes(t);
  }

  /* The path of names from the root to a d3 node, and back. */
  function pathOf(d) {
    const names = [];
    for (let n = d; n; n = n.parent) names.unshift(n.data.name);
    return names;
  }
  function nodeAt(names) {
    let found = null;
    d3.selectAll("#chart g.frame").each(function (d) {
      if (!found && d.depth === names.length - 1) {
        const p = pathOf(d);
        if (p.length === names.length && p.every((n, i) => n === names[i])) found = d;
      }
    });
    return found;
  }

  function render() {
    const source = state.elided ? elided : data;
    S = source.strings;
    let root = convert(source, state.thread);
    if (state.inverted) root = invert(root);
    shownTotal = root.value;
    const el = $("chart");
    el.innerHTML = "";
    chart = makeChart()
      .width(Math.max(600, el.clientWidth - 24))
      .cellHeight(20)
      .transitionDuration(300)
      .minFrameSize(1)
      .inverted(true)
      .selfValue(false)
      .setColorMapper((d) => color(d))
      .setSearchMatch(searchMatch)
      .onHover((d) => showTooltip(d))
      .onClick((d) => {
        state.zoom = d && d.parent ? pathOf(d) : [];
        writeFragment();
      });
    d3.select("#chart").datum(root).call(chart);
    if (state.zoom.length) {
      const d = nodeAt(state.zoom);
      if (d) chart.zoomTo(d); else state.zoom = [];
    }
    if (state.search) chart.search(state.search);
    summary();
    hotspots();
    threadStats();
    writeFragment();
  }

  function card(k, v) {
    return '<div class="card"><div class="k">' + escapeHtml(k) + '</div><div class="v">' + escapeHtml(v) + "</div></div>";
  }

  /* The cards describe the tree on screen: the elided view shows the elided totals. */
  function summary() {
    const st = state.elided ? (elided.stats || {}) : stats;
    const functions = new Set();
    (function walk(n) { if (n.funcname !== undefined) functions.add(n.filename + ":" + n.funcname); n.children.forEach(walk); })(state.elided ? elided : data);
    const items = [[state.elided ? "Elided samples" : "Samples", Math.round(shownTotal).toLocaleString()],
      ["Duration", st.duration_sec ? st.duration_sec.toFixed(2) + " s" : "unknown"],
      ["Sample rate", st.sample_rate ? Math.round(st.sample_rate).toLocaleString() + "/s" : "unknown"],
      ["Functions", functions.size.toLocaleString()],
      ["Mode", MODES[st.mode] || st.mode || "?"]];
    if (stats.python_version) items.push(["Python", stats.python_version]);
    if (isDiff) {
      items.push(["Baseline samples", stats.baseline_samples.toLocaleString()], ["Baseline scale", stats.baseline_scale.toFixed(3)],
        ["Normalised by", stats.diff_normalize === "total" ? "total time" : "interval"], ["Elided stacks", String(stats.elided_count)]);
      /* Beyond CPython 3.15.2: its `run` starts scripts through runpy, tachyon's does not. */
      if (stats.bootstrap_frames_stripped) items.push(["runpy frames", "ignored"]);
    }
    $("summary-title").textContent = state.elided ? "Elided stacks" : "Summary";
    $("summary").innerHTML = items.map(([k, v]) => card(k, v)).join("");
  }

  function bar(label, value, colorVar) {
    const v = Math.max(0, Math.min(100, value));
    return '<div class="bar"><div class="row"><span>' + escapeHtml(label) + "</span><b>" + v.toFixed(1) + '%</b></div><div class="track"><div class="fill" style="width:' +
      v + "%;background:var(" + colorVar + ')"></div></div></div>';
  }

  /* Successful reads, and samples taken of those expected. */
  function efficiency() {
    let html = "";
    if (typeof stats.error_rate === "number") html += bar("Sampling efficiency (reads without error)", 100 - stats.error_rate, "--bar-ok");
    if (typeof stats.missed_samples === "number") html += bar("Samples missed", stats.missed_samples, "--bar-waiting");
    $("efficiency-section").hidden = !html;
    $("efficiency").innerHTML = html;
  }

  /* GIL held / released / waiting, GC and exceptions: all threads, or the chosen one. */
  function threadStats() {
    const t = state.thread !== "all" && stats.per_thread_stats ? stats.per_thread_stats[state.thread] : stats.thread_stats;
    if (!t || state.elided) { $("thread-stats-section").hidden = true; return; }
    let html = "";
    if (stats.mode !== GIL_MODE) {
      html += bar("GIL held", t.has_gil_pct || 0, "--bar-gil");
      html += bar("GIL released", 100 - (t.has_gil_pct || 0) - (t.gil_requested_pct || 0), "--bar-released");
      html += bar("Waiting for GIL", t.gil_requested_pct || 0, "--bar-waiting");
    }
    html += bar("Garbage collection", t.gc_pct || 0, "--bar-gc");
    html += bar("Handling an exception", t.has_exception_pct || 0, "--bar-exc");
    $("thread-stats-section").hidden = false;
    $("thread-stats").innerHTML = html;
  }

  /* The three functions (file, line) with the most self time, as 3.15's hotspot cards. */
  function hotspots() {
    const source = state.elided ? elided : data;
    const funcs = new Map();
    (function walk(n) {
      const tv = n.thread_values && n.thread_values[state.thread];
      const self = state.thread === "all" ? (n.self || 0) : (tv ? tv[1] : 0);
      if (n.funcname !== undefined && self > 0) {
        const key = n.filename + ":" + n.lineno + ":" + n.funcname;
        const f = funcs.get(key) || { node: n, self: 0 };
        f.self += self;
        funcs.set(key, f);
      }
      n.children.forEach(walk);
    })(source);
    const top = [...funcs.values()].filter((f) => f.self / shownTotal > 0.005).sort((a, b) => b.self - a.self).slice(0, 3);
    $("hotspots-section").hidden = top.length === 0;
    $("hotspots").innerHTML = top.map((f) => '<li data-func="' + escapeHtml(S[f.node.funcname]) + '"><div class="fn">' + escapeHtml(S[f.node.funcname]) +
      " " + pct(f.self, shownTotal) + '</div><div class="where">' + escapeHtml(place(f.node)) + "</div></li>").join("");
  }

  function legend() {
    const entries = isDiff
      ? [["regression-deep", "Deep Regression ≥100%"], ["regression-medium", "Medium Regression 50-100%"], ["regression-light", "Light Regression 30-50%"],
         ["regression-minor", "Minor Regression 15-30%"], ["neutral", "Neutral -15% to 15% or within noise"], ["improvement-minor", "Minor Improvement -30% to -15%"],
         ["improvement-light", "Light Improvement -50% to -30%"], ["improvement-medium", "Strong Improvement <-50%"], ["new", "New: no counterpart in baseline"],
         ["elided", "Removed: no counterpart in current"]].map(([k, t]) => ["--diff-" + k, t])
      : [[8, "Hottest ≥60%"], [7, "Very Hot 35-60%"], [6, "Hot 18-35%"], [5, "Warm 12-18%"], [4, "Medium 6-12%"], [3, "Cool 3-6%"], [2, "Cold 1-3%"], [1, "Coldest <1%"]]
          .map(([k, t]) => ["--heat-" + k, t]);
    $("legend").innerHTML = entries.map(([v, t]) => '<span><span class="swatch" style="background:var(' + v + ')"></span>' + escapeHtml(t) + "</span>").join("") +
      '<span><span class="swatch" style="background:' + HIGHLIGHT + '"></span>Search match</span>';
  }

  function changesTables() {
    if (!isDiff) return;
    $("changes").hidden = false;
    for (const id of ["regressions", "improvements"]) {
      const rows = data[id] || [];
      $(id).querySelector("tbody").innerHTML = rows.length ? rows.map((r) => "<tr><td>" + escapeHtml(data.strings[r.funcname]) + "</td><td>" + escapeHtml(data.strings[r.filename]) +
        "</td><td>" + r.baseline_ms.toFixed(1) + " ms</td><td>" + r.current_ms.toFixed(1) + ' ms</td><td class="' + (r.diff_ms > 0 ? "up" : "down") + '">' +
        signed(r.diff_ms, r.diff_ms.toFixed(1)) + " ms (" + signed(r.diff_pct, r.diff_pct.toFixed(1)) + "%)</td></tr>").join("")
        : '<tr><td colspan="5">None beyond sampling noise</td></tr>';
    }
  }

  function search(term) {
    state.search = term;
    if (term) chart.search(term); else chart.clear();
    writeFragment();
  }

  function exportSvg() {
    const svg = document.querySelector("#chart svg");
    if (!svg) return;
    const text = new XMLSerializer().serializeToString(svg);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    a.download = "tachyon-flamegraph.svg";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function press(id, on) { $(id).setAttribute("aria-pressed", String(on)); }

  function setup() {
    readFragment();
    const theme = localStorage.getItem("tachyon-theme");
    if (theme === "dark") document.body.className = "dark";
    $("toggle-theme").textContent = document.body.className === "dark" ? "Light theme" : "Dark theme";
    $("toggle-theme").addEventListener("click", () => {
      document.body.className = document.body.className === "dark" ? "light" : "dark";
      localStorage.setItem("tachyon-theme", document.body.className);
      $("toggle-theme").textContent = document.body.className === "dark" ? "Light theme" : "Dark theme";
      render();
    });
    if (stats.python_version) {
      const [major, minor] = stats.python_version.split(".");
      if (Number(major) === 3 && Number(minor) >= 15) $("docs-link").href = "https://docs.python.org/" + major + "." + minor + "/library/profiling.sampling.html";
    }
    $("search").value = state.search;
    let timer = null;
    $("search").addEventListener("search", () => search($("search").value.trim()));
    $("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => search($("search").value.trim()), 150);
    });
    $("reset-zoom").addEventListener("click", () => { chart.resetZoom(); state.zoom = []; writeFragment(); });
    $("toggle-inverted").addEventListener("click", () => { state.inverted = !state.inverted; state.zoom = []; press("toggle-inverted", state.inverted); render(); });
    $("toggle-paths").addEventListener("click", () => { state.paths = !state.paths; state.zoom = []; press("toggle-paths", state.paths); render(); });
    $("export-svg").addEventListener("click", exportSvg);
    $("hotspots").addEventListener("click", (e) => {
      const li = e.target.closest("li");
      if (li) { $("search").value = li.dataset.func; search(li.dataset.func); }
    });
    press("toggle-inverted", state.inverted);
    press("toggle-paths", state.paths);
    const threads = data.threads || [];
    if (threads.length > 1 && !isDiff) {
      $("thread-filter-label").hidden = false;
      for (const t of threads) {
        const o = document.createElement("option");
        o.value = String(t);
        o.textContent = (data.thread_labels || {})[t] || "Thread " + t;
        $("thread-filter").appendChild(o);
      }
      $("thread-filter").value = state.thread;
      $("thread-filter").addEventListener("change", (e) => { state.thread = e.target.value; state.zoom = []; render(); });
    } else {
      state.thread = "all";
    }
    if (isDiff && elided && stats.elided_count > 0) {
      $("toggle-elided").hidden = false;
      const label = () => { $("toggle-elided").textContent = state.elided ? "Show differential" : "Show elided stacks"; press("toggle-elided", state.elided); };
      label();
      $("toggle-elided").addEventListener("click", () => { state.elided = !state.elided; state.zoom = []; label(); render(); });
    }
    /* Keys, when not typing: "/" search, Esc reset zoom (and clear the search), "i" invert. */
    document.addEventListener("keydown", (e) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement;
      if (e.key === "Escape") {
        /* In the search box, Esc also clears the search (as the browser clears the box). */
        if (e.target === $("search")) { $("search").value = ""; search(""); }
        if (typing) e.target.blur();
        chart.resetZoom();
        state.zoom = [];
        writeFragment();
      } else if (!typing && e.key === "/") {
        e.preventDefault();
        $("search").focus();
      } else if (!typing && e.key === "i" && !e.ctrlKey && !e.metaKey && !e.altKey) {
        $("toggle-inverted").click();
      }
    });
    document.addEventListener("mousemove", (e) => {
      const tip = $("tooltip");
      if (tip.hidden) return;
      const x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      const y = e.clientY + 14 + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - 14 : e.clientY + 14;
      tip.style.left = x + "px";
      tip.style.top = Math.max(0, y) + "px";
    });
    $("chart").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    efficiency();
    legend();
    changesTables();
    render();
  }

  setup();
})();
