/* Dataset upload: drag and drop, and a progress bar while the file is sent.
 * Without JavaScript the same form posts normally; this only improves it. */
(function () {
  "use strict";

  function formatBytes(n) {
    var units = ["bytes", "KB", "MB", "GB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function errorMessage(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) { return body.error.message; }
    } catch (e) { /* not JSON: fall through */ }
    if (xhr.status === 413) { return "The file is larger than the upload limit."; }
    return "The upload failed (HTTP " + xhr.status + "). Please try again.";
  }

  function setup(form) {
    var input = form.querySelector("#f-file");
    var zone = form.querySelector("#dropzone");
    var chosen = form.querySelector("#dropzone-file");
    var errorBox = form.querySelector("#upload-error");
    var progress = form.querySelector("#upload-progress");
    var bar = form.querySelector("#upload-progress-bar");
    var text = form.querySelector("#upload-progress-text");
    var submit = form.querySelector("#upload-submit");
    var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

    function showChosen() {
      var file = input.files && input.files[0];
      chosen.textContent = file ? file.name + " (" + formatBytes(file.size) + ")" : "";
    }

    function showError(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      progress.hidden = true;
      submit.disabled = false;
    }

    input.addEventListener("change", showChosen);
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        showChosen();
      }
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.hidden = true;
      if (!input.files || !input.files.length) {
        showError("Choose a dataset file to upload (or drop it on the box).");
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("X-CSRF-Token", token);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) { return; }
        var pct = Math.round((e.loaded / e.total) * 100);
        bar.style.width = pct + "%";
        text.textContent = pct < 100
          ? "Uploading… " + pct + "% (" + formatBytes(e.loaded) + " of " + formatBytes(e.total) + ")"
          : "Uploaded. Saving…";
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          var body = JSON.parse(xhr.responseText);
          text.textContent = body.message;
          window.location.assign(body.url);
        } else {
          showError(errorMessage(xhr));
        }
      });
      xhr.addEventListener("error", function () {
        showError("The connection was lost during the upload. Check your network and try again.");
      });
      submit.disabled = true;
      progress.hidden = false;
      bar.style.width = "0";
      text.textContent = "Starting the upload…";
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (form) { setup(form); }
  });
})();
