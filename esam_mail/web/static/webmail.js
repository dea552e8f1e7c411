// Webmail compose form: tell the reader at once when the chosen files are too large
// (the server checks again; this only saves a long upload that would be refused).
(function () {
  "use strict";
  var form = document.getElementById("compose-form");
  var input = document.getElementById("attachments");
  var note = document.getElementById("attachments-client-error");
  if (!form || !input || !note) { return; }
  var limit = parseInt(form.getAttribute("data-max-size"), 10) || 0;
  function check() {
    var total = 0;
    for (var i = 0; i < input.files.length; i++) { total += input.files[i].size; }
    var tooBig = limit > 0 && total * 4 / 3 > limit;
    note.textContent = tooBig ? form.getAttribute("data-too-big") : "";
    note.classList.toggle("hidden", !tooBig);
    input.setAttribute("aria-invalid", tooBig ? "true" : "false");
    return !tooBig;
  }
  input.addEventListener("change", check);
  form.addEventListener("submit", function (ev) { if (!check()) { ev.preventDefault(); } });
}());
