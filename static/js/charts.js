/* Line charts drawn as SVG from <figure class="chart" data-chart='{"name", "title", "series": [
   {"key", "label", "color", "points": [[step, value], ...]}]}'>, and live updates of a run's
   curves: while #run-status says the run is active, new points are read every 2 s from the
   metrics API with an id cursor (?after=), and once more when the run ends. No dependencies. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 440, H = 230, L = 58, R = 12, T = 12, B = 30;
  var POLL_MS = 2000;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v, step) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
    var digits = step ? Math.max(0, Math.min(6, 1 - Math.floor(Math.log10(step)))) : 3;
    var text = v.toFixed(digits);
    return text.indexOf(".") >= 0 ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  function ticks(lo, hi, n) {
    if (hi === lo) return [lo];
    var out = [];
    for (var i = 0; i <= n; i++) out.push(lo + (hi - lo) * i / n);
    return out;
  }

  function draw(figure) {
    var chart = figure._chart;
    var area = figure.querySelector(".chart-area");
    var empty = figure.querySelector(".chart-empty");
    var all = [];
    chart.series.forEach(function (s) { s.points.forEach(function (p) { all.push(p); }); });
    figure.setAttribute("data-points", String(all.length));
    area.textContent = "";
    if (!all.length) { if (empty) empty.hidden = false; area.hidden = true; return; }
    if (empty) empty.hidden = true;
    area.hidden = false;
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    all.forEach(function (p) {
      x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
    });
    var oneStep = x1 === x0;
    if (oneStep) { x0 -= 1; x1 += 1; }
    var pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", focusable: "false" }, area);
    var yticks = ticks(y0 + pad, y1 - pad, 4);
    var ystep = yticks.length > 1 ? yticks[1] - yticks[0] : 0;
    var seen = {};
    yticks = yticks.filter(function (v) {  // no label twice (a flat or one-point series)
      var t = fmt(v, ystep);
      if (seen[t]) return false;
      seen[t] = true;
      return true;
    });
    yticks.forEach(function (v) {
      el("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid-line" }, svg);
      el("text", { x: L - 6, y: sy(v) + 4, class: "tick", "text-anchor": "end" }, svg).textContent = fmt(v, ystep);
    });
    var xseen = {};
    (oneStep ? [x0 + 1] : ticks(x0, x1, 4)).forEach(function (v) {
      var s = Math.round(v);
      if (xseen[s]) return;  // steps are whole numbers: a short run would repeat them
      xseen[s] = true;
      el("text", { x: sx(s), y: H - 10, class: "tick", "text-anchor": "middle" }, svg).textContent = String(s);
    });
    chart.series.forEach(function (s) {
      if (!s.points.length) return;
      var pts = s.points.map(function (p) { return sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1); });
      var attrs = { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": s.best ? 3 : 2,
                    "stroke-linejoin": "round" };
      if (s.dash) attrs["stroke-dasharray"] = "6 4";
      el("polyline", attrs, svg);
      if (s.points.length <= 40) {
        s.points.forEach(function (p) {
          el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: s.points.length <= 3 ? 5 : 3, fill: s.color }, svg);
        });
      }
      var drawn = chart.series.filter(function (x) { return x.points.length; }).length;
      if (s.points.length <= 3 && drawn === 1) {
        // few points: each one carries its value, so the chart still says something
        var n = s.points.length;
        s.points.forEach(function (p, i) {
          var anchor = n > 1 && i === 0 ? "start" : n > 1 && i === n - 1 ? "end" : "middle";
          el("text", { x: sx(p[0]), y: Math.max(T + 12, sy(p[1]) - 10), class: "point-value", "text-anchor": anchor }, svg)
            .textContent = fmt(p[1]) + " at step " + p[0];
        });
      }
    });
    if (chart.series.length > 1) {
      var legend = document.createElement("ul");
      legend.className = "legend";
      chart.series.forEach(function (s) {
        if (!s.points.length) return;
        var li = document.createElement("li");
        var sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = s.color;
        li.appendChild(sw);
        li.appendChild(document.createTextNode(" " + s.label));
        legend.appendChild(li);
      });
      area.appendChild(legend);
    }
    var last = chart.series[0].points[chart.series[0].points.length - 1];
    if (chart.series.length === 1 && last) {
      area.setAttribute("aria-label", chart.title + ": " + all.length + " points, last " + fmt(last[1]) +
                        " at step " + last[0]);
    }
  }

  function live(container, figures) {
    var url = container.getAttribute("data-metrics-url");
    var after = Number(container.getAttribute("data-after") || 0);
    var byName = {};
    figures.forEach(function (f) { byName[f._chart.name] = f; });
    var names = Object.keys(byName).map(function (n) { return "names=" + encodeURIComponent(n); }).join("&");

    function active() {
      var status = document.getElementById("run-status");
      return status && status.getAttribute("data-active") === "true";
    }

    function tick() {
      var stillActive = active();
      fetch(url + "?after=" + after + "&" + names, { headers: { Accept: "application/json" },
                                                    credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body) {
            after = body.last_id;
            container.setAttribute("data-after", String(after));
            Object.keys(body.series).forEach(function (name) {
              var f = byName[name];
              if (!f) return;
              var points = f._chart.series[0].points;
              body.series[name].forEach(function (p) { points.push(p); });
              draw(f);
            });
          }
        })
        .catch(function () { /* a missed poll is retried at the next tick */ })
        .then(function () {
          if (stillActive) window.setTimeout(tick, POLL_MS);  // else: that was the last read
        });
    }
    if (active()) window.setTimeout(tick, POLL_MS);
  }

  function init() {
    var figures = Array.prototype.slice.call(document.querySelectorAll("figure.chart[data-chart]"));
    figures.forEach(function (f) {
      try { f._chart = JSON.parse(f.getAttribute("data-chart")); } catch (e) { return; }
      draw(f);
    });
    var container = document.querySelector("[data-metrics-url]");
    if (container) {
      live(container, figures.filter(function (f) { return container.contains(f) && f._chart; }));
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
