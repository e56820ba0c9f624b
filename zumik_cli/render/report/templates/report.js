// Draws the report's charts from the JSON block above and keeps them fitted to the page, on screen and in
// print. Figures arrive as data, not code, so nothing from a trace is ever executed.
(function () {
  "use strict";
  var spec = JSON.parse(document.getElementById("zumik-figures").textContent);
  var charts = [];
  var drawn = [];
  Object.keys(spec.figures).forEach(function (id) {
    var element = document.getElementById(id);
    if (!element) {
      return;
    }
    var figure = spec.figures[id];
    charts.push(element);
    drawn.push(Plotly.newPlot(element, figure.data, figure.layout, spec.config));
  });
  // A table wider than its card scrolls inside it; say so where it does, and only there.
  var tables = Array.prototype.slice.call(document.querySelectorAll(".table-box"));
  function hint() {
    tables.forEach(function (box) {
      var wrap = box.querySelector(".table-wrap");
      box.classList.toggle("scrolls", wrap.scrollWidth > wrap.clientWidth + 1);
    });
  }
  function fit() {
    charts.forEach(function (element) {
      Plotly.Plots.resize(element);
    });
    hint();
  }
  hint();
  window.addEventListener("resize", hint);
  window.addEventListener("beforeprint", fit);
  window.addEventListener("afterprint", fit);
  if (window.matchMedia) {
    var print = window.matchMedia("print");
    if (print.addEventListener) {
      print.addEventListener("change", fit);
    }
  }
  Promise.all(drawn).then(function () {
    document.body.setAttribute("data-charts-ready", String(charts.length));
  });
})();
