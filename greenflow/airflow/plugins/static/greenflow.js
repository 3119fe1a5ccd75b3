/* greenflow Carbon Ledger pages: times in Airflow's time zone, Chart.js charts, the integrity badge.
 * The server renders everything in UTC; this script only improves what is already on the page. */
(function () {
  "use strict";

  // -- time zone: the one chosen in Airflow's UI (localStorage "timezone", JSON), else the browser's --
  function validZone(zone) {
    try { new Intl.DateTimeFormat("en", { timeZone: zone }); return true; } catch (e) { return false; }
  }
  function airflowZone() {
    try {
      var raw = window.localStorage.getItem("timezone");
      if (raw) {
        var value = raw.charAt(0) === '"' ? JSON.parse(raw) : raw;
        if (typeof value === "string" && validZone(value)) return value;
      }
    } catch (e) { /* storage blocked or not JSON */ }
    var browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
    return browser && validZone(browser) ? browser : "UTC";
  }
  var ZONE = airflowZone();
  var PARTS = new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
  });
  var MONTH_DAY = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, day: "numeric", month: "short" });

  function parts(ms) {
    var out = {};
    PARTS.formatToParts(new Date(ms)).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }
  function formatMs(ms, style) {
    var p = parts(ms);
    var date = p.year + "-" + p.month + "-" + p.day;
    var time = p.hour + ":" + p.minute;
    if (style === "time") return time;
    if (style === "date") return date;
    return date + " " + time;
  }
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("datetime"));
      if (isNaN(ms)) return;
      var style = el.getAttribute("data-style") || "datetime";
      if (style === "after") {
        // Just the time when it falls on the same day as the first time in its cell (planned, then actual).
        var first = el.closest("td, dd") ? el.closest("td, dd").querySelector("time") : null;
        var firstMs = first && first !== el ? Date.parse(first.getAttribute("datetime")) : NaN;
        style = !isNaN(firstMs) && formatMs(firstMs, "date") === formatMs(ms, "date") ? "time" : "datetime";
      }
      el.title = new Date(ms).toISOString().replace(".000Z", "Z") + " (UTC)";
      el.textContent = formatMs(ms, style);
    });
    root.querySelectorAll("[data-tz-name]").forEach(function (el) { el.textContent = ZONE; });
    root.querySelectorAll("input[name=tz]").forEach(function (el) { if (!el.value) el.value = ZONE; });
  }

  // Days and date filters are computed by the server in the zone the URL names: name Airflow's zone once.
  function ensureZoneInUrl() {
    var body = document.body;
    if (!body.hasAttribute("data-wants-tz")) return false;
    var url = new URL(window.location.href);
    if (url.searchParams.get("tz") || ZONE === "UTC") return false;
    url.searchParams.set("tz", ZONE);
    window.location.replace(url.toString());
    return true;
  }

  // -- charts --------------------------------------------------------------------------------------
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function massUnit(maxGrams) {
    if (maxGrams >= 1e6) return { div: 1e6, label: "t CO2e" };
    if (maxGrams >= 1e3) return { div: 1e3, label: "kg CO2e" };
    return { div: 1, label: "g CO2e" };
  }
  function round(v) { return v === null || v === undefined ? null : Math.round(v * 1000) / 1000; }
  var charts = [];

  function baseOptions() {
    var text = css("--muted"), grid = css("--chart-grid");
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "nearest", intersect: false },
      plugins: {
        legend: { labels: { color: text, boxWidth: 12, filter: function (item) { return item.text.charAt(0) !== "_"; },
                            sort: function (a, b) { return a.datasetIndex - b.datasetIndex; } } },
        tooltip: { filter: function (item) { return item.dataset.label.charAt(0) !== "_"; } }
      },
      scales: { x: { ticks: { color: text }, grid: { color: grid } }, y: { ticks: { color: text }, grid: { color: grid } } }
    };
  }

  function dailyChart(canvas, data) {
    var days = data.days || [];
    var max = 0;
    days.forEach(function (d) { max = Math.max(max, (d.operational_g || 0) + Math.max(d.saved_g || 0, 0)); });
    var unit = massUnit(max);
    var options = baseOptions();
    options.scales.x.stacked = true;
    options.scales.x.ticks.maxRotation = 0;
    options.scales.x.ticks.autoSkipPadding = 8;
    options.scales.y.stacked = true;
    options.scales.y.title = { display: true, text: unit.label, color: css("--muted") };
    options.plugins.tooltip.callbacks = {
      label: function (item) { return item.dataset.label + ": " + item.formattedValue + " " + unit.label; }
    };
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: days.map(function (d) { return MONTH_DAY.format(new Date(d.day + "T12:00:00Z")); }),
        datasets: [
          { label: "Emitted", data: days.map(function (d) { return d.operational_g === null ? null : round(d.operational_g / unit.div); }),
            backgroundColor: css("--chart-emitted") },
          { label: "Saved by deferral", data: days.map(function (d) { return d.saved_g === null ? null : round(d.saved_g / unit.div); }),
            backgroundColor: css("--chart-saved") }
        ]
      },
      options: options
    });
  }

  function ms(iso) { return iso ? Date.parse(iso) : null; }
  function steps(points, valueKey) {
    // Slots [start, end) with a value: one point per start and one at the last end, drawn as steps.
    var out = [];
    points.forEach(function (p, i) {
      var prev = points[i - 1];
      if (prev && ms(prev.end) < ms(p.start)) out.push({ x: ms(prev.end), y: null });
      out.push({ x: ms(p.start), y: p[valueKey] });
      if (i === points.length - 1) out.push({ x: ms(p.end), y: p[valueKey] });
    });
    return out;
  }
  function band(label, start, end, top, color, from) {
    // A shaded span [start, end] from "from" (default the axis) up to "top": a dataset, no custom drawing.
    return { label: label, data: [{ x: start, y: top }, { x: end, y: top }], fill: from === undefined ? "origin" : { value: from },
             backgroundColor: color, borderWidth: 0, pointRadius: 0, stepped: false, order: 10, span: true };
  }
  var STEPS = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map(function (m) { return m * 60000; });
  function timeStep(span) {
    for (var i = 0; i < STEPS.length; i++) if (span / STEPS[i] <= 9) return STEPS[i];
    return STEPS[STEPS.length - 1];
  }
  function marker(label, at, top, color, dash) {
    return { label: label, data: [{ x: at, y: 0 }, { x: at, y: top }], borderColor: color, borderWidth: 1.5,
             borderDash: dash || [], pointRadius: 0, fill: false, order: 5, span: true };
  }

  function forecastChart(canvas, attempt) {
    var forecast = attempt.forecast && attempt.forecast.points ? attempt.forecast.points : [];
    var slots = attempt.run_intensity && attempt.run_intensity.slots ? attempt.run_intensity.slots : [];
    var values = forecast.map(function (p) { return p.value || 0; })
      .concat(slots.map(function (s) { return s.intensity_g_per_kwh || 0; }));
    var top = Math.max.apply(null, values.concat([1])) * 1.08;
    var datasets = [];
    if (forecast.length) {
      datasets.push({ label: "Forecast (planned on)", data: steps(forecast, "value"), stepped: true, borderColor: css("--chart-forecast"),
                      borderWidth: 2, pointRadius: 0, fill: false, order: 2 });
    }
    if (slots.length) {
      datasets.push({ label: "Intensity during the run", data: steps(slots, "intensity_g_per_kwh"), stepped: true,
                      borderColor: css("--chart-actual"), borderWidth: 3, pointRadius: 0, fill: false, order: 1 });
    }
    var win = attempt.window;
    var ran = attempt.segments || null;
    if (ran && win && win.segments && win.segments.length) {
      // An interruptible attempt: each planned segment shaded; one legend entry for them all ("_" hides the rest).
      win.segments.forEach(function (s, i) {
        datasets.push(band(i === 0 ? "Planned segments" : "_planned segment " + (i + 1), ms(s.start), ms(s.end), top, css("--chart-window")));
      });
    } else if (win && win.start && win.end) {
      datasets.push(band("Chosen window", ms(win.start), ms(win.end), top, css("--chart-window")));
    }
    if (ran) {
      // Each segment that ran: a bar along the top from its actual start to its end, and a line at its start.
      var shown = 0;
      ran.forEach(function (s) {
        var a = ms(s.actual_start), b = ms(s.ended_at);
        if (!a || !b) return;
        datasets.push(band(shown === 0 ? "Segments that ran" : "_" + s.label, a, Math.max(b, a + 1), top, css("--chart-actual"), top * 0.94));
        datasets.push(marker("_" + s.label + " start", a, top, css("--chart-actual")));
        shown += 1;
      });
    } else {
      var runStart = ms(attempt.actual_start), runEnd = ms(attempt.ended_at);
      if (runStart && runEnd) {
        // The run is a bar along the top and a line at its start, so that it stays visible over the window.
        datasets.push(band("The run", runStart, Math.max(runEnd, runStart + 1), top, css("--chart-actual"), top * 0.94));
        datasets.push(marker("_run start", runStart, top, css("--chart-actual")));
      }
    }
    if (attempt.requested_at) datasets.push(marker("Requested", ms(attempt.requested_at), top, css("--muted"), [4, 4]));
    var options = baseOptions();
    options.parsing = false;
    var xs = [];
    datasets.forEach(function (d) { d.data.forEach(function (p) { if (p.x) xs.push(p.x); }); });
    var step = timeStep(Math.max.apply(null, xs) - Math.min.apply(null, xs));
    options.scales.x = {
      type: "linear", ticks: { color: css("--muted"), stepSize: step, maxRotation: 0,
        callback: function (value) { var p = parts(value); return p.hour === "00" && p.minute === "00" ? MONTH_DAY.format(new Date(value)) : formatMs(value, "time"); } },
      grid: { color: css("--chart-grid") }
    };
    options.scales.y.min = 0;
    options.scales.y.max = Math.ceil(top);
    options.scales.y.title = { display: true, text: "gCO2e/kWh", color: css("--muted") };
    options.plugins.tooltip.callbacks = {
      title: function (items) { return items.length ? formatMs(items[0].parsed.x) : ""; },
      label: function (item) {
        if (item.dataset.span) return item.dataset.label;
        return item.dataset.label + ": " + Math.round(item.parsed.y) + " gCO2e/kWh";
      }
    };
    return new window.Chart(canvas, { type: "line", data: { datasets: datasets }, options: options });
  }

  function powerChart(canvas, traces) {
    var palette = [css("--chart-forecast"), css("--chart-actual"), css("--chart-emitted"), css("--muted")];
    var datasets = traces.map(function (t, i) {
      return { label: (t.component || "device").toUpperCase() + " " + (t.device === null || t.device === undefined ? "" : t.device),
               data: t.samples.map(function (s) { return { x: Date.parse(s[0]), y: s[1] }; }),
               borderColor: palette[i % palette.length], borderWidth: 1.5, pointRadius: 0, fill: false };
    });
    var options = baseOptions();
    options.parsing = false;
    options.scales.x = { type: "linear", ticks: { color: css("--muted"), maxTicksLimit: 8,
      callback: function (value) { return formatMs(value, "time"); } }, grid: { color: css("--chart-grid") } };
    options.scales.y.title = { display: true, text: "W", color: css("--muted") };
    options.plugins.tooltip.callbacks = { title: function (items) { return items.length ? formatMs(items[0].parsed.x) : ""; } };
    return new window.Chart(canvas, { type: "line", data: { datasets: datasets }, options: options });
  }

  function runsChart(canvas, data) {
    // The report's runs: grid intensity at each run, one colour per region (time on a linear axis).
    var palette = [css("--chart-forecast"), css("--chart-actual"), css("--chart-emitted"), css("--muted"), css("--warn")];
    var regions = {};
    (data.runs || []).forEach(function (run) {
      (regions[run.region] = regions[run.region] || []).push({ x: Date.parse(run.at), y: run.intensity_g_per_kwh, decision: run.decision });
    });
    var datasets = Object.keys(regions).sort().map(function (region, i) {
      return { label: region, data: regions[region], backgroundColor: palette[i % palette.length],
               borderColor: palette[i % palette.length], pointRadius: 3, showLine: false };
    });
    var options = baseOptions();
    options.parsing = false;
    options.scales.x = { type: "linear", ticks: { color: css("--muted"), maxTicksLimit: 8, maxRotation: 0,
      callback: function (value) { return MONTH_DAY.format(new Date(value)); } }, grid: { color: css("--chart-grid") } };
    options.scales.y.min = 0;
    options.scales.y.title = { display: true, text: "gCO2e/kWh", color: css("--muted") };
    options.plugins.tooltip.callbacks = {
      title: function (items) { return items.length ? formatMs(items[0].parsed.x) : ""; },
      label: function (item) { return item.dataset.label + ": " + Math.round(item.parsed.y) + " gCO2e/kWh (" + item.raw.decision + ")"; }
    };
    return new window.Chart(canvas, { type: "scatter", data: { datasets: datasets }, options: options });
  }

  function drawCharts() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    if (!window.Chart) return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var data = json(canvas.getAttribute("data-source"));
      if (!data) return;
      var kind = canvas.getAttribute("data-chart");
      var chart = kind === "daily" ? dailyChart(canvas, data) : kind === "forecast" ? forecastChart(canvas, data)
        : kind === "runs" ? runsChart(canvas, data) : powerChart(canvas, data);
      canvas.setAttribute("data-rendered", "true");
      charts.push(chart);
    });
  }

  // -- integrity badge -------------------------------------------------------------------------------
  function integrityBadge(attempt) {
    var badge = document.getElementById("integrity-badge");
    if (!badge || !window.fetch) return;
    fetch(badge.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (report) {
        if (report.in_progress && !report.checked && (attempt || 0) < 60) {
          badge.textContent = "integrity: verifying…";
          window.setTimeout(function () { integrityBadge((attempt || 0) + 1); }, 5000);
        } else if (!report.checked) {
          badge.className = "integrity";
          badge.textContent = "integrity: not checked yet · verify";
        } else if (report.ok) {
          badge.className = "integrity ok";
          badge.textContent = "✓ chain verified · " + report.entries.toLocaleString("en") + " entries";
        } else {
          badge.className = "integrity bad";
          badge.textContent = "✗ chain broken · " + report.problems.length + " problem" + (report.problems.length === 1 ? "" : "s");
        }
      })
      .catch(function () { badge.textContent = "integrity: not checked"; });
  }

  // -- the Report page's period: a month or from/to, never both (choosing one clears the other) ---------
  function reportForm() {
    document.querySelectorAll("form[data-report-form]").forEach(function (form) {
      var month = form.querySelector("input[name=period]");
      var dates = form.querySelectorAll("input[name=from], input[name=to]");
      if (!month) return;
      function monthChosen() { if (month.value) dates.forEach(function (d) { d.value = ""; }); }
      function dateChosen(event) { if (event.target.value) month.value = ""; }
      ["input", "change"].forEach(function (kind) {
        month.addEventListener(kind, monthChosen);
        dates.forEach(function (d) { d.addEventListener(kind, dateChosen); });
      });
    });
  }

  function start() {
    if (ensureZoneInUrl()) return;
    localiseTimes(document);
    drawCharts();
    reportForm();
    integrityBadge();
    document.addEventListener("greenflow:theme", drawCharts);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
