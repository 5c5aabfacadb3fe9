// Huying UI: small progressive enhancements. Pages work without this file.
(function () {
  "use strict";
  var H = window.HUYING || {};

  // fetch() with the session's CSRF token on writes
  H.fetchJSON = function (url, options) {
    options = options || {};
    options.headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    if (options.method && options.method !== "GET") { options.headers["X-CSRF-Token"] = H.csrf; }
    if (options.body && typeof options.body !== "string" && !(options.body instanceof FormData)) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.body);
    }
    options.credentials = "same-origin";
    return fetch(url, options).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) { throw body; } return body; });
    });
  };

  // Live regions: <div data-refresh="/ui/...fragment" data-interval="15"> is reloaded in place,
  // only while the page is visible; the server renders the fragment with the same template.
  function refresh(el) {
    if (document.hidden) { return; }
    fetch(el.getAttribute("data-refresh"), {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = document.createElement("template");
        fresh.innerHTML = html;  // compare as the browser serializes it, not the server's raw text
        if (fresh.innerHTML !== el.innerHTML) {
          el.innerHTML = fresh.innerHTML;
          el.setAttribute("data-refreshed", String(Date.now()));
          el.dispatchEvent(new CustomEvent("huying:refreshed", {bubbles: true}));
        }
      }).catch(function () { /* offline for a moment: try again next time */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      var seconds = parseFloat(el.getAttribute("data-interval") || "15");
      setInterval(function () { refresh(el); }, seconds * 1000);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(el); } });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  });
  window.HUYING = H;
})();
