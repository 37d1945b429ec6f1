// The playground (templates/playground/chat.html): up to three models answer each message side by
// side, streamed token by token. POST /playground/stream with the conversation so far as JSON (each
// model's own answers) answers NDJSON lines {who: column, note|delta|done|error}; errors before
// the stream come as JSON {error: {message}}. Notes say why an answer waits (other answers ahead, a
// run training on the same machine); Stop closes the stream, which ends every answer at its next
// token. "Save transcript" posts the conversation as JSON in a hidden form field (with its CSRF token).
(function () {
  "use strict";
  var ask = document.getElementById("pg-ask");
  if (!ask) return;
  var settingsForm = document.getElementById("pg-settings");
  var turnsBox = document.getElementById("pg-turns");
  var prompt = document.getElementById("pg-prompt");
  var status = ask.querySelector("[data-pg-status]");
  var send = ask.querySelector("[data-pg-send]");
  var stop = ask.querySelector("[data-pg-stop]");
  var reset = ask.querySelector("[data-pg-reset]");
  var saveForm = document.getElementById("pg-save");
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var start = JSON.parse(document.getElementById("pg-start").textContent);
  var state = {turns: [], models: []};
  var controller = null;

  function modelSelects() { return settingsForm.querySelectorAll("[data-pg-model]"); }

  function chosenModels() {
    var out = [];
    modelSelects().forEach(function (select) { if (select.value) out.push(select.value); });
    return out;
  }

  function numberOf(id, fallback) {
    var value = parseFloat(document.getElementById(id).value);
    return isNaN(value) ? fallback : value;
  }

  function lock(locked) {
    // Models and system prompt are those of the whole conversation: fixed once it starts.
    modelSelects().forEach(function (select) { select.disabled = locked; });
    document.getElementById("pg-system").readOnly = locked;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawTurn(turn, n) {
    var empty = turnsBox.querySelector("[data-pg-empty]");
    if (empty) empty.remove();
    var article = el("article", "pg-turn");
    article.setAttribute("aria-label", "Turn " + n);
    var user = el("div", "pg-user");
    user.appendChild(el("span", "pg-who", "You · turn " + n));
    user.appendChild(el("div", "bubble", turn.prompt));
    article.appendChild(user);
    var answers = el("div", "pg-answers pg-n" + state.models.length);
    var bubbles = state.models.map(function (name, i) {
      var col = el("div", "pg-answer pg-col-" + i);
      col.appendChild(el("span", "pg-who", name));
      var bubble = el("div", "bubble", turn.answers[i] || "");
      bubble.setAttribute("data-pg-answer", String(i));
      col.appendChild(bubble);
      answers.appendChild(col);
      return bubble;
    });
    article.appendChild(answers);
    turnsBox.appendChild(article);
    return {article: article, bubbles: bubbles};
  }

  function transcript() {
    return {models: state.models, system: document.getElementById("pg-system").value,
            temperature: numberOf("pg-temperature", 0), max_tokens: Math.round(numberOf("pg-max-tokens", 256)),
            turns: state.turns};
  }

  function refreshSave() {
    if (!saveForm) return;
    saveForm.querySelector("[data-pg-transcript]").value = JSON.stringify(transcript());
    saveForm.querySelector("[data-pg-save]").disabled = state.turns.length === 0 || controller !== null;
  }

  function finish(message) {
    status.textContent = message;
    controller = null;
    send.disabled = false;
    stop.hidden = true;
    refreshSave();
  }

  function sendMessage() {
    var text = prompt.value.trim();
    if (!text) { status.textContent = "Type a message first."; return; }
    var models = state.turns.length ? state.models : chosenModels();
    if (!models.length) { status.textContent = "Choose at least one model."; return; }
    var body = transcript();
    body.models = models;
    body.prompt = text;
    state.models = models;
    var turn = {prompt: text, answers: models.map(function () { return ""; })};
    var drawn = drawTurn(turn, state.turns.length + 1);
    var ended = models.map(function () { return false; });
    var stopped = false;
    controller = new AbortController();
    status.textContent = "Waiting for the first words…";
    send.disabled = true;
    stop.hidden = false;
    stop.onclick = function () { stopped = true; controller.abort(); };
    refreshSave();

    function handle(item) {
      var i = parseInt(item.who, 10);
      var bubble = drawn.bubbles[i];
      if (!bubble) return;
      if (item.note) status.textContent = item.note;
      if (item.delta) {
        if (status.textContent.indexOf("Writing") !== 0) status.textContent = "Writing…";
        turn.answers[i] += item.delta;
        bubble.textContent = turn.answers[i];
        bubble.scrollTop = bubble.scrollHeight;
      }
      if (item.error) {
        ended[i] = true;
        bubble.parentNode.appendChild(el("p", "pg-end", "Stopped by an error: " + item.error));
      }
      if (item.done) {
        ended[i] = true;
        if (item.finish_reason === "length") bubble.parentNode.appendChild(el("p", "pg-end", "Cut at the token limit."));
      }
    }

    fetch("/playground/stream", {method: "POST", body: JSON.stringify(body), signal: controller.signal,
                                  headers: {"Content-Type": "application/json", "Accept": "application/json",
                                            "X-CSRF-Token": csrf}})
      .then(function (response) {
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (reply) {
            var said = reply.error && reply.error.message;
            throw new Error(said || "The models could not answer (" + response.status + ").");
          });
        }
        state.turns.push(turn);  // the turn counts from here on, whatever the answers become
        lock(true);
        prompt.value = "";
        return window.studioLines(response, handle).then(function () {
          finish(ended.every(Boolean) ? "All answers are complete." : "The answers ended early.");
        });
      })
      .catch(function (error) {
        if (state.turns[state.turns.length - 1] !== turn) {  // refused before any answer: not a turn
          drawn.article.remove();
          if (!state.turns.length) { state.models = []; lock(false); }
        }
        finish(stopped ? "Stopped: the answers end where they are." : error.message);
      });
  }

  ask.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!controller) sendMessage();
  });
  prompt.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); ask.requestSubmit(); }
  });
  reset.addEventListener("click", function () {
    if (controller) controller.abort();
    state = {turns: [], models: []};
    turnsBox.innerHTML = "";
    turnsBox.appendChild(el("p", "muted", "No message yet. Write one below: each model answers in its own column."))
      .setAttribute("data-pg-empty", "");
    lock(false);
    finish("");
  });
  ["pg-temperature", "pg-max-tokens", "pg-system"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", refreshSave);
  });
  if (saveForm) saveForm.addEventListener("submit", refreshSave);

  // A saved transcript continued here: its turns, models and settings come back.
  if (start.turns && start.turns.length) {
    state.models = start.models.slice();
    start.turns.forEach(function (turn, n) {
      var t = {prompt: turn.prompt, answers: turn.answers.slice()};
      state.turns.push(t);
      drawTurn(t, n + 1);
    });
    lock(true);
    status.textContent = "Continuing a saved transcript: your next message goes to the same models.";
  }
  refreshSave();
})();
