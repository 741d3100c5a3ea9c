// The search page of `mmrec index serve`: POST /search (text or keys), then POST /metadata for the
// hits' captions, images and codes. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function showError(message) {
  const line = String(message).split("\n")[0];
  $("error").textContent = line;
  $("error").title = line;
  $("error").hidden = false;
}

async function post(path, body) {
  const resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (!resp.ok) {
    const error = new Error((data && data.error) || `HTTP ${resp.status}`);
    error.status = resp.status;
    throw error;
  }
  return data;
}

function token(level, code) {
  return `<${String.fromCharCode(97 + level)}_${code}>`;
}

function sharedPrefix(a, b) {
  let n = 0;
  while (a && b && n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function card(hit, meta, top, rank) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.key = hit.key;
  if (meta.image || (meta.url && /^https?:|^\//.test(meta.url))) {
    const img = document.createElement("img");
    img.src = meta.image || meta.url;
    img.alt = meta.caption ? `image of ${meta.caption}` : `image of ${hit.key}`;
    img.loading = "lazy";
    img.addEventListener("error", () => img.remove());
    li.append(img);
  }
  const head = document.createElement("div");
  head.className = "head";
  const key = document.createElement("span");
  key.className = "key";
  key.textContent = `${rank + 1}. ${hit.key}`;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(4);
  score.title = "similarity score";
  head.append(key, score);
  li.append(head);
  if (meta.caption) {
    const caption = document.createElement("p");
    caption.className = "caption";
    caption.textContent = meta.caption;
    li.append(caption);
  }
  if (meta.codes) {
    const shared = rank > 0 ? sharedPrefix(meta.codes, top) : 0;
    const codes = document.createElement("div");
    codes.className = "codes";
    codes.setAttribute("aria-label", `codes ${meta.codes.join(" ")}`);
    meta.codes.forEach((code, level) => {
      const span = document.createElement("span");
      span.textContent = token(level, code);
      if (level < shared) span.className = "same";
      codes.append(span);
    });
    li.append(codes);
    const badge = document.createElement("span");
    badge.className = "badge";
    if (rank === 0) {
      badge.classList.add("top");
      badge.textContent = "top hit: the others are marked by the code prefix they share with it";
    } else if (shared > 0) {
      li.classList.add("shared");
      badge.textContent = `shares ${shared} code level${shared > 1 ? "s" : ""} with the top hit`;
    }
    if (badge.textContent) li.append(badge);
  }
  const more = document.createElement("button");
  more.type = "button";
  more.className = "link";
  more.textContent = "neighbours";
  more.setAttribute("aria-label", `neighbours of ${hit.key}`);
  more.addEventListener("click", () => { $("q").value = hit.key; $("mode").value = "key"; search(); });
  li.append(more);
  return li;
}

async function query(text, mode, k) {
  if (mode === "key") return post("/search", { keys: [text], k });
  if (mode === "text") return post("/search", { text: [text], k });
  try {
    return await post("/search", { keys: [text], k });
  } catch (err) {
    if (err.status === 422 && /unknown key/.test(err.message) && info && info.text_queries) {
      return post("/search", { text: [text], k });
    }
    throw err;
  }
}

async function search() {
  const text = $("q").value.trim();
  const k = Number($("k").value);
  $("error").hidden = true;
  $("results").replaceChildren();
  if (!text) { showError("type a text or an item key"); return; }
  $("status").textContent = "searching…";
  try {
    const found = await query(text, $("mode").value, k);
    const hits = found.results[0];
    const meta = hits.length ? await post("/metadata", { ids: hits.map((h) => h.row) }) : [];
    const top = meta.length ? meta[0].metadata.codes : null;
    $("results").replaceChildren(...hits.map((hit, i) => card(hit, meta[i].metadata, top, i)));
    $("status").textContent = `${hits.length} results in ${found.took_ms} ms`;
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  }
}

async function start() {
  $("search").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement !== $("q")) { event.preventDefault(); $("q").focus(); }
  });
  try {
    info = await (await fetch("/info")).json();
    $("k").max = info.max_k;
    const parts = [`${info.name}: ${info.kind} index of ${info.n} items (dim ${info.dim}, ${info.metric})`,
      info.text_queries ? "text queries on" : "text queries off: search by item key",
      info.codes ? "codes shown" : "no codes file", info.metadata ? "metadata shown" : "no metadata"];
    $("about").textContent = parts.join(" · ");
    $("search").dataset.ready = "1";
  } catch (err) {
    showError(`cannot reach the server: ${err.message}`);
  }
  $("q").focus();
}

start();
