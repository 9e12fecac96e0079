// cdp analyst workspace: charts (Chart.js) and small editor helpers; pages work without it.
(function () {
  function drawCharts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var spec = JSON.parse(canvas.dataset.chart);
      canvas.dataset.drawn = "1";
      new Chart(canvas, {
        type: spec.type,
        data: {labels: spec.labels, datasets: [{label: spec.label, data: spec.data}]},
        options: {
          animation: false, indexAxis: spec.horizontal ? "y" : "x", maintainAspectRatio: false,
          plugins: {legend: {display: spec.type === "doughnut", position: "right"}}
        }
      });
    });
  }

  function editorHelpers() {
    var sql = document.getElementById("sql");
    if (!sql) return;
    sql.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        htmx.trigger(document.getElementById("sql-form"), "submit");
      }
    });
    document.querySelectorAll("#catalog [data-insert]").forEach(function (el) {
      el.addEventListener("click", function () {
        var text = el.dataset.insert, at = sql.selectionStart;
        sql.value = sql.value.slice(0, at) + text + sql.value.slice(sql.selectionEnd);
        sql.focus();
        sql.selectionStart = sql.selectionEnd = at + text.length;
      });
    });
    var download = document.getElementById("download");
    download.addEventListener("click", function () {
      var form = document.createElement("form");
      form.method = "post";
      form.action = download.dataset.csv;
      var csrf = document.querySelector("meta[name=csrf-token]");
      [["sql", sql.value], ["name", document.getElementById("query-name").value],
       ["csrf_token", csrf ? csrf.content : ""]].forEach(function (kv) {
        var input = document.createElement("input");
        input.type = "hidden"; input.name = kv[0]; input.value = kv[1];
        form.appendChild(input);
      });
      document.body.appendChild(form);
      form.submit();
      form.remove();
    });
  }

  // the profile search runs as you type, from the third character (a filter here, not in an
  // hx-trigger expression: htmx would evaluate that with eval, which the CSP forbids)
  function searchAsYouType() {
    var q = document.getElementById("q");
    if (!q || !q.form) return;
    q.addEventListener("input", function () {
      if (q.value.length > 2) htmx.trigger(q.form, "search-typed");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    editorHelpers();
    searchAsYouType();
  });
})();
