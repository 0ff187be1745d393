// Siren's console: small enhancements to pages that work without this file.
// 1. Times are shown in the viewer's time zone (the UTC value stays in the title).
// 2. An alert list showing its first page keeps itself current: it fetches its rows
//    (data-live) about every second and swaps them in when they changed.
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  function localize(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.textContent = format.format(d);
      }
    }
  }

  function ids(tbody) {
    var out = {};
    var links = tbody.querySelectorAll("td.title a");
    for (var i = 0; i < links.length; i++) {
      out[links[i].getAttribute("href")] = true;
    }
    return out;
  }

  function live(table) {
    var url = table.getAttribute("data-live");
    var status = document.getElementById("live-status");
    var last = null;
    var stopped = false;

    function schedule() {
      if (!stopped) {
        window.setTimeout(tick, 1000);
      }
    }

    function tick() {
      if (document.hidden) {
        schedule();
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (resp) {
          if (resp.status === 401 || resp.status === 403) {
            stopped = true;
            if (status) { status.textContent = "Updates stopped: log in again to see new alerts."; }
            return null;
          }
          return resp.ok ? resp.text() : null;
        })
        .then(function (html) {
          if (html === null || html === last) { return; }
          last = html;
          var doc = new DOMParser().parseFromString("<table>" + html + "</table>", "text/html");
          var fresh = doc.querySelector("tbody");
          var current = table.querySelector("tbody");
          if (!fresh || !current) { return; }
          var before = ids(current);
          var added = 0;
          var rows = fresh.querySelectorAll("tr");
          for (var i = 0; i < rows.length; i++) {
            var a = rows[i].querySelector("td.title a");
            if (a && !before[a.getAttribute("href")]) {
              rows[i].className = "fresh";
              added++;
            }
          }
          localize(fresh);
          var adopted = document.importNode(fresh, true);
          // Keep keyboard focus on the same link when the rows are swapped.
          var focused = document.activeElement && current.contains(document.activeElement)
            ? document.activeElement.getAttribute("href") : null;
          current.replaceWith(adopted);
          if (focused) {
            var again = adopted.querySelector('a[href="' + focused.replace(/"/g, "") + '"]');
            if (again) { again.focus(); }
          }
          if (added > 0 && status) {
            status.textContent = added === 1 ? "1 new alert." : added + " new alerts.";
          }
        })
        .catch(function () { /* offline or restarting: try again next time */ })
        .then(schedule);
    }

    schedule();
  }

  function start() {
    localize(document);
    var tables = document.querySelectorAll("table[data-live]");
    for (var i = 0; i < tables.length; i++) {
      live(tables[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
