// Gallery behaviour: sortable tables, the epoch slider, the compare page. Plain DOM, no network.
(function () {
  "use strict";
  var root = document.documentElement;
  root.className = root.className.replace("no-js", "js");

  // --- sortable tables: click (or Enter on) a header; empty cells always sort last ----------------
  function sortKey(row, i) {
    var cell = row.cells[i];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }
  function sortBy(table, i, th) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a, i), y = sortKey(b, i);
      if (x === "" || y === "") return (x === "") - (y === "");
      var nx = Number(x), ny = Number(y);
      var c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
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

  // --- epoch slider on run pages ----------------------------------------------------------------
  document.querySelectorAll("figure.frames").forEach(function (fig) {
    var frames = JSON.parse(fig.getAttribute("data-frames"));
    var img = fig.querySelector("img"), input = fig.querySelector("input"), out = fig.querySelector("output");
    input.addEventListener("input", function () {
      var f = frames[Number(input.value)];
      img.src = f.src; img.alt = f.alt; out.textContent = "epoch " + f.epoch;
    });
  });

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
    head.appendChild(el("th"));
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
    });
  }
  function update() {
    var a = runs[pick.a.value], b = runs[pick.b.value];
    if (a && b) render(a, b);
  }
  var query = new URLSearchParams(window.location.search);
  ["a", "b"].forEach(function (slot) {
    var name = query.get(slot);
    if (name && runs[name]) pick[slot].value = name;
    pick[slot].addEventListener("change", update);
  });
  if (query.get("a") || query.get("b")) update();
})();
