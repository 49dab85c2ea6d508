// scim-hub dashboard: copy buttons, confirmations, select-all, and the rule editor's live count.
// Plain JavaScript, no build step; every page works without it except these conveniences.
"use strict";
(function () {
  const csrf = () => (document.querySelector("main[data-csrf]") || {}).dataset?.csrf || "";

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (_) {
      document.execCommand("copy");
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });

  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("change", (event) => {
    const name = event.target.dataset.selectAll;
    if (!name) return;
    document.querySelectorAll(`input[type=checkbox][name="${name}"]`).forEach((box) => {
      box.checked = event.target.checked;
    });
  });

  async function preview(rule) {
    const response = await fetch("/admin/card-settings/preview", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify({ rule }),
      credentials: "same-origin",
    });
    return response.json();
  }

  function describe(result) {
    if (result.error) return ["error", result.error];
    if (result.matches === null || result.matches === undefined) return ["", ""];
    const users = result.matches === 1 ? "user" : "users";
    return ["ok", `matches ${result.matches} current ${users} (of ${result.activeUsers} active)`];
  }

  document.querySelectorAll("input[data-preview]").forEach((input) => {
    const status = document.getElementById(input.dataset.preview);
    let timer = null;
    let asked = 0;
    const update = () => {
      const mine = ++asked;
      preview(input.value).then((result) => {
        if (mine !== asked) return; // a newer keystroke's answer wins
        const [kind, text] = describe(result);
        status.className = "rule-status " + kind;
        status.textContent = text;
      }).catch(() => { status.textContent = "could not count matches"; });
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 250); });
    if (input.value) update();
  });

  document.querySelectorAll("[data-count-rule]").forEach((span) => {
    preview(span.dataset.countRule).then((result) => {
      span.textContent = describe(result)[1] ? `(${describe(result)[1]})` : "";
    });
  });
})();
