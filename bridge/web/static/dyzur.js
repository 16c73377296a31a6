// dyzur's pages: the one script, served by the bridge itself (no inline script, nothing loaded
// from elsewhere). An element with data-refresh="<url>" is replaced every data-every seconds
// by what the bridge answers at that url (the queue's table), unless the reader is working in
// it (focus inside) or the tab is hidden. A session that ended sends the page to the login
// form; a failed refresh marks the element stale (its data-stale-text says so).
(function () {
  "use strict";

  function keepFresh(region) {
    var url = region.getAttribute("data-refresh");
    var every = (parseInt(region.getAttribute("data-every"), 10) || 30) * 1000;

    function later() {
      window.setTimeout(refresh, every);
    }

    function refresh() {
      if (document.hidden || region.contains(document.activeElement)) {
        later();
        return;
      }
      fetch(url, {
        credentials: "same-origin",
        headers: { "HX-Request": "true", Accept: "text/html" },
        redirect: "error",
      })
        .then(function (response) {
          if (response.status === 401) {
            var login = response.headers.get("HX-Redirect");
            window.location.assign(login || window.location.href);
            return null;
          }
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          if (html === null) {
            return;
          }
          region.innerHTML = html;
          region.classList.remove("stale");
          later();
        })
        .catch(function () {
          region.classList.add("stale");
          later();
        });
    }

    later();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < regions.length; i++) {
      keepFresh(regions[i]);
    }
  });
})();
