// The console works without script; this only saves a click or two.
// - The operator's tenant switcher applies the choice at once.
// - A page marked data-refresh (a running bulk operation) reloads itself until done.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    var button = select.form.querySelector("button[type=submit]");
    if (button) { button.classList.add("visually-hidden"); }
    select.addEventListener("change", function () { select.form.submit(); });
  });
  var refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    var seconds = parseInt(refresh.getAttribute("data-refresh"), 10) || 2;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
