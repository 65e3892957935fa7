// Attaching images to the composer: pick, paste or drop; each file is uploaded at once to
// the conversation (the server checks it) and shown as a pending thumbnail to send or remove.
(function () {
  "use strict";
  var composer = document.getElementById("composer");
  var picker = document.getElementById("image-input");
  var tray = document.getElementById("pending-images");
  if (!composer || !picker || !tray) return;
  var url = picker.closest("[data-attach-url]").dataset.attachUrl;
  var sent = null; // the thumbnails of the message on its way, until the server answers

  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; }
    catch (e) { return ""; }
  }

  function say(text) {
    var box = document.getElementById("composer-error");
    if (box) box.textContent = text;
  }

  function upload(file) {
    var body = new FormData();
    body.append("image", file, file.name || "pasted-image");
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "HX-Request": "true" }
    }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) { say(text || "The image could not be attached."); return; }
        tray.insertAdjacentHTML("beforeend", text);
        htmx.process(tray.lastElementChild);
      });
    }).catch(function () { say("The image could not be uploaded. Try again."); });
  }

  function uploadAll(files) {
    var images = Array.prototype.filter.call(files || [], function (f) { return f.type.indexOf("image/") === 0 || !f.type; });
    if (!images.length) return false;
    say("");
    images.reduce(function (done, file) { return done.then(function () { return upload(file); }); }, Promise.resolve());
    return true;
  }

  picker.addEventListener("change", function () {
    uploadAll(picker.files);
    picker.value = "";
  });

  composer.addEventListener("paste", function (e) {
    if (e.clipboardData && uploadAll(e.clipboardData.files)) e.preventDefault();
  });

  composer.addEventListener("dragover", function (e) {
    if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, "Files") >= 0) {
      e.preventDefault();
      composer.classList.add("dragging");
    }
  });
  composer.addEventListener("dragleave", function () { composer.classList.remove("dragging"); });
  composer.addEventListener("drop", function (e) {
    composer.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      e.preventDefault();
      uploadAll(e.dataTransfer.files);
    }
  });

  // The thumbnails leave the tray with the message; a refusal puts them back.
  document.body.addEventListener("htmx:wsAfterSend", function (e) {
    if (e.target !== composer) return;
    say("");
    sent = Array.prototype.slice.call(tray.children);
    sent.forEach(function (li) { li.remove(); });
  });
  document.body.addEventListener("htmx:wsAfterMessage", function (e) {
    if (!sent) return;
    var text = String(e.detail && e.detail.message || "");
    if (/id="composer-error"[^>]*>\s*[^<\s]/.test(text)) {
      sent.forEach(function (li) { tray.appendChild(li); });
      sent = null;
    } else if (/class="msg msg-user"/.test(text)) {
      sent = null;
    }
  });
})();
