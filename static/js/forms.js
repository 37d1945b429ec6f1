/* A part of a form that applies only to one choice of a radio group:
   <fieldset data-enabled-when="source=dataset"> is disabled (greyed, not submitted, skipped by
   the keyboard) unless the radio named "source" with the value "dataset" is checked. */
(function () {
  "use strict";
  function sync(form) {
    form.querySelectorAll("[data-enabled-when]").forEach(function (part) {
      var rule = part.getAttribute("data-enabled-when").split("=");
      var picked = form.querySelector('input[name="' + rule[0] + '"]:checked');
      part.disabled = !picked || picked.value !== rule[1];
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("[data-enabled-when]")) return;
      form.addEventListener("change", function () { sync(form); });
      sync(form);
    });
  });
})();
