/* tachyon flame graph viewer: renders EMBEDDED_DATA with d3-flame-graph. The data has CPython
   3.15.2's shape: the root node itself (a promoted "Program Root: ..." function, or "Program
   Root"), with the string table, stats and threads on it; the elided view
   (stats.elided_flamegraph) carries its own string table. */
(function () {
  "use strict";
  const data = EMBEDDED_DATA;
  const stats = data.stats || {};
  const elided = stats.elided_flamegraph || null;
  let S = data.strings;  /* the string table of the tree on screen */
  const isDiff = !!stats.is_differential;
  const interval = stats.sample_interval_usec || 0;
  const total = data.value;
  const MODES = ["wall", "cpu", "gil", "all", "exception"];
  const makeChart = typeof window.flamegraph === "function" ? window.flamegraph : window.flamegraph.default;
  const state = { thread: "all", inverted: false, elided: false };
  let chart = null;

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

  /* Our nodes -> d3-flame-graph nodes, for one thread or all. */
  function convert(node, thread) {
    const tv = node.thread_values && node.thread_values[thread];
    const value = thread === "all" ? node.value : (tv ? tv[0] : 0);
    const self = thread === "all" ? node.self : (tv ? tv[1] : 0);
    /* "Program Root" (no function of its own) is drawn but not described. */
    const out = { name: S[node.name], value: value, self: self, info: node, isRoot: node.filename === undefined, children: [] };
    for (const child of node.children) {
      const c = convert(child, thread);
      if (c.value > 0) out.children.push(c);
    }
    return out;
  }

  /* Callers view: every function with self time at the top, its callers below it. */
  function invert(root) {
    const inv = { name: "all", value: 0, self: 0, info: Object.assign({}, root.info), isRoot: true, children: [], index: {} };
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
    return inv;
  }

  function heatColor(node) {
    const f = total > 0 ? node.value / total : 0;
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
    if (!node.info || node.isRoot) return "transparent";
    return isDiff ? css("--diff-" + diffClass(node.info)) : heatColor(node);
  }

  /* "LOAD_ATTR_INSTANCE_VALUE (LOAD_ATTR)" for specialized instructions, as Tachyon shows. */
  function opcodeName(op) {
    const map = data.opcode_mapping;
    if (!map || !map.names[op]) return "opcode " + op;
    const base = map.deopt[op];
    return map.names[op] + (base !== undefined && map.names[base] ? " (" + map.names[base] + ")" : "");
  }

  function tooltipHtml(node) {
    const info = node.info || {};
    const file = info.filename !== undefined ? S[info.filename] : "";
    const func = info.funcname !== undefined ? S[info.funcname] : node.name;
    let html = '<div class="fn">' + escapeHtml(func) + "</div>";
    if (file && file !== "~") html += '<div class="loc">' + escapeHtml(file) + (info.lineno > 0 ? ":" + info.lineno : "") + "</div>";
    html += "<table>";
    html += "<tr><td>Total time</td><td>" + fmtTime(node.value) + " (" + pct(node.value, total) + ")</td></tr>";
    if (node.self > 0) html += "<tr><td>Self time</td><td>" + fmtTime(node.self) + " (" + pct(node.self, total) + ")</td></tr>";
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
      if (info.significant === false) html += '<div class="noise">Within sampling noise</div>';
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
  }

  /* Plain text, not a regular expression (a query like "parse(" must not throw); also
     Tachyon's "file.py:42" form. */
  function searchMatch(d, term) {
    const info = (d.data && d.data.info) || {};
    const file = info.filename !== undefined ? S[info.filename] : "";
    const at = /^(.+):(\d+)$/.exec(term);
    if (at && file) return file.endsWith(at[1]) && info.lineno === Number(at[2]);
    const t = term.toLowerCase();
    return String(d.data.name || "").toLowerCase().includes(t) || file.toLowerCase().includes(t);
  }

  function render() {
    const source = state.elided ? elided : data;
    S = source.strings;
    let root = convert(source, state.thread);
    if (state.inverted) root = invert(root);
    const el = $("chart");
    el.innerHTML = "";
    chart = makeChart()
      .width(Math.max(600, el.clientWidth - 32))
      .cellHeight(20)
      .transitionDuration(300)
      .minFrameSize(1)
      .inverted(true)
      .selfValue(false)
      .setColorMapper((d) => color(d))
      .setSearchMatch(searchMatch)
      .onHover((d) => showTooltip(d));
    d3.select("#chart").datum(root).call(chart);
    const term = $("search").value.trim();
    if (term) chart.search(term);
  }

  function summary() {
    const items = [["Samples", total.toLocaleString()], ["Mode", MODES[stats.mode] || stats.mode || "?"],
      ["Duration", stats.duration_sec ? stats.duration_sec.toFixed(2) + " s" : "unknown"],
      ["Sample rate", stats.sample_rate ? Math.round(stats.sample_rate).toLocaleString() + "/s" : "unknown"],
      ["Errors", stats.error_rate === null || stats.error_rate === undefined ? "unknown" : stats.error_rate.toFixed(2) + "%"]];
    if (stats.python_version) items.push(["Python", stats.python_version]);
    if (stats.thread_stats) items.push(["GIL held", stats.thread_stats.has_gil_pct.toFixed(1) + "%"], ["GC", stats.thread_stats.gc_pct.toFixed(1) + "%"]);
    if (isDiff) {
      items.push(["Baseline samples", stats.baseline_samples.toLocaleString()], ["Baseline scale", stats.baseline_scale.toFixed(3)],
        ["Normalised by", stats.diff_normalize === "total" ? "total sampled time" : "sampling interval"], ["Elided stacks", stats.elided_count]);
      /* Beyond CPython 3.15.2: its `run` starts scripts through runpy, tachyon's does not. */
      if (stats.bootstrap_frames_stripped) items.push(["runpy bootstrap frames", "ignored (--keep-bootstrap-frames keeps them)"]);
    }
    $("summary").innerHTML = items.map(([k, v]) => "<span>" + escapeHtml(k) + ": <b>" + escapeHtml(v) + "</b></span>").join("");
  }

  function legend() {
    const entries = isDiff
      ? [["regression-deep", "Deep Regression ≥100%"], ["regression-medium", "Medium Regression 50-100%"], ["regression-light", "Light Regression 30-50%"],
         ["regression-minor", "Minor Regression 15-30%"], ["neutral", "Neutral -15% to 15% or within noise"], ["improvement-minor", "Minor Improvement -30% to -15%"],
         ["improvement-light", "Light Improvement -50% to -30%"], ["improvement-medium", "Strong Improvement <-50%"], ["new", "New: no counterpart in baseline"],
         ["elided", "Removed: no counterpart in current"]].map(([k, t]) => ["--diff-" + k, t])
      : [[8, "Hottest ≥60%"], [7, "Very Hot 35-60%"], [6, "Hot 18-35%"], [5, "Warm 12-18%"], [4, "Medium 6-12%"], [3, "Cool 3-6%"], [2, "Cold 1-3%"], [1, "Coldest <1%"]]
          .map(([k, t]) => ["--heat-" + k, t]);
    $("legend").innerHTML = entries.map(([v, t]) => '<span><span class="swatch" style="background:var(' + v + ')"></span>' + escapeHtml(t) + "</span>").join("");
  }

  function changesTables() {
    if (!isDiff) return;
    $("changes").hidden = false;
    for (const id of ["regressions", "improvements"]) {
      const rows = data[id] || [];
      $(id).querySelector("tbody").innerHTML = rows.length ? rows.map((r) => "<tr><td>" + escapeHtml(S[r.funcname]) + "</td><td>" + escapeHtml(S[r.filename]) +
        "</td><td>" + r.baseline_ms.toFixed(1) + " ms</td><td>" + r.current_ms.toFixed(1) + ' ms</td><td class="' + (r.diff_ms > 0 ? "up" : "down") + '">' +
        signed(r.diff_ms, r.diff_ms.toFixed(1)) + " ms (" + signed(r.diff_pct, r.diff_pct.toFixed(1)) + "%)</td></tr>").join("")
        : '<tr><td colspan="5">None beyond sampling noise</td></tr>';
    }
  }

  function setup() {
    const theme = localStorage.getItem("tachyon-theme");
    if (theme === "dark") document.body.className = "dark";
    $("toggle-theme").textContent = document.body.className === "dark" ? "Light theme" : "Dark theme";
    $("toggle-theme").addEventListener("click", () => {
      document.body.className = document.body.className === "dark" ? "light" : "dark";
      localStorage.setItem("tachyon-theme", document.body.className);
      $("toggle-theme").textContent = document.body.className === "dark" ? "Light theme" : "Dark theme";
      render();
    });
    let timer = null;
    $("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { const t = $("search").value.trim(); if (t) chart.search(t); else chart.clear(); }, 150);
    });
    $("reset-zoom").addEventListener("click", () => chart.resetZoom());
    $("toggle-inverted").addEventListener("click", (e) => {
      state.inverted = !state.inverted;
      e.target.setAttribute("aria-pressed", String(state.inverted));
      render();
    });
    const threads = data.threads || [];
    if (threads.length > 1 && !isDiff) {
      $("thread-filter-label").hidden = false;
      for (const t of threads) {
        const o = document.createElement("option");
        o.value = String(t);
        o.textContent = "Thread " + t;
        $("thread-filter").appendChild(o);
      }
      $("thread-filter").addEventListener("change", (e) => { state.thread = e.target.value; render(); });
    }
    if (isDiff && elided && stats.elided_count > 0) {
      $("toggle-elided").hidden = false;
      $("toggle-elided").addEventListener("click", (e) => {
        state.elided = !state.elided;
        e.target.setAttribute("aria-pressed", String(state.elided));
        e.target.textContent = state.elided ? "Show differential" : "Show elided stacks";
        render();
      });
    }
    document.addEventListener("mousemove", (e) => {
      const tip = $("tooltip");
      if (tip.hidden) return;
      const x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      const y = e.clientY + 14 + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - 14 : e.clientY + 14;
      tip.style.left = x + "px";
      tip.style.top = Math.max(0, y) + "px";
    });
    $("chart").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    summary();
    legend();
    changesTables();
    render();
  }

  setup();
})();
