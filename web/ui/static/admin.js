// Administration pages: enhancements only (every page works without this file).
// * org/user forms: offer only the parents and units that suit the chosen kind/role;
// * version diff: the two diagrams side by side (bpmn-js) with added/changed/removed elements marked;
// * routing table: the decision table in dmn-js, saved as a new version of the bundle.
(function () {
  "use strict";
  var H = window.HUYING || {};
  // the page's translated messages (templates/admin/layout.html)
  var messages = document.getElementById("admin-messages");
  var t = messages ? JSON.parse(messages.textContent) : {};

  // ---- options that suit the kind ----------------------------------------------------------------
  function limitOptions(select, allowed) {
    Array.prototype.forEach.call(select.querySelectorAll("option[data-kind]"), function (o) {
      var ok = !allowed || allowed.indexOf(o.getAttribute("data-kind")) >= 0;
      o.hidden = !ok;
      o.disabled = !ok;
    });
    var current = select.options[select.selectedIndex];
    if (current && current.disabled) {
      var first = Array.prototype.find.call(select.options, function (o) { return !o.disabled && o.value; });
      if (first) { select.value = first.value; }
    }
  }

  function unitForm(form) {
    var kind = form.querySelector("select[name=kind]"), parent = form.querySelector("select[name=parent]");
    if (!kind || !parent) { return; }
    var update = function () { limitOptions(parent, [kind.value === "community" ? "street" : "district"]); };
    kind.addEventListener("change", update);
    update();
  }

  function userForm(form) {
    var role = form.querySelector("select[name=role]"), unit = form.querySelector("select[name=unit]");
    if (!role || !unit) { return; }
    var update = function () {
      var chosen = role.options[role.selectedIndex];
      var kind = chosen && chosen.getAttribute("data-kind");
      limitOptions(unit, kind ? [kind] : null);
    };
    role.addEventListener("change", update);
    update();
  }

  // ---- diagrams side by side -----------------------------------------------------------------------
  function showDiagram(el) {
    if (typeof window.BpmnJS === "undefined") { return; }
    var marks = JSON.parse(el.getAttribute("data-marks") || "{}");
    fetch(el.getAttribute("data-bpmn-url"), {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (xml) {
        var viewer = new window.BpmnJS({container: el});
        return viewer.importXML(xml).then(function () {
          var canvas = viewer.get("canvas"), registry = viewer.get("elementRegistry");
          Object.keys(marks).forEach(function (id) {
            if (registry.get(id)) { canvas.addMarker(id, "diff-" + marks[id]); }
          });
          canvas.zoom("fit-viewport");
          el.setAttribute("data-rendered", "true");
        });
      })
      .catch(function () { el.textContent = t.diagramFailed; });
  }

  // ---- the routing table in dmn-js ---------------------------------------------------------------
  function routingEditor(container) {
    var source = document.getElementById(container.getAttribute("data-source"));
    var form = document.getElementById("routing-save"), result = document.getElementById("routing-result");
    if (!source || !form) { return; }
    if (typeof window.DmnJS === "undefined") { result.textContent = t.noEditor; return; }
    var xml = JSON.parse(source.textContent);
    var readable = container.innerHTML;
    container.innerHTML = "";
    var labels = document.getElementById("dmn-translations");
    var dictionary = labels ? JSON.parse(labels.textContent) : {};
    var translate = function (template, replacements) {
      replacements = replacements || {};
      return (dictionary[template] || template).replace(/{([^}]+)}/g, function (all, key) {
        return replacements[key] !== undefined ? replacements[key] : all;
      });
    };
    var modeler = new window.DmnJS({container: container, common: {keyboard: {bindTo: container}},
                                    decisionTable: {additionalModules: [{translate: ["value", translate]}]}});
    H.dmnModeler = modeler;
    modeler.importXML(xml).then(function () {
      var table = modeler.getViews().filter(function (v) { return v.type === "decisionTable"; })[0];
      return table ? modeler.open(table) : null;
    }).then(function () {
      container.setAttribute("data-ready", "true");
      document.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
    }).catch(function (err) {
      container.innerHTML = readable;
      result.className = "error";
      result.textContent = t.noEditor + " " + (err && err.message ? err.message : "");
    });

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      result.className = "";
      result.textContent = t.saving;
      modeler.saveXML({format: true}).then(function (saved) {
        var data = new FormData(form);
        data.append("dmn", saved.xml);
        return fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                                   headers: {"Accept": "application/json", "X-CSRF-Token": H.csrf}});
      }).then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, body: body}; });
      }).then(function (res) {
        var body = res.body;
        result.className = res.ok ? "ok" : "error";
        if (!res.ok) {
          result.textContent = t.failed + (body.message || "");
          return;
        }
        result.textContent = body.created ? body.message + " " : t.unchanged + " ";
        if (body.created) {
          form.querySelector("input[name=base_version]").value = body.version;
          result.setAttribute("data-version", body.version);
        }
        if (body.diff) {
          var a = document.createElement("a");
          a.href = body.diff;
          a.textContent = t.diff;
          result.appendChild(a);
        }
      }).catch(function (err) {
        result.className = "error";
        result.textContent = t.failed + (err && err.message ? err.message : String(err));
      }).then(function () { button.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-unit-form]").forEach(unitForm);
    document.querySelectorAll("form[data-user-form]").forEach(userForm);
    document.querySelectorAll(".bpmn-canvas[data-bpmn-url]").forEach(showDiagram);
    var editor = document.getElementById("dmn-editor");
    if (editor) { routingEditor(editor); }
  });
  window.HUYING = H;
})();
