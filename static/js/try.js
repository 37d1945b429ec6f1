// "Try it" on a run page: both answers stream in word by word (POST <form data-try-stream>,
// NDJSON lines {who, note|delta|done|error}; errors before the stream come as JSON), notes say why an answer waits (other answers ahead,
// a run training on the same machine), and Stop ends both answers. Without fetch streaming the
// form posts as usual and the page comes back with both answers.
(function () {
  "use strict";
  if (!window.fetch || !window.ReadableStream || !window.TextDecoder || !window.AbortController) return;

  function answers(form) {
    var section = form.closest("section");
    var box = section.querySelector("#try-answers");
    box.innerHTML = "";
    box.appendChild(section.querySelector("#try-columns").content.cloneNode(true));
    return box;
  }

  function ask(form) {
    var status = form.querySelector("[data-try-status]");
    var stop = form.querySelector("[data-try-stop]");
    var submit = form.querySelector("button[type=submit]");
    var box = answers(form);
    var bubble = {base: box.querySelector('[data-try-answer="base"]'), tuned: box.querySelector('[data-try-answer="tuned"]')};
    var ended = {base: false, tuned: false};
    var controller = new AbortController();
    var stopped = false;
    status.textContent = "Waiting for the first words…";
    submit.disabled = true;
    stop.hidden = false;
    stop.onclick = function () { stopped = true; controller.abort(); };

    function handle(item) {
      var target = bubble[item.who];
      if (!target) return;
      if (item.note) status.textContent = item.note;
      if (item.delta) {
        if (!target.textContent) status.textContent = "Writing…";
        target.textContent += item.delta;
        target.scrollTop = target.scrollHeight;
      }
      if (item.error) { target.textContent += "\n[" + item.error + "]"; ended[item.who] = true; }
      if (item.done) ended[item.who] = true;
    }

    function finish(message) {
      status.textContent = message;
      submit.disabled = false;
      stop.hidden = true;
    }

    fetch(form.getAttribute("data-try-stream"), {method: "POST", body: new FormData(form), signal: controller.signal,
                                                 headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            var said = body.error && body.error.message;
            throw new Error(said || "The answers could not be generated (" + response.status + ").");
          });
        }
        return window.studioLines(response, handle);
      })
      .then(function () { finish(ended.base && ended.tuned ? "Both answers are complete." : "The answers ended early."); })
      .catch(function (error) {
        finish(stopped ? "Stopped: the answers end where they are." : error.message);
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-try-stream]")) return;
    event.preventDefault();
    ask(form);
  });
})();
