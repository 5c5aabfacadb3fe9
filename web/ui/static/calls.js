// The call pages' enhancements (they work without this file): the phone's position and photo previews on
// the filing form; the live BPMN diagram (bpmn-js) on a call's page. Texts come from the page (translated).
(function () {
  "use strict";

  function filingForm(form) {
    var button = form.querySelector("[data-locate]");
    var status = form.querySelector("[data-locate-status]");
    if (button && navigator.geolocation) {
      button.hidden = false;
      button.addEventListener("click", function () {
        status.textContent = button.getAttribute("data-msg-finding");
        navigator.geolocation.getCurrentPosition(function (pos) {
          form.querySelector("[name=latitude]").value = pos.coords.latitude.toFixed(6);
          form.querySelector("[name=longitude]").value = pos.coords.longitude.toFixed(6);
          status.textContent = button.getAttribute("data-msg-found")
            .replace("{m}", String(Math.round(pos.coords.accuracy || 0)));
        }, function () {
          status.textContent = button.getAttribute("data-msg-failed");
        }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 60000});
      });
    }
    var input = form.querySelector("input[type=file][name=photos]");
    var previews = form.querySelector("[data-previews]");
    if (input && previews && window.URL && URL.createObjectURL) {
      input.addEventListener("change", function () {
        previews.innerHTML = "";
        Array.prototype.forEach.call(input.files, function (file) {
          if (!/^image\//.test(file.type)) { return; }
          var li = document.createElement("li");
          var img = document.createElement("img");
          img.src = URL.createObjectURL(file);
          img.alt = file.name;
          li.appendChild(img);
          previews.appendChild(li);
        });
        previews.hidden = previews.children.length === 0;
      });
    }
    form.addEventListener("submit", function () {
      // one tap files one call (the form's key makes a second send harmless anyway)
      var submit = form.querySelector("button[type=submit]");
      window.setTimeout(function () { submit.disabled = true; submit.setAttribute("aria-busy", "true"); }, 0);
    });
  }

  function diagram(box) {
    var message = box.querySelector("[data-diagram-message]");
    if (!window.BpmnJS || !window.HUYING || !window.HUYING.fetchJSON) { return; }
    var viewer = new window.BpmnJS({container: box.querySelector(".canvas")});
    var marked = [];
    var version = null;

    function mark(completed, active) {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      marked.forEach(function (m) { canvas.removeMarker(m[0], m[1]); });
      marked = [];
      function add(id, cls) {
        if (registry.get(id)) { canvas.addMarker(id, cls); marked.push([id, cls]); }
      }
      Object.keys(completed || {}).forEach(function (id) { if (active.indexOf(id) < 0) { add(id, "hy-done"); } });
      (active || []).forEach(function (id) { add(id, "hy-active"); });
      box.setAttribute("data-active", (active || []).join(" "));
    }

    function load() {
      return window.HUYING.fetchJSON(box.getAttribute("data-src")).then(function (d) {
        return viewer.importXML(d.xml).then(function () {
          version = d.version;
          var canvas = viewer.get("canvas");
          canvas.zoom("fit-viewport");
          mark(d.completed, d.active);
          // on a phone the whole diagram is too small to read: start at the step the call is at
          var here = (d.active || []).map(function (id) { return viewer.get("elementRegistry").get(id); })
            .filter(Boolean)[0];
          if (here && box.clientWidth < 640) {
            canvas.zoom(0.8);
            canvas.scrollToElement(here, {top: 120, bottom: 120, left: 80, right: 80});
          }
          box.classList.add("ready");
          box.querySelector(".diagram-tools").hidden = false;
        });
      });
    }
    load().catch(function () { message.textContent = box.getAttribute("data-msg-failed"); });

    box.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var canvas = viewer.get("canvas");
        var how = b.getAttribute("data-zoom");
        if (how === "fit") { canvas.zoom("fit-viewport"); } else { canvas.zoom(canvas.zoom() * (how === "in" ? 1.25 : 0.8)); }
      });
    });

    // the "where it is now" fragment carries the trace: move the markers when it is reloaded
    document.addEventListener("huying:refreshed", function (e) {
      var trace = e.target.querySelector && e.target.querySelector("[data-trace]");
      if (!trace || !box.classList.contains("ready")) { return; }
      if (String(version) !== trace.getAttribute("data-version")) { load(); return; }
      mark(JSON.parse(trace.getAttribute("data-completed")), JSON.parse(trace.getAttribute("data-active")));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-filing]").forEach(filingForm);
    var box = document.getElementById("call-diagram");
    if (box) { diagram(box); }
  });
})();
