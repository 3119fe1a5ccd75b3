/* Follow Airflow's light/dark theme before the page paints (loaded synchronously in <head>).
 * Airflow's UI marks <html class="dark"> and keeps the choice in localStorage "theme" (light, dark, system);
 * inside Airflow's iframe the parent's class is the truth, standalone the stored choice or the system's. */
(function () {
  "use strict";
  function resolve() {
    try {
      var parentRoot = window.parent && window.parent !== window ? window.parent.document.documentElement : null;
      if (parentRoot && parentRoot.classList.contains("dark")) return "dark";
      if (parentRoot && parentRoot.classList.contains("light")) return "light";
    } catch (e) { /* not same-origin: fall through */ }
    var stored = null;
    try { stored = window.localStorage.getItem("theme"); } catch (e) { /* storage blocked */ }
    if (stored === "dark" || stored === "light") return stored;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function apply() {
    var theme = resolve();
    if (document.documentElement.getAttribute("data-theme") !== theme) {
      document.documentElement.setAttribute("data-theme", theme);
      document.dispatchEvent(new CustomEvent("greenflow:theme", { detail: theme }));
    }
  }
  apply();
  window.addEventListener("storage", apply);
  if (window.matchMedia) {
    var query = window.matchMedia("(prefers-color-scheme: dark)");
    if (query.addEventListener) query.addEventListener("change", apply);
  }
  try {
    if (window.parent && window.parent !== window) {
      new MutationObserver(apply).observe(window.parent.document.documentElement, { attributes: true, attributeFilter: ["class"] });
    }
  } catch (e) { /* not same-origin */ }
})();
