// The chat page's small behaviours htmx does not cover: composer keys and autosize,
// copy buttons, following the bottom while a reply streams, the narrow-screen sidebar,
// and inserting messages that a websocket frame names but the page does not have yet.
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

  // A frame names a message or sidebar entry this page lacks: insert it where it says.
  document.body.addEventListener("htmx:oobErrorNoTarget", function (e) {
    var el = e.detail.content;
    var where = el && el.getAttribute && el.getAttribute("data-insert");
    if (!where) return;
    var parts = where.split(":");
    var parent = document.querySelector(parts[1]);
    if (!parent) return;
    if (parts[0] === "prepend") parent.prepend(el); else parent.append(el);
    htmx.process(el);
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
    var button = e.target.closest && e.target.closest(".copy-btn, .copy-reply");
    if (button) {
      var source = button.classList.contains("copy-btn")
        ? button.closest(".code-block").querySelector("pre")
        : button.closest(".msg").querySelector(".msg-body");
      navigator.clipboard.writeText(source.innerText).then(function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      });
      return;
    }
    var toggle = e.target.closest && e.target.closest(".sidebar-toggle");
    if (toggle) {
      var chat = document.getElementById("chat");
      var open = chat.classList.toggle("sidebar-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
  });

})();
