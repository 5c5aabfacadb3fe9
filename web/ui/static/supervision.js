// Supervisors' dashboard: ECharts charts from the JSON the server embeds (#sup-chart-data, inside the
// live summary fragment), redrawn when app.js reloads that fragment; data tables stay as the text version.
(function () {
  "use strict";
  var charts = {};
  var RED = "#9b1c1c", BLUE = "#0b57a4", GREEN = "#1e6b34", AMBER = "#7a4b00";

  var lastJSON = null;

  function readData() {
    var el = document.getElementById("sup-chart-data");
    if (!el) { return null; }
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function empty(names, labels) {
    return labels.length ? undefined : {text: names.empty, left: "center", top: "middle",
                                        textStyle: {color: "#4a5363", fontSize: 14, fontWeight: "normal"}};
  }

  function barOption(series, names) {
    return {
      title: empty(names, series.labels), aria: {enabled: false},
      grid: {left: 8, right: 32, top: 8, bottom: 8, containLabel: true},
      tooltip: {trigger: "axis", axisPointer: {type: "shadow"}},
      xAxis: {type: "value", minInterval: 1},
      yAxis: {type: "category", data: series.labels, inverse: true},
      series: [{type: "bar", name: names.overdue, data: series.values, itemStyle: {color: RED}, barMaxWidth: 28,
                label: {show: true, position: "right"}}]
    };
  }

  function trendOption(series, names) {
    function line(key, color, type, symbol) {
      return {type: "line", name: names[key], data: series[key], symbol: symbol, symbolSize: 6,
              itemStyle: {color: color}, lineStyle: {color: color, type: type, width: 2}};
    }
    return {
      aria: {enabled: false},
      grid: {left: 8, right: 16, top: 40, bottom: 8, containLabel: true},
      tooltip: {trigger: "axis"}, legend: {top: 0},
      xAxis: {type: "category", data: series.days, boundaryGap: false},
      yAxis: {type: "value", minInterval: 1},
      series: [line("filed", BLUE, "solid", "circle"), line("closed", GREEN, "dashed", "rect"),
               line("breached", RED, "dotted", "triangle")]
    };
  }

  function ratesOption(series, names) {
    return {
      title: empty(names, series.labels),
      aria: {enabled: true, label: {enabled: false}, decal: {show: true}},  // patterns: colour is not the only cue
      grid: {left: 8, right: 40, top: 40, bottom: 8, containLabel: true},
      tooltip: {trigger: "axis", axisPointer: {type: "shadow"}, valueFormatter: function (v) {
        return v === null || v === undefined ? "—" : v + "%"; }},
      legend: {top: 0},
      xAxis: {type: "value", max: 100, axisLabel: {formatter: "{value}%"}},
      yAxis: {type: "category", data: series.labels, inverse: true},
      series: [
        {type: "bar", name: names.sign, data: series.sign, itemStyle: {color: BLUE}, barMaxWidth: 20,
         label: {show: true, position: "right", formatter: "{c}%"}},
        {type: "bar", name: names.resolve, data: series.resolve, itemStyle: {color: AMBER}, barMaxWidth: 20,
         label: {show: true, position: "right", formatter: "{c}%"}}
      ]
    };
  }

  var OPTIONS = {street: barOption, department: barOption, trend: trendOption, rates: ratesOption};

  function fillTable(table, series, names) {
    if (!table) { return; }
    var labels = series[table.getAttribute("data-rows")] || [];
    var cols = table.getAttribute("data-cols").split(" ");
    var pct = table.hasAttribute("data-pct");
    var body = table.tBodies[0];
    body.textContent = "";
    if (!labels.length) {
      var none = body.insertRow().insertCell();
      none.colSpan = cols.length + 1;
      none.textContent = names.empty;
      return;
    }
    labels.forEach(function (label, i) {
      var tr = body.insertRow();
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      tr.appendChild(th);
      cols.forEach(function (col) {
        var v = series[col][i];
        tr.insertCell().textContent = v === null || v === undefined ? "—" : v + (pct ? "%" : "");
      });
    });
  }

  function render(first) {
    var el = document.getElementById("sup-chart-data");
    if (!el || el.textContent === lastJSON) { return; }  // redraw only when the figures changed
    lastJSON = el.textContent;
    var data = readData();
    if (!data) { return; }
    document.querySelectorAll("figure[data-chart]").forEach(function (fig) {
      var key = fig.getAttribute("data-chart");
      var series = data[key];
      var box = fig.querySelector(".sup-canvas");
      if (!series || !box) { return; }
      if (window.echarts) {
        box.hidden = false;
        if (!charts[key]) {
          charts[key] = window.echarts.init(box);
          var details = fig.querySelector("details");
          if (details && first) { details.open = false; }  // the chart shows; its table is one click away
        }
        charts[key].setOption(OPTIONS[key](series, data.names), true);
      }
      box.setAttribute("aria-label", series.summary);
      if (!first) { fillTable(fig.querySelector("table[data-table]"), series, data.names); }
    });
  }

  function announce() {
    var stats = document.getElementById("sup-stats");
    var live = document.getElementById("sup-live");
    var data = readData();
    if (!stats || !live || !data) { return; }
    live.textContent = data.names.live.replace("%(overdue)s", stats.getAttribute("data-overdue"))
      .replace("%(warnings)s", stats.getAttribute("data-warnings"));
  }

  document.addEventListener("DOMContentLoaded", function () {
    render(true);
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (k) { charts[k].resize(); });
    });
  });
  document.addEventListener("huying:refreshed", function (e) {
    if (e.target && e.target.id === "live-summary") { render(false); }
    announce();
  });
  // 督办 escalates an overdue call at once: ask first (the buttons are re-rendered by the live refresh,
  // so the listener sits on the document)
  document.addEventListener("submit", function (e) {
    var button = e.submitter;
    if (button && button.hasAttribute("data-confirm") && !window.confirm(button.getAttribute("data-confirm"))) {
      e.preventDefault();
    }
  });
})();
