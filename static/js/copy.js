// Copy buttons, on every page. A button with data-copy="#id" copies the value of that field
// or the text of that element; the Copy button of a code block in a reply (model output,
// where the sanitizer keeps no attributes of ours) copies its code. Without clipboard
// access (a site on plain http) the text is selected instead, for Ctrl+C.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy], .code-block .copy-btn");
  if (!button) return;
  const source = button.dataset.copy
    ? document.querySelector(button.dataset.copy)
    : button.closest(".code-block").querySelector("pre");
  if (!source) return;
  const text = "value" in source ? source.value : source.innerText;
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(source);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    if (source.select) source.select();
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
});
