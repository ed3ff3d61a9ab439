// Gather the facts the browser tests check, from the page as Chromium rendered it.
// Run with driver.execute_script after the page, MathJax and images are ready.
// Also marks up to MAX_PROBES visible elements with Chinese text (data-cjk-probe=i), whose
// fonts the Python side then asks DevTools for.
const MAX_PROBES = 60;
const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/g;
const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;

const visible = (el) => {
  if (!el.getClientRects().length) return false;
  const style = getComputedStyle(el);
  return style.visibility !== "hidden" && style.display !== "none";
};
const insideAny = (node, selector) => {
  const el = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
  return !!(el && el.closest(selector));
};
const textNodes = (root) => {
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) out.push(n);
  return out;
};

// --- math: every .math element typeset by MathJax, no TeX left as text, no TeX errors
const mathEls = Array.from(document.querySelectorAll(".math"));
const untypeset = mathEls
  .filter((el) => !el.querySelector("mjx-container"))
  .map((el) => el.textContent.trim().slice(0, 120));
const CODE = "pre, code, script, style, textarea, mjx-container, .highlight, .output";
const TEX_LEFT = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*[\\^_{}][^$\n]*\$/;
const rawTex = textNodes(article)
  .filter((n) => !insideAny(n, CODE) && TEX_LEFT.test(n.textContent))
  .map((n) => n.textContent.trim().slice(0, 120));
const math = {
  elements: mathEls.length,
  mjx: document.querySelectorAll("mjx-container").length,
  untypeset: untypeset.slice(0, 10),
  untypesetCount: untypeset.length,
  errors: Array.from(document.querySelectorAll("mjx-merror, [data-mjx-error]"))
    .map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 120)),
  rawTex: rawTex.slice(0, 10),
  mathjax: !!(window.MathJax && window.MathJax.version && window.MathJax.startup),
};

// --- images: loaded, alt text
const images = Array.from(document.images).map((img) => ({
  src: img.getAttribute("src"),
  alt: img.getAttribute("alt"),
  inArticle: article.contains(img),
  complete: img.complete,
  naturalWidth: img.naturalWidth,
  visible: visible(img),
}));

// --- headings of the article, in document order
const headings = Array.from(article.querySelectorAll("h1, h2, h3, h4, h5, h6")).map((h) => ({
  level: Number(h.tagName[1]),
  text: h.textContent.replace(/[#¶]\s*$/, "").trim().slice(0, 80),
}));

// --- Chinese text: visible elements whose own text has Han characters
const owners = new Map();
for (const n of textNodes(document.body)) {
  const han = (n.textContent.match(HAN) || []).length;
  if (!han || insideAny(n, "script, style, noscript, title")) continue;
  const el = n.parentElement;
  if (!visible(el)) continue;
  owners.set(el, (owners.get(el) || 0) + han);
}
const candidates = Array.from(owners.entries());
const step = Math.max(1, candidates.length / MAX_PROBES);
const probes = [];
for (let i = 0; i < candidates.length && probes.length < MAX_PROBES; i += step) {
  const [el, han] = candidates[Math.floor(i)];
  el.setAttribute("data-cjk-probe", String(probes.length));
  probes.push({
    han,
    text: Array.from(el.childNodes)
      .filter((c) => c.nodeType === Node.TEXT_NODE)
      .map((c) => c.textContent).join("").trim().slice(0, 60),
    tag: el.tagName.toLowerCase(),
  });
}

// --- notebook page buttons
const hrefs = (sel) => Array.from(document.querySelectorAll(sel)).map((a) => a.getAttribute("href"));
const launch = {
  present: !!document.querySelector(".dropdown-launch-buttons"),
  links: hrefs(".dropdown-launch-buttons a[href]"),
};
const download = {
  present: !!document.querySelector(".dropdown-download-buttons"),
  links: hrefs(".dropdown-download-buttons a[href]"),
  print: !!document.querySelector(".dropdown-download-buttons .btn-download-pdf-button"),
};

// --- resources from other hosts (the site must work offline, e.g. in a classroom)
const elsewhere = (u) => {
  try { return new URL(u, location.href).origin !== location.origin; } catch (e) { return true; }
};
const REFS = "script[src], link[href][rel~=stylesheet], link[href][rel~=preload], " +
  "link[href][rel~=modulepreload], link[href][rel~=icon], img[src], iframe[src], " +
  "source[src], video[src], audio[src], object[data], embed[src]";
const external = Array.from(new Set([
  ...Array.from(document.querySelectorAll(REFS)).map((el) => el.src || el.href || el.data),
  ...performance.getEntriesByType("resource").map((e) => e.name),
])).filter((u) => u && !u.startsWith("data:") && !u.startsWith("blob:") && elsewhere(u));

const text = article.innerText;
return {
  title: document.title,
  lang: document.documentElement.lang,
  math,
  images,
  headings,
  probes,
  hanInPage: candidates.reduce((s, [, h]) => s + h, 0),
  launch,
  download,
  codeCells: article.querySelectorAll("div.cell").length,
  external,
  glyphWarnings: (text.match(/[^\n]*(Glyph \d+|missing from (current )?font)[^\n]*/g) || []).slice(0, 5),
  textLength: text.length,
};
