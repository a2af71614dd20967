// The API page: renders /openapi.json as tables, with DOM nodes only (the page's
// Content-Security-Policy runs no inline code, and no text from the document is ever
// parsed as markup).
"use strict";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function refName(ref) {
  return ref.split("/").pop();
}

// A paragraph of the document's prose: `code` spans become <code>, the rest stays text.
function prose(tag, text, className) {
  const node = el(tag, undefined, className);
  String(text || "").split("`").forEach((part, index) => {
    node.append(index % 2 ? el("code", part) : document.createTextNode(part));
  });
  return node;
}

// A type text with each shape's name linked to its section below.
function typeNode(schema) {
  const node = el("span");
  for (const part of typeText(schema).split(/([A-Z][A-Za-z]+(?:View|Body))/)) {
    if (/^[A-Z][A-Za-z]+(View|Body)$/.test(part)) {
      const link = el("a", part);
      link.href = "#schema-" + part;
      node.append(link);
    } else {
      node.append(document.createTextNode(part));
    }
  }
  return node;
}

// A short type text for a schema: "number ≥ 0 ≤ 1000000 or null", "SessionView", "list of …".
function typeText(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.anyOf) return schema.anyOf.map(typeText).join(" or ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") return "list of " + typeText(schema.items);
  if (schema.type === "object" && schema.additionalProperties && schema.additionalProperties !== true && !schema.properties) {
    return "object of " + typeText(schema.additionalProperties);
  }
  const parts = [schema.type || "any"];
  const bounds = [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"],
    ["minLength", "length ≥"], ["maxLength", "length ≤"]];
  for (const [key, sign] of bounds) {
    if (schema[key] !== undefined) parts.push(sign + " " + schema[key]);
  }
  return parts.join(" ");
}

function row(cells, header) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el(header ? "th" : "td");
    if (cell instanceof Node) td.append(cell); else td.textContent = cell;
    tr.append(td);
  }
  return tr;
}

function table(headers, rows) {
  const t = el("table");
  t.append(row(headers, true));
  for (const r of rows) t.append(row(r, false));
  return t;
}

function fieldTable(schema) {
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties || {}).map(([name, property]) => [
    el("code", name),
    typeNode(property),
    required.has(name) ? "yes" : "no",
    property.description || (property.default !== undefined ? "default " + JSON.stringify(property.default) : ""),
  ]);
  return table(["field", "type", "required", "meaning"], rows);
}

function contentNode(content) {
  const node = el("span");
  for (const [type, media] of Object.entries(content || {})) {
    node.append(document.createTextNode(type + ": "), typeNode(media.schema));
  }
  return node;
}

function operation(path, method, op) {
  const section = el("section", undefined, "op");
  section.id = op.operationId;
  const title = el("h3");
  title.append(el("span", method.toUpperCase(), "method " + method), el("span", path));
  section.append(title, prose("p", op.summary), prose("p", op.description, "access"));
  if (op.parameters && op.parameters.length) {
    section.append(el("h4", "Parameters"));
    section.append(table(["name", "in", "type", "required", "meaning"], op.parameters.map((p) => [
      el("code", p.name), p.in, typeNode(p.schema), p.required ? "yes" : "no", p.description || "",
    ])));
  }
  if (op.requestBody) {
    section.append(el("h4", "Body" + (op.requestBody.required ? "" : " (may be empty)")));
    section.append(el("p"));
    section.lastChild.append(contentNode(op.requestBody.content));
  }
  section.append(el("h4", "Answers"));
  section.append(table(["status", "meaning", "body"], Object.entries(op.responses).map(([status, answer]) => [
    el("span", status, "status"), answer.description, contentNode(answer.content),
  ])));
  return section;
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " — REST API " + doc.info.version;
  const intro = document.getElementById("intro");
  for (const paragraph of (doc.info.description || "").split("\n\n")) intro.append(prose("p", paragraph));
  const index = el("ul");
  const operations = document.getElementById("operations");
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const link = el("a", method.toUpperCase() + " " + path);
      link.href = "#" + op.operationId;
      const item = el("li");
      item.append(link, document.createTextNode(" — " + op.summary));
      index.append(item);
      operations.append(operation(path, method, op));
    }
  }
  document.getElementById("index").append(index);
  const shapes = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    const section = el("section", undefined, "shape");
    section.id = "schema-" + name;
    section.append(el("h3", name));
    if (schema.description) section.append(prose("p", schema.description));
    if (schema.properties) section.append(fieldTable(schema));
    else section.append(el("p", typeText(schema)));
    shapes.append(section);
  }
}

fetch("openapi.json")
  .then((response) => {
    if (!response.ok) throw new Error("openapi.json: HTTP " + response.status);
    return response.json();
  })
  .then(render)
  .catch((error) => { document.getElementById("error").textContent = String(error); });
