// The dashboard's behaviour: charts (uPlot), copy buttons and confirmations. No inline script: the page's CSP
// allows only files served from /ui/static.
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#6b7280"];

  function width(el) { return Math.max(280, el.clientWidth || 600); }

  function money(v) { return v == null ? "" : "$" + v.toFixed(v >= 1 ? 2 : 4); }

  function draw(el, legend, data, metric) {
    el.textContent = "";
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      series.push({ label: s.name, stroke: COLORS[i % COLORS.length], width: 2,
                    value: metric === "cost" ? function (u, v) { return money(v); } : undefined });
      columns.push(s.values);
    });
    var opts = { width: width(el), height: 260, series: series, legend: { show: true },
                 axes: [{}, { size: 70, values: metric === "cost" ? function (u, vs) { return vs.map(money); } : undefined }] };
    var plot = new uPlot(opts, columns, el);
    el.dataset.series = data.series.map(function (s) { return s.name; }).join(",");
    el.dataset.total = String(data.series.reduce(function (a, s) {
      return a + s.values.reduce(function (b, v) { return b + v; }, 0); }, 0));
    window.addEventListener("resize", function () { plot.setSize({ width: width(el), height: 260 }); });
  }

  function loadChart() {
    var el = document.getElementById("chart");
    var form = document.getElementById("chart-controls");
    if (!el || !form) { return; }
    var params = new URLSearchParams(new FormData(form));
    params.delete("view");
    el.setAttribute("aria-busy", "true");
    fetch(el.dataset.src + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("chart: " + r.status); } return r.json(); })
      .then(function (data) { draw(el, null, data, params.get("metric")); el.dataset.loaded = "1"; })
      .catch(function (err) { el.textContent = "The chart could not be loaded."; el.dataset.loaded = "error"; })
      .finally(function () { el.removeAttribute("aria-busy"); });
  }

  function burnChart() {
    var el = document.getElementById("burn");
    if (!el) { return; }
    var points = JSON.parse(el.dataset.points || "[]");
    if (!points.length) { el.textContent = "No spend yet."; return; }
    var xs = points.map(function (p) { return p[0]; });
    var ys = points.map(function (p) { return p[1]; });
    var series = [{}, { label: "spent", stroke: COLORS[0], width: 2, value: function (u, v) { return money(v); } }];
    var columns = [xs, ys];
    if (el.dataset.limit) {
      var limit = parseFloat(el.dataset.limit);
      series.push({ label: "budget", stroke: COLORS[1], dash: [6, 4], width: 1 });
      columns.push(xs.map(function () { return limit; }));
    }
    new uPlot({ width: width(el), height: 180, series: series,
                axes: [{}, { size: 70, values: function (u, vs) { return vs.map(money); } }] }, columns, el);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("chart-controls");
    if (form) {
      form.addEventListener("change", loadChart);
      loadChart();
    }
    burnChart();
    document.querySelectorAll("button.copy").forEach(function (b) {
      b.addEventListener("click", function () {
        var text = document.getElementById(b.dataset.copyFrom).textContent;
        if (navigator.clipboard) { navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; }, function () {}); }
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); } });
    });
  });
})();
