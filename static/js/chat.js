// The chat page's small behaviours htmx does not cover: composer keys and autosize,
// following the bottom while a reply streams, and the narrow-screen sidebar.
(function () {
  "use strict";
  var thread = document.getElementById("thread");
  var composer = document.getElementById("composer");
  var following = true;

  function input() { return document.getElementById("composer-input"); }
  function streaming() { return !!document.querySelector("#messages .status-streaming"); }
  function nearBottom() { return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80; }
  function toBottom() { thread.scrollTop = thread.scrollHeight; }

  function autosize(el) {
    el.style.height = "auto";
    el.style.height = Math.min(el.scrollHeight + 2, window.innerHeight * 0.4) + "px";
  }

  thread.addEventListener("scroll", function () { following = nearBottom(); }, { passive: true });
  toBottom();

  document.addEventListener("input", function (e) {
    if (e.target.id === "composer-input") autosize(e.target);
  });

  document.addEventListener("keydown", function (e) {
    var el = e.target;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && el.tagName === "TEXTAREA" && el.form &&
        (el.id === "composer-input" || el.form.classList.contains("edit-form"))) {
      e.preventDefault();
      if (el.id === "composer-input" && streaming()) return;
      if (el.value.trim()) el.form.requestSubmit();
    } else if (e.key === "Escape" && streaming()) {
      var stop = document.querySelector(".stop-btn");
      if (stop) stop.click();
    } else if (e.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(el.tagName)) {
      e.preventDefault();
      if (input()) input().focus();
    }
  });

  // Clear the box once the message is on its way; the server puts it back on refusal.
  document.body.addEventListener("htmx:wsAfterSend", function (e) {
    if (e.target === composer) {
      var el = input();
      el.value = "";
      autosize(el);
      following = true;
      var empty = document.getElementById("empty-state");
      if (empty) empty.remove();
    }
  });

  document.body.addEventListener("htmx:wsAfterMessage", function () {
    if (following) toBottom();
  });

  document.body.addEventListener("htmx:wsClose", function (e) {
    // A permanent refusal (signed out, conversation gone): say so instead of a dead page.
    var code = e.detail.event && e.detail.event.code;
    if (code === 4403) {
      var box = document.getElementById("composer-error");
      if (box) box.textContent = "This chat is no longer available. Reload the page.";
    }
  });

  document.addEventListener("click", function (e) {
    var toggle = e.target.closest && e.target.closest(".sidebar-toggle");
    if (toggle) {
      var chat = document.getElementById("chat");
      var open = chat.classList.toggle("sidebar-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
  });

})();
