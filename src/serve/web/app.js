// mdb's page works without this script. With it, the page follows the
// server's changes: on each `change` event the current page is fetched again
// and its <main> swapped in, so an open page never needs a reload.
"use strict";
(function () {
  if (!window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var pending = false;
  function refresh() {
    if (pending) {
      return;
    }
    pending = true;
    fetch(window.location.href, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        pending = false;
        if (!text) {
          return;
        }
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        var now = document.getElementById("main");
        if (next && now) {
          now.replaceWith(next);
          document.documentElement.setAttribute("data-updated", String(Date.now()));
        }
      })
      .catch(function () { pending = false; });
  }
  var events = new EventSource("/events");
  events.addEventListener("change", refresh);
  // Leaving the page frees the connection at once (browsers allow few per host).
  window.addEventListener("pagehide", function () { events.close(); });
  // A reconnect may have missed a change: look once more.
  var opened = false;
  events.addEventListener("open", function () {
    if (opened) {
      refresh();
    }
    opened = true;
  });
})();
