// smits console: dates in the viewer's time zone. Pages work without this file (they show UTC).
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
  });
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var at = new Date(node.getAttribute("datetime"));
      if (isNaN(at.getTime()) || node.dataset.localised) { return; }
      node.title = node.textContent;
      node.textContent = format.format(at);
      node.dataset.localised = "1";
    });
    root.querySelectorAll(".tz").forEach(function (node) { node.textContent = zone; });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localise(event.target); });
})();
