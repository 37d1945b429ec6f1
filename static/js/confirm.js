/* A form with data-confirm="question" is sent only once the person answers yes in the browser's
   own dialog: one-click actions that cannot be undone (delete a webhook, rotate its secret,
   revoke an API key, remove a member, cancel a run or a sweep). Without JavaScript the form is
   sent as before; the server's checks (owner only, CSRF) are the same either way. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);
})();
