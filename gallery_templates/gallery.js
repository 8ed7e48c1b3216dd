// Gallery behaviour: sortable tables, the epoch slider, the compare page. Plain DOM, no network.
(function () {
  "use strict";
  // (base.html's head has already set <html class="js">, before the body was drawn)

  // --- sortable tables: click (or Enter on) a header; empty cells always sort last ----------------
  function sortKey(row, i) {
    var cell = row.cells[i];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }
  function sortBy(table, i, th) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0], units = unitsOf(body);
    units.sort(function (a, b) {
      var x = sortKey(a[0], i), y = sortKey(b[0], i);
      if (x === "" || y === "") return (x === "") - (y === "");
      var nx = Number(x), ny = Number(y);
      var c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    units.forEach(function (u) { u.forEach(function (r) { body.appendChild(r); }); });
    table.dispatchEvent(new Event("sorted"));  // a paged table starts again at its first page
  }
  function unitsOf(body) {  // a grid point's row and the rows of its runs (class "member") move together
    var units = [];
    Array.prototype.forEach.call(body.rows, function (r) {
      if (r.classList.contains("member") && units.length) units[units.length - 1].push(r);
      else units.push([r]);
    });
    return units;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, i, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, i, th); }
      });
    });
  });

  // --- a large sweep's runs table, a page at a time: every row stays in the document, so sorting
  // and ticking reach all of them; the server marked all but the first page "off-page" ------------
  function pagerBars(name, onClick) {  // the bars above and below; a click below scrolls up to the top one
    var bars = Array.prototype.slice.call(document.querySelectorAll(".page-bar[data-for='" + name + "']"));
    bars.forEach(function (bar, k) {
      bar.addEventListener("click", function (e) {
        if (e.target.tagName !== "BUTTON" || !onClick(e.target.className)) return;
        if (k > 0) bars[0].scrollIntoView();
      });
    });
    return bars;
  }
  var runsTable = document.querySelector("table.runs"), runsPage = 0, runsAll = false;
  var runBars = pagerBars("runs", function (which) {
    if (which === "page-prev") runsPage -= 1;
    else if (which === "page-next") runsPage += 1;
    else if (which === "page-all") runsAll = !runsAll;
    else return false;
    showRuns();
    return true;
  });
  function showRuns() {
    var size = Number(runsTable.getAttribute("data-page-rows")), units = unitsOf(runsTable.tBodies[0]);
    var last = Math.ceil(units.length / size) - 1;
    runsPage = Math.max(0, Math.min(runsPage, last));
    units.forEach(function (u, k) {
      var off = !runsAll && Math.floor(k / size) !== runsPage;
      u.forEach(function (r) { r.classList.toggle("off-page", off); });
    });
    var from = runsAll ? 1 : runsPage * size + 1;
    var to = runsAll ? units.length : Math.min(units.length, from + size - 1);
    runBars.forEach(function (bar) {
      bar.querySelector(".page-label").textContent =
        bar.getAttribute("data-unit-name") + " " + from + "–" + to + " of " + units.length;
      bar.querySelector(".page-prev").disabled = runsAll || runsPage === 0;
      bar.querySelector(".page-next").disabled = runsAll || runsPage === last;
      bar.querySelector(".page-all").textContent = runsAll ? size + " a page" : "show all " + units.length;
    });
  }
  if (runBars.length) runsTable.addEventListener("sorted", function () { runsPage = 0; showRuns(); });

  // --- epoch slider on run pages ----------------------------------------------------------------
  document.querySelectorAll("figure.frames").forEach(function (fig) {
    var frames = JSON.parse(fig.getAttribute("data-frames"));
    var img = fig.querySelector("img"), input = fig.querySelector("input"), out = fig.querySelector("output");
    input.addEventListener("input", function () {
      var f = frames[Number(input.value)];
      img.src = f.src; img.alt = f.alt; out.textContent = "epoch " + f.epoch;
    });
  });

  // --- grouped runs table: a grid point's row opens to show its runs ------------------------------
  document.querySelectorAll("button.expand").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var open = btn.getAttribute("aria-expanded") !== "true";
      btn.setAttribute("aria-expanded", open ? "true" : "false");
      btn.textContent = open ? "▾" : "▸";
      document.querySelectorAll("tr.member[data-unit='" + btn.getAttribute("data-unit") + "']").forEach(
        function (r) { r.classList.toggle("open", open); });
    });
  });

  // --- selection: ticked table rows or clicked parallel-coordinates lines narrow the matrix ---------
  // A selection shows the matrix's tables that hold a selected cell, on every page; without one,
  // the matrix shows its current page (a large sweep's matrix has several, see below).
  var selected = {}, matrixPage = 0;
  function each(sel, fn) { document.querySelectorAll(sel).forEach(fn); }
  function applySelection() {
    var any = Object.keys(selected).length > 0;
    var on = function (el) { return !!selected[el.getAttribute("data-unit")]; };
    each("input.pick", function (c) { c.checked = on(c); });
    each("table.runs tbody tr", function (r) { r.classList.toggle("selected", on(r)); });
    each("svg.parallel polyline", function (l) { l.classList.toggle("selected", on(l)); });
    each("table.matrix", function (t) {
      var keepCol = [];
      Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
        var keepRow = false;
        Array.prototype.forEach.call(r.querySelectorAll("td"), function (td, j) {
          var show = !any || on(td);
          td.classList.toggle("off", !show);
          keepRow = keepRow || show;
          keepCol[j] = keepCol[j] || show;
        });
        r.hidden = !keepRow;
      });
      Array.prototype.forEach.call(t.rows, function (r) {  // header row too: cell j + 1 is column j
        Array.prototype.forEach.call(r.cells, function (c, k) {
          if (k > 0) c.classList.toggle("col-off", !keepCol[k - 1]);
        });
      });
      var page = Number(t.getAttribute("data-page"));
      t.classList.toggle("off-page", any ? keepCol.indexOf(true) < 0 : page !== matrixPage);
    });
    each("p.selection", function (p) { p.hidden = !any; });
    each(".page-bar[data-for='matrix']", function (b) { b.hidden = any; });
  }
  function toggle(unit) {
    if (!unit) return;
    if (selected[unit]) delete selected[unit]; else selected[unit] = true;
    applySelection();
  }
  each("input.pick", function (c) {
    c.addEventListener("change", function () { toggle(c.getAttribute("data-unit")); });
  });
  each("svg.parallel polyline", function (l) {
    l.addEventListener("click", function () { toggle(l.getAttribute("data-unit")); });
  });
  each("button.clear-selection", function (b) {
    b.addEventListener("click", function () { selected = {}; applySelection(); });
  });

  // --- the matrix's pages: the select names each (the other axes' values, the rows' range) ---------
  var matrixBars = pagerBars("matrix", function (which) {
    if (which === "page-prev") showMatrixPage(matrixPage - 1);
    else if (which === "page-next") showMatrixPage(matrixPage + 1);
    else return false;
    return true;
  });
  function showMatrixPage(i) {
    matrixPage = i;
    matrixBars.forEach(function (bar) {
      var select = bar.querySelector("select");
      select.value = String(i);
      bar.querySelector(".page-prev").disabled = i === 0;
      bar.querySelector(".page-next").disabled = i === select.options.length - 1;
    });
    applySelection();
  }
  matrixBars.forEach(function (bar) {
    var select = bar.querySelector("select");
    select.addEventListener("change", function () { showMatrixPage(Number(select.value)); });
  });

  // --- one epoch slider for every cell of the matrix (all three kinds) -----------------------------
  var slider = document.querySelector("input.epoch-slider");
  if (slider) {
    var label = document.querySelector("output.epoch-label"), play = document.querySelector("button.play");
    var cells = Array.prototype.map.call(
      document.querySelectorAll(".matrices img[data-epochs]"),
      function (img) { return { img: img, epochs: img.getAttribute("data-epochs").split(" ").map(Number) }; });
    var timer = null;
    var showEpoch = function (e) {
      cells.forEach(function (c) {
        var pick = c.epochs[0];
        c.epochs.forEach(function (n) { if (n <= e) pick = n; });  // fewer epochs: it keeps its last
        // the cell's file is epochs/<kind>_NNN.png; only NNN changes from epoch to epoch
        var src = c.img.getAttribute("src").replace(/_\d{3}\.png$/, "_" + ("00" + pick).slice(-3) + ".png");
        if (src !== c.img.getAttribute("src")) c.img.src = src;
      });
      label.textContent = "epoch " + e;
    };
    var stop = function () { clearInterval(timer); timer = null; play.textContent = "▶ play"; };
    slider.addEventListener("input", function () { showEpoch(Number(slider.value)); });
    play.addEventListener("click", function () {
      if (timer) { stop(); return; }
      if (slider.value === slider.max) { slider.value = slider.min; showEpoch(Number(slider.value)); }
      play.textContent = "❚❚ pause";
      timer = setInterval(function () {
        if (Number(slider.value) >= Number(slider.max)) { stop(); return; }
        slider.value = Number(slider.value) + 1;
        showEpoch(Number(slider.value));
      }, 700);
    });
  }

  // --- compare page: rebuild the view from window.GALLERY_RUNS (runs.js works under file://) -----
  var view = document.getElementById("compare");
  if (!view || !window.GALLERY_RUNS) return;
  var runs = {}, order = [];
  window.GALLERY_RUNS.runs.forEach(function (r) { runs[r.name] = r; order.push(r.name); });
  var pick = { a: document.getElementById("pick-a"), b: document.getElementById("pick-b") };
  var TITLES = {};

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;  // textContent: run names are never parsed as HTML
    return e;
  }
  function rowsOf(a, b) {
    var out = [], seen = {};
    ["params", "metrics"].forEach(function (part) {
      var va = {}, vb = {};
      a[part].forEach(function (kv) { va[kv[0]] = kv[1]; });
      b[part].forEach(function (kv) { vb[kv[0]] = kv[1]; });
      a[part].concat(b[part]).forEach(function (kv) {
        if (seen[kv[0]]) return;
        seen[kv[0]] = true;
        out.push([kv[0], kv[0] in va ? va[kv[0]] : "–", kv[0] in vb ? vb[kv[0]] : "–"]);
      });
    });
    return out;
  }
  function image(i) {
    return el("img", { src: i.src, width: i.w, height: i.h, alt: i.alt, class: i.pixelated ? "px" : "" });
  }
  function render(a, b) {
    view.textContent = "";
    var table = el("table", { class: "kv compare-table" }), head = el("tr");
    var corner = head.appendChild(el("th", { scope: "col" }));
    corner.appendChild(el("span", { class: "visually-hidden" }, "setting or metric"));  // a named header cell
    [a, b].forEach(function (r) {
      var th = el("th", { scope: "col" });
      th.appendChild(el("a", { href: r.page }, r.name));
      head.appendChild(th);
    });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    rowsOf(a, b).forEach(function (row) {
      var tr = body.appendChild(el("tr"));
      tr.appendChild(el("th", {}, row[0]));
      tr.appendChild(el("td", {}, row[1]));
      tr.appendChild(el("td", {}, row[2]));
    });
    view.appendChild(table);
    var ia = {}, ib = {}, keys = [];
    a.images.concat(b.images).forEach(function (i) {
      TITLES[i.key] = i.title;
      if (keys.indexOf(i.key) < 0) keys.push(i.key);
    });
    a.images.forEach(function (i) { ia[i.key] = i; });
    b.images.forEach(function (i) { ib[i.key] = i; });
    keys.forEach(function (k) {
      view.appendChild(el("h2", {}, TITLES[k]));
      var pair = view.appendChild(el("div", { class: "pair" }));
      [ia[k], ib[k]].forEach(function (i) {
        var fig = pair.appendChild(el("figure"));
        fig.appendChild(i ? image(i) : el("span", { class: "empty" }, "not available"));
      });
      if (ia[k] && ib[k]) {
        pair.classList.add("both");
        view.appendChild(swipe(ia[k], ib[k]));
      }
    });
  }
  function swipe(a, b) {  // the same markup as _compare_view.html
    var box = el("div", { class: "swipe", style: "max-width: " + a.w + "px" });
    var stack = box.appendChild(el("div", { class: "stack" }));
    stack.appendChild(el("img", { src: a.src, width: a.w, height: a.h, alt: a.alt, class: "under" }));
    var over = stack.appendChild(el("div", { class: "over", style: "clip-path: inset(0 0 0 50%)" }));
    over.appendChild(el("img", { src: b.src, width: a.w, height: a.h, alt: b.alt }));
    stack.appendChild(el("div", { class: "line", style: "left: 50%" }));
    box.appendChild(el("input", { type: "range", min: 0, max: 100, value: 50, class: "swipe-range",
                                  "aria-label": "swipe: left run to the left of the line, right run to its right" }));
    return box;
  }
  function update() {
    var a = runs[pick.a.value], b = runs[pick.b.value];
    if (a && b) render(a, b);
  }
  view.addEventListener("input", function (e) {
    if (!e.target.classList.contains("swipe-range")) return;
    var box = e.target.parentNode;
    box.querySelector(".over").style.clipPath = "inset(0 0 0 " + e.target.value + "%)";
    box.querySelector(".line").style.left = e.target.value + "%";
  });
  var query = new URLSearchParams(window.location.search);
  ["a", "b"].forEach(function (slot) {
    var name = query.get(slot);
    if (name && runs[name]) pick[slot].value = name;
    pick[slot].addEventListener("change", update);
  });
  if (query.get("a") || query.get("b")) update();
})();
