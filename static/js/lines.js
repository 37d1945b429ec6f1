/* The lines of a streamed NDJSON response (the inference process's answers as they come):
   studioLines(response, handle) calls handle(item) for each JSON line as soon as it arrives and
   returns a promise that ends with the stream. Used by "Try it" and the playground. */
(function () {
  "use strict";
  window.studioLines = function (response, handle) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function next() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, {stream: true});
        var lines = buffer.split("\n");
        buffer = lines.pop();
        lines.forEach(function (line) { if (line.trim()) handle(JSON.parse(line)); });
        return next();
      });
    }
    return next();
  };
})();
