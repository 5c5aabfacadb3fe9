// Work queue and work-item page: small enhancements. Everything works without this file.
(function () {
  "use strict";

  function ids(root) {
    var found = {};
    root.querySelectorAll("[data-item-id]").forEach(function (el) { found[el.getAttribute("data-item-id")] = true; });
    return found;
  }

  // The queue reloads itself (app.js, data-refresh): mark rows that just arrived and say so, politely.
  function watchQueue() {
    var queue = document.getElementById("work-queue");
    var live = document.getElementById("work-live");
    if (!queue) { return; }
    var known = ids(queue);
    queue.addEventListener("huying:refreshed", function () {
      var now = ids(queue), fresh = 0;
      queue.querySelectorAll("[data-item-id]").forEach(function (el) {
        if (!known[el.getAttribute("data-item-id")]) { el.classList.add("row-new"); fresh += 1; }
      });
      known = now;
      if (live) {
        live.textContent = fresh ? live.getAttribute("data-new-text") : live.getAttribute("data-changed-text");
      }
    });
  }

  // /work/7#act-dispatch (a link from the queue): open that action's form and put the focus in it.
  function openFromHash() {
    var id = window.location.hash.slice(1);
    if (!id || id.indexOf("act-") !== 0) { return; }
    var target = document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      var first = target.querySelector("form input:not([type=hidden]), form select, form textarea");
      target.scrollIntoView();
      if (first) { first.focus({preventScroll: true}); }
    }
  }

  // The lead department cannot also assist: grey out its checkbox in the same form.
  function leadExcludesAssist() {
    document.querySelectorAll("select[data-department-select][name=lead]").forEach(function (select) {
      var form = select.form;
      function sync() {
        form.querySelectorAll("input[type=checkbox][name=assists]").forEach(function (box) {
          var isLead = box.value === select.value;
          if (isLead) { box.checked = false; }
          box.disabled = isLead;
          box.closest("label").classList.toggle("disabled", isLead);
        });
      }
      select.addEventListener("change", sync);
      sync();
    });
  }

  // Merge: typing a number clears the suggested choice, choosing a suggestion clears the typed number.
  function mergeChoices() {
    document.querySelectorAll("input[name=into_other]").forEach(function (input) {
      var form = input.form;
      input.addEventListener("input", function () {
        if (input.value.trim()) {
          form.querySelectorAll("input[type=radio][name=into]").forEach(function (r) { r.checked = false; });
        }
      });
      form.querySelectorAll("input[type=radio][name=into]").forEach(function (r) {
        r.addEventListener("change", function () { if (r.checked) { input.value = ""; } });
      });
    });
  }

  // A form that came back with errors: bring it into view.
  function focusErrors() {
    var box = document.querySelector("details.action [role=alert]");
    if (box) {
      var field = box.closest("details").querySelector("[aria-invalid=true]");
      (field || box).scrollIntoView({block: "center"});
      if (field) { field.focus({preventScroll: true}); }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    watchQueue();
    leadExcludesAssist();
    mergeChoices();
    document.querySelectorAll("a[data-open]").forEach(function (a) {
      a.addEventListener("click", function () {
        var d = document.getElementById(a.getAttribute("data-open"));
        if (d) { d.open = true; }
      });
    });
    window.addEventListener("hashchange", openFromHash);
    if (document.querySelector("details.action [role=alert]")) { focusErrors(); } else { openFromHash(); }
  });
})();
