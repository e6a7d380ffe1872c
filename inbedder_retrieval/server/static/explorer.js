// The explorer page: plain JS over the server's own API (no libraries, no network beyond it).
"use strict";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#843c39", "#7b4173",
                 "#3182bd", "#e6550d", "#31a354", "#756bb1"];
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let indexes = [];

function status(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

async function api(method, path, body) {
  const headers = {"Content-Type": "application/json"};
  const key = $("key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    const known = error.known ? " (known: " + error.known.join(", ") + ")" : "";
    throw new Error((error.message || response.statusText) + known);
  }
  return data;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function currentIndex() {
  return indexes.find((index) => index.name === $("index").value);
}

async function loadIndexes() {
  try {
    indexes = (await api("GET", "/v1/indexes")).indexes;
  } catch (error) {
    status("Could not list the indexes: " + error.message, true);
    return;
  }
  const select = $("index");
  select.replaceChildren(...indexes.map((index) => new Option(index.name + " (" + index.documents + " documents)", index.name)));
  if (!indexes.length) status("The server serves no index (start it with --index PATH).", true);
  else status(indexes.length + " index(es) served.");
  fillInstructions();
}

function fillInstructions() {
  const index = currentIndex();
  const options = index ? index.instructions.map((spec) => new Option(spec.instruction, spec.instruction)) : [];
  $("cluster-instruction").replaceChildren(...options);
}

async function search(event) {
  event.preventDefault();
  const index = currentIndex();
  if (!index) return;
  const query = $("query").value;
  const k = Number($("k").value) || 5;
  status("Searching " + index.name + " under " + index.instructions.length + " instructions...");
  const columns = $("columns");
  columns.replaceChildren();
  const started = performance.now();
  const results = await Promise.allSettled(index.instructions.map((spec) =>
    api("POST", "/v1/indexes/" + encodeURIComponent(index.name) + "/search", {query, instruction: spec.instruction, k})));
  results.forEach((result, position) => {
    const column = element("div", "column");
    column.append(element("h2", "", index.instructions[position].instruction));
    if (result.status === "rejected") {
      column.append(element("p", "error", result.reason.message));
    } else {
      for (const hit of result.value.hits) {
        const row = element("div", "hit");
        row.append(element("span", "score", hit.score.toFixed(3)), document.createTextNode(hit.text));
        const meta = Object.entries(hit.metadata || {}).map(([key, value]) => key + "=" + value).join(" ");
        row.append(element("div", "meta", hit.id + (meta ? "  " + meta : "")));
        column.append(row);
      }
    }
    columns.append(column);
  });
  status("Top " + k + " under every instruction in " + Math.round(performance.now() - started) + " ms.");
}

async function cluster(event) {
  event.preventDefault();
  const index = currentIndex();
  if (!index) return;
  const body = {instruction: $("cluster-instruction").value, sample: Number($("cluster-sample").value) || 60};
  if ($("cluster-k").value) body.k = Number($("cluster-k").value);
  status("Clustering (the model answers every text: this takes a while)...");
  let result;
  try {
    result = await api("POST", "/v1/indexes/" + encodeURIComponent(index.name) + "/cluster", body);
  } catch (error) {
    status("Clustering failed: " + error.message, true);
    return;
  }
  drawScatter(result.points);
  const list = $("explanations");
  list.replaceChildren(...result.clusters.map((item) => {
    const card = element("div", "cluster");
    card.style.borderLeftColor = COLOURS[item.cluster % COLOURS.length];
    card.append(element("h3", "", "Cluster " + item.cluster + " - " + item.size + " texts"));
    card.append(element("div", "", "terms: " + (item.top_terms.join(", ") || "(none)")));
    card.append(element("div", "", "answers: " + (item.common_answers.map(([answer, count]) => answer + " (" + count + ")").join(", ") || "(none)")));
    const examples = element("ul");
    for (const text of item.examples) examples.append(element("li", "", text));
    card.append(examples);
    return card;
  }));
  status(result.points.length + " documents in " + result.k + " clusters under '" + result.instruction + "'.");
}

function drawScatter(points) {
  const svg = $("scatter");
  svg.replaceChildren();
  const size = 420, margin = 20, scale = (size - 2 * margin) / 2;
  for (const point of points) {
    const dot = document.createElementNS(SVG_NS, "circle");
    dot.setAttribute("cx", String(margin + (point.x + 1) * scale));
    dot.setAttribute("cy", String(margin + (1 - point.y) * scale));
    dot.setAttribute("r", "5");
    dot.setAttribute("fill", COLOURS[point.cluster % COLOURS.length]);
    dot.setAttribute("class", "point");
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = "[" + point.cluster + "] " + point.answer + " - " + point.text;
    dot.append(title);
    svg.append(dot);
  }
}

function show(view) {
  $("view-search").hidden = view !== "search";
  $("view-cluster").hidden = view !== "cluster";
  $("tab-search").classList.toggle("active", view === "search");
  $("tab-cluster").classList.toggle("active", view === "cluster");
}

$("key").value = sessionStorage.getItem("inbedder-key") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("inbedder-key", $("key").value); loadIndexes(); });
$("index").addEventListener("change", fillInstructions);
$("search-form").addEventListener("submit", search);
$("cluster-form").addEventListener("submit", cluster);
$("tab-search").addEventListener("click", () => show("search"));
$("tab-cluster").addEventListener("click", () => show("cluster"));
loadIndexes();
