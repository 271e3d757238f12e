/* Renders /v1/openapi.json as a readable page: endpoints grouped by service,
   with parameters, bodies, answers and the schemas they use. No dependencies. */
"use strict";

function h(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
  return n;
}

/* A tiny Markdown subset: paragraphs, `code`, and pipe tables. */
function markdown(text) {
  const out = [];
  for (const block of String(text || "").split(/\n\n+/)) {
    const lines = block.split("\n");
    if (lines.length > 1 && lines.every((l) => l.trim().startsWith("|"))) {
      const rows = lines.filter((l) => !/^\|\s*-/.test(l)).map((l) => l.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim()));
      const [head, ...body] = rows;
      out.push(h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, body.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
    } else {
      const p = h("p");
      block.split(/(`[^`]+`)/).forEach((part) => p.append(part.startsWith("`") ? h("code", {}, part.slice(1, -1)) : part));
      out.push(p);
    }
  }
  return out;
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function typeOf(schema) {
  if (!schema) return "";
  const ref = refName(schema);
  if (ref) return h("a", { href: `#schema-${ref}` }, ref);
  if (schema.type === "array") return h("span", {}, "array of ", typeOf(schema.items));
  if (schema.type === "object" && schema.additionalProperties) return h("span", {}, "map of ", typeOf(schema.additionalProperties));
  return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "";
}

function render(spec) {
  document.getElementById("intro").replaceChildren(...markdown(spec.info.description));
  const groups = {};
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [verb, op] of Object.entries(ops)) (groups[op.tags[0]] = groups[op.tags[0]] || []).push([verb, path, op]);
  }
  const endpoints = Object.entries(groups).map(([tag, list]) => h("section", {}, h("h2", {}, tag),
    list.map(([verb, path, op]) => h("details", { class: "endpoint" },
      h("summary", {}, h("span", { class: `verb ${verb}` }, verb.toUpperCase()), " ", h("code", {}, path), " — ", op.summary),
      h("div", { class: "body" },
        ...markdown(op.description),
        op.parameters && op.parameters.length ? h("table", {}, h("caption", {}, "Parameters"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "name"), h("th", { scope: "col" }, "in"), h("th", { scope: "col" }, "type"))),
          h("tbody", {}, op.parameters.map((p) => h("tr", {}, h("td", {}, h("code", {}, p.name)), h("td", {}, p.in), h("td", {}, typeOf(p.schema)))))) : null,
        op.requestBody ? h("p", {}, "Body: ", Object.entries(op.requestBody.content).map(([type, c], i) => h("span", {}, i ? ", " : "", h("code", {}, type), " ", typeOf(c.schema)))) : null,
        h("p", {}, "Answers: ", Object.entries(op.responses).map(([code, r], i) => h("span", {}, i ? "; " : "", h("strong", {}, code), " ", r.description,
          r.content ? [" (", Object.entries(r.content).map(([type, c], j) => h("span", {}, j ? ", " : "", h("code", {}, type), " ", typeOf(c.schema))), ")"] : null))))))));
  document.getElementById("endpoints").replaceChildren(...endpoints);
  const schemas = Object.entries(spec.components.schemas).sort(([a], [b]) => a.localeCompare(b)).map(([name, s]) => h("details", { class: "endpoint", id: `schema-${name}` },
    h("summary", {}, h("code", {}, name)),
    h("div", { class: "body" },
      s.enum ? h("p", {}, "One of: ", s.enum.map((v, i) => h("span", {}, i ? ", " : "", h("code", {}, v)))) : null,
      s.description ? h("p", {}, s.description) : null,
      s.properties ? h("table", {}, h("tbody", {}, Object.entries(s.properties).map(([field, fs]) => h("tr", {}, h("td", {}, h("code", {}, field)), h("td", {}, typeOf(fs)))))) : null)));
  document.getElementById("schemas").replaceChildren(...schemas);
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) { target.open = true; target.scrollIntoView(); }
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[href^='#schema-']");
    if (a) { const t = document.getElementById(a.getAttribute("href").slice(1)); if (t) t.open = true; }
  });
}

fetch("/v1/openapi.json").then((r) => r.json()).then(render).catch((err) => {
  document.getElementById("endpoints").textContent = `Could not load the OpenAPI document: ${err.message}`;
});
