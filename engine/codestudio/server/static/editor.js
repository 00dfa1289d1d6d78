// codestudio template editor: the admin pages' New template form, tabs, and the Definition tab.
// Every block's form is generated from its JSON Schema (GET /api/v1/blocks), so a third-party
// block gets a form without any code here. No dependencies, no build step; the DOM is built with
// createElement/textContent only, so nothing from a template is ever parsed as HTML.
"use strict";
(function () {
  const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, path, body, raw) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    let payload;
    if (raw !== undefined) { headers["Content-Type"] = "application/octet-stream"; payload = raw; }
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!response.ok) {
      const err = new Error((data && data.error && data.error.message) || response.statusText);
      err.status = response.status; err.body = data && data.error;
      throw err;
    }
    return data;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "hidden") node.hidden = true;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  // ------------------------------------------------------------------ New template (admin list page)

  const createForm = document.querySelector("[data-create-template]");
  if (createForm) {
    const idInput = createForm.querySelector("#new-id");
    const idProblem = createForm.querySelector("#new-id-problem");
    const checkId = () => {
      const v = idInput.value;
      const ok = SLUG.test(v);
      idProblem.hidden = ok || v === "";
      idProblem.textContent = ok ? "" : "an id is lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters";
      idInput.classList.toggle("invalid", !ok && v !== "");
      return ok;
    };
    idInput.addEventListener("input", checkId);
    createForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      createForm.querySelectorAll(".problem-note").forEach((n) => { n.hidden = true; n.textContent = ""; });
      const box = createForm.querySelector("[data-error]");
      box.hidden = true;
      if (!checkId()) { idProblem.hidden = false; return; }
      const f = Object.fromEntries(new FormData(createForm).entries());
      const body = { id: f.id };
      for (const k of ["label", "description", "base_image"]) if (f[k]) body[k] = f[k];
      try {
        await api("POST", "/api/v1/templates/create", body);
        location.href = `/admin/templates/${encodeURIComponent(f.id)}#definition`;
      } catch (err) {
        box.hidden = false; box.textContent = err.message;
        const fields = [];
        if (err.body && err.body.field) fields.push([err.body.field, err.body.message]);
        for (const p of (err.body && err.body.problems) || []) fields.push([p.field, p.message]);
        for (const [field, message] of fields) {
          const note = createForm.querySelector(`[data-path="${CSS.escape(field || "")}"] .problem-note`);
          if (note) { note.hidden = false; note.textContent = message; }
        }
      }
    });
  }

  // ------------------------------------------------------------------ tabs

  const tabs = document.querySelectorAll("[data-tab]");
  function showTab(name) {
    if (!document.querySelector(`[data-panel="${CSS.escape(name)}"]`)) name = "definition";
    document.querySelectorAll("[data-panel]").forEach((p) => { p.hidden = p.dataset.panel !== name; });
    tabs.forEach((t) => t.classList.toggle("current", t.dataset.tab === name));
  }
  if (tabs.length) {
    tabs.forEach((t) => t.addEventListener("click", () => { showTab(t.dataset.tab); history.replaceState(null, "", `#${t.dataset.tab}`); }));
    showTab(location.hash.slice(1) || "definition");
    window.addEventListener("hashchange", () => showTab(location.hash.slice(1) || "definition"));
  }

  const root = document.querySelector("[data-editor]");
  if (!root) return;
  const tid = root.dataset.editor;
  const base = `/api/v1/templates/${encodeURIComponent(tid)}`;
  const E = { types: {}, order: [], revision: null, doc: null, origins: [], problems: [], draft: null };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ JSON Schema -> form

  function deref(schema, defs) {
    let s = schema || {};
    for (let i = 0; s.$ref && i < 20; i++) {
      const name = s.$ref.split("/").pop();
      const rest = Object.assign({}, s); delete rest.$ref;
      s = Object.assign({}, defs[name] || {}, rest);
    }
    return s;
  }

  // The schema's alternatives other than null (pydantic writes `X | None` as anyOf [X, null]).
  function variants(schema, defs) {
    const s = deref(schema, defs);
    const alts = s.anyOf || s.oneOf;
    if (!alts) return [s];
    const kept = alts.map((v) => deref(v, defs)).filter((v) => v.type !== "null");
    return kept.map((v) => Object.assign({}, v, { default: s.default, description: s.description || v.description,
                                                  title: s.title || v.title,
                                                  examples: fitting(v, s.examples) || v.examples }));
  }

  function kindOf(s) {
    if (s.enum) return "enum";
    if (s.type === "boolean") return "boolean";
    if (s.type === "integer" || s.type === "number") return "number";
    if (s.type === "string") return "string";
    if (s.type === "array") return "array";
    if (s.type === "object" && s.properties) return "object";
    if (s.type === "object") return "map";
    return "json";
  }

  function fits(s, value) {
    const k = kindOf(s);
    if (value === undefined || value === null) return false;
    if (k === "array") return Array.isArray(value);
    if (k === "object" || k === "map") return typeof value === "object" && !Array.isArray(value);
    if (k === "number") return typeof value === "number";
    if (k === "boolean") return typeof value === "boolean";
    if (k === "string" || k === "enum") return typeof value === "string";
    return true;
  }

  const shown = (v) => (typeof v === "string" ? v : JSON.stringify(v));

  // Help text comes from the schema's `description` and `examples` (JSON Schema annotations).
  // The examples of `s` that are values of this alternative (a command's list example is not a text's).
  function fitting(s, examples) {
    if (!Array.isArray(examples)) return undefined;
    const kept = examples.filter((e) => fits(s, e));
    return kept.length ? kept : undefined;
  }

  // What an empty input shows: the default when there is one, else the first example.
  function placeholderOf(s) {
    if (s.default !== undefined && s.default !== null && s.default !== "") return `default: ${shown(s.default)}`;
    if (Array.isArray(s.examples) && s.examples.length && s.examples[0] !== null && typeof s.examples[0] !== "object") {
      return `e.g. ${shown(s.examples[0])}`;
    }
    return "";
  }

  // A list's examples are lists: its rows' placeholders come from their items; a map's from its entries.
  function rowsSchema(itemSchema, examples) {
    if (itemSchema.examples || !Array.isArray(examples)) return itemSchema;
    const items = examples.flatMap((e) => (Array.isArray(e) ? e : []));
    return items.length ? Object.assign({}, itemSchema, { examples: items }) : itemSchema;
  }
  function mapExamples(examples) {
    const entries = (Array.isArray(examples) ? examples : []).flatMap((e) =>
      (e && typeof e === "object" && !Array.isArray(e) ? Object.entries(e) : []));
    return { key: entries.length ? `e.g. ${entries[0][0]}` : "name", values: entries.map((e) => e[1]) };
  }

  let helpIds = 0;
  const VARIANT_NAMES = { array: "a list", string: "a text", number: "a number", boolean: "yes/no", object: "fields", map: "named values", enum: "a choice", json: "JSON" };

  function emptyOf(s, defs) {
    const k = kindOf(deref(s, defs));
    return { string: "", number: null, boolean: false, array: [], object: {}, map: {}, enum: (s.enum || [""])[0], json: null }[k];
  }

  // One control for `value` under schema `s`; `set(v)` records a change (undefined: the field is removed).
  // `optional`: an empty value means "not set" (the default applies) rather than an empty string.
  function control(s, defs, value, path, set, optional) {
    const k = kindOf(s);
    const hasDefault = s.default !== undefined && s.default !== null;
    if (k === "enum" || k === "boolean") {
      const options = k === "boolean" ? [true, false] : s.enum;
      const select = el("select", { "data-path-input": path });
      const at = options.findIndex((o) => o === value);
      if (optional) select.append(el("option", { value: "", text: hasDefault ? `default (${shown(s.default)})` : "(not set)" }));
      else if (at < 0) select.append(el("option", { value: "", text: "(choose)" }));  // never show a value that is not set
      options.forEach((o, i) => select.append(el("option", { value: String(i), text: shown(o) })));
      select.value = at >= 0 ? String(at) : "";
      select.addEventListener("change", () => set(select.value === "" ? undefined : options[Number(select.value)]));
      return select;
    }
    if (k === "number") {
      const input = el("input", { type: "number", "data-path-input": path, min: s.minimum, max: s.maximum,
                                  step: s.type === "integer" ? 1 : "any",
                                  placeholder: placeholderOf(s) });
      input.value = value === undefined || value === null ? "" : String(value);
      input.addEventListener("input", () => {
        const raw = input.value.trim();
        if (raw === "") { set(optional ? undefined : null); return; }
        const n = Number(raw);
        set(Number.isFinite(n) ? n : raw);
      });
      return input;
    }
    if (k === "string") {
      // A textarea for every text: values may hold several lines (and a line break in a label is
      // something the engine must refuse at its field, so it can be typed here).
      const area = el("textarea", { rows: 1, cols: 60, spellcheck: "false", "data-path-input": path,
                                    placeholder: placeholderOf(s) });
      area.value = typeof value === "string" ? value : (value === undefined || value === null ? "" : shown(value));
      const fit = () => { area.rows = Math.min(20, Math.max(1, area.value.split("\n").length)); };
      fit();
      area.addEventListener("input", () => { fit(); set(area.value === "" && optional ? undefined : area.value); });
      return area;
    }
    if (k === "array") {
      const box = el("div", { class: "rows" });
      const items = Array.isArray(value) ? value.slice() : [];
      const itemSchema = rowsSchema(s.items || {}, s.examples);
      const commit = () => set(items.length === 0 && optional ? undefined : items.slice());
      const draw = () => {
        box.replaceChildren();
        items.forEach((item, i) => {
          const row = el("div", { class: "row field", "data-path": `${path}.${i}` });
          row.append(anyControl(itemSchema, defs, item, `${path}.${i}`, (v) => { items[i] = v; commit(); }, false));
          row.append(el("button", { type: "button", class: "remove-row", title: "remove this row", text: "✕",
                                    onclick: () => { items.splice(i, 1); commit(); draw(); } }));
          row.append(el("div", { class: "problem-note", hidden: true }));
          box.append(row);
        });
        box.append(el("button", { type: "button", class: "add-row", text: "+ add",
                                  onclick: () => { items.push(emptyOf(itemSchema, defs)); commit(); draw(); } }));
      };
      draw();
      return box;
    }
    if (k === "object") {
      const obj = value && typeof value === "object" && !Array.isArray(value) ? Object.assign({}, value) : {};
      const box = el("fieldset", { class: "object" });
      const required = s.required || [];
      for (const [name, prop] of Object.entries(s.properties || {})) {
        box.append(fieldRow(name, prop, defs, required.includes(name), obj[name], `${path}.${name}`, (v) => {
          if (v === undefined) delete obj[name]; else obj[name] = v;
          set(Object.keys(obj).length === 0 && optional ? undefined : Object.assign({}, obj));
        }));
      }
      return box;
    }
    if (k === "map") {
      const pairs = value && typeof value === "object" && !Array.isArray(value) ? Object.entries(value) : [];
      const mapHints = mapExamples(s.examples);
      const valueSchema = rowsSchema(typeof s.additionalProperties === "object" ? s.additionalProperties : {},
                                     mapHints.values.length ? [mapHints.values] : undefined);
      const box = el("div", { class: "rows map" });
      const commit = () => set(pairs.length === 0 && optional ? undefined : Object.fromEntries(pairs));
      const draw = () => {
        box.replaceChildren();
        pairs.forEach((pair, i) => {
          const row = el("div", { class: "row field", "data-path": `${path}.${pair[0]}` });
          const key = el("input", { class: "map-key", placeholder: mapHints.key, "data-path-input": `${path}.#${i}` });
          key.value = pair[0];
          key.addEventListener("input", () => { pair[0] = key.value; row.dataset.path = `${path}.${key.value}`; commit(); });
          row.append(key, anyControl(valueSchema, defs, pair[1], `${path}.${pair[0]}`, (v) => { pair[1] = v; commit(); }, false));
          row.append(el("button", { type: "button", class: "remove-row", title: "remove", text: "✕",
                                    onclick: () => { pairs.splice(i, 1); commit(); draw(); } }));
          row.append(el("div", { class: "problem-note", hidden: true }));
          box.append(row);
        });
        box.append(el("button", { type: "button", class: "add-row", text: "+ add",
                                  onclick: () => { pairs.push(["", emptyOf(valueSchema, defs)]); commit(); draw(); } }));
      };
      draw();
      return box;
    }
    // Anything else: its JSON, parsed when it parses (the engine reports what does not fit).
    const area = el("textarea", { rows: 2, cols: 60, class: "json", spellcheck: "false", "data-path-input": path });
    area.value = value === undefined ? "" : JSON.stringify(value);
    area.addEventListener("input", () => {
      if (area.value.trim() === "") { set(undefined); return; }
      try { set(JSON.parse(area.value)); } catch (e) { set(area.value); }
    });
    return area;
  }

  // A control for a schema with alternatives (e.g. a command as a list or as a text): a chooser + the control.
  function anyControl(schema, defs, value, path, set, optional) {
    const alts = variants(schema, defs);
    if (alts.length <= 1) return control(alts[0] || {}, defs, value, path, set, optional);
    let chosen = Math.max(0, alts.findIndex((a) => fits(a, value)));
    const box = el("div", { class: "variants" });
    const select = el("select", { class: "variant", title: "the form of this value" });
    alts.forEach((a, i) => select.append(el("option", { value: String(i), text: VARIANT_NAMES[kindOf(a)] || `form ${i + 1}` })));
    select.value = String(chosen);
    let current = value;
    const draw = () => {
      box.replaceChildren(select, control(alts[chosen], defs, fits(alts[chosen], current) ? current : undefined, path,
                                          (v) => { current = v; set(v); }, optional));
    };
    select.addEventListener("change", () => { chosen = Number(select.value); current = undefined; set(undefined); draw(); });
    draw();
    return box;
  }

  function fieldRow(name, schema, defs, required, value, path, set) {
    const s = deref(schema, defs);
    const alts = variants(s, defs);
    const dflt = s.default !== undefined ? s.default : (alts[0] || {}).default;
    const title = s.title || (alts[0] || {}).title || name;
    const row = el("div", { class: "field", "data-path": path, "data-field": name });
    row.append(el("label", { class: "field-name", text: `${title}${required ? " *" : ""}`, title: name }));
    const input = anyControl(s, defs, value, path, set, !required);
    row.append(input);
    // Help under the field, as text (never HTML), tied to its input for assistive technology.
    const notes = [];
    const note = (cls, text) => {
      const n = el("small", { class: cls, id: `help-${++helpIds}`, text });
      notes.push(n); row.append(n);
    };
    const help = s.description || (alts[0] || {}).description;
    if (help) note("help", help);
    const examples = s.examples || (alts.length === 1 ? alts[0].examples : undefined);
    if (Array.isArray(examples) && examples.length) note("examples", `e.g. ${examples.map(shown).join(" · ")}`);
    if (dflt !== undefined && dflt !== null && dflt !== "" && !(Array.isArray(dflt) && dflt.length === 0) &&
        !(typeof dflt === "object" && !Array.isArray(dflt) && Object.keys(dflt).length === 0)) {
      note("default", `default: ${shown(dflt)}`);
    }
    if (notes.length) {
      const ids = notes.map((n) => n.id).join(" ");
      // A single input carries it; a list, a map, nested fields or a choice of forms (redrawn when the
      // form changes) is a group that carries it.
      if (!input.matches(`[data-path-input="${CSS.escape(path)}"]`)) input.setAttribute("role", "group");
      input.setAttribute("aria-describedby", ids);
    }
    row.append(el("div", { class: "problem-note", hidden: true }));
    return row;
  }

  // ------------------------------------------------------------------ the Definition tab

  function status(text, kind) {
    const box = $("save-status");
    box.hidden = !text; box.textContent = text || ""; box.className = `status ${kind || ""}`;
  }

  function changed() { status("unsaved changes", "pending"); clearProblems(); }

  function renderHeader() {
    const box = $("header-fields");
    box.replaceChildren();
    const strings = { label: "Label", description: "Description", base_image: "Base image" };
    // The same texts as the template header's fields (codestudio.template.TemplateHeader).
    const helps = {
      label: "Display name shown in lists (one line).",
      description: "What the template is for, shown to users.",
      base_image: "Image to start from; default: the codestudio base image (codestudio base build). " +
                  "Another base must provide python3 and the user codestudio (uid 1000).",
    };
    const examples = { base_image: ["registry.example.com/studio-base:2026.1"] };
    for (const [key, title] of Object.entries(strings)) {
      box.append(fieldRow(key, { type: "string", title, description: helps[key], examples: examples[key] }, {}, false,
                          E.doc[key], `h.${key}`,
                          (v) => { if (v === undefined) E.doc[key] = null; else E.doc[key] = v; changed(); }));
    }
  }

  function renderBlocks() {
    const list = $("blocks");
    list.replaceChildren();
    if (!E.doc.blocks.length) list.append(el("li", { class: "empty", text: "No blocks yet: add one." }));
    E.doc.blocks.forEach((block, i) => list.append(blockItem(block, i)));
  }

  function blockItem(block, i) {
    const info = E.types[block.type];
    const n = E.doc.blocks.length;
    const item = el("li", { class: "block", id: `block-${i}`, "data-index": i, "data-type": block.type, "data-path": `b${i}` });
    const head = el("div", { class: "block-head" },
      el("b", { class: "block-type", text: `${i + 1}. ${block.type}` }),
      info ? el("span", { class: "summary", text: ` ${info.summary || ""}` }) : null,
      info ? el("small", { class: "dist", text: ` (${info.distribution} ${info.version || ""})` }) : null,
      el("span", { class: "block-buttons" },
        el("button", { type: "button", class: "move-up", title: "move up", text: "↑", disabled: i === 0, onclick: () => move(i, -1) }),
        el("button", { type: "button", class: "move-down", title: "move down", text: "↓", disabled: i === n - 1, onclick: () => move(i, 1) }),
        el("button", { type: "button", class: "duplicate", text: "Duplicate", onclick: () => duplicate(i) }),
        el("button", { type: "button", class: "remove", text: "Remove", onclick: () => remove(i) })));
    item.append(head, el("div", { class: "block-problems problem-note", hidden: true }));
    if (!info) {
      item.classList.add("unknown");
      item.append(el("p", { class: "error", text: `Block type "${block.type}" is not installed here: the block is kept as it is ` +
                                                   "(saved unchanged), but the template cannot be built until it is installed or removed." }));
      item.append(el("pre", { class: "raw", text: JSON.stringify(block, null, 2) }));
      return item;
    }
    const schema = info.schema;
    const defs = schema.$defs || {};
    const required = schema.required || [];
    const props = schema.properties || {};
    const body = el("div", { class: "block-form" });
    for (const [name, prop] of Object.entries(props)) {
      if (name === "type") continue;
      body.append(fieldRow(name, prop, defs, required.includes(name), block[name], `b${i}.${name}`, (v) => {
        if (v === undefined) delete block[name]; else block[name] = v;
        changed();
      }));
    }
    // Keys the schema does not know (a newer or older block version): shown, so their problems have a place.
    for (const name of Object.keys(block)) {
      if (name === "type" || name in props) continue;
      body.append(fieldRow(name, { title: `${name} (not a field of this block)` }, defs, false, block[name], `b${i}.${name}`, (v) => {
        if (v === undefined) delete block[name]; else block[name] = v;
        changed();
      }));
    }
    item.append(body);
    return item;
  }

  function move(i, delta) {
    const j = i + delta;
    [E.doc.blocks[i], E.doc.blocks[j]] = [E.doc.blocks[j], E.doc.blocks[i]];
    [E.origins[i], E.origins[j]] = [E.origins[j], E.origins[i]];
    renderBlocks(); changed();
  }
  function duplicate(i) {
    E.doc.blocks.splice(i + 1, 0, JSON.parse(JSON.stringify(E.doc.blocks[i])));
    E.origins.splice(i + 1, 0, E.origins[i]);
    renderBlocks(); changed();
  }
  function remove(i) {
    E.doc.blocks.splice(i, 1); E.origins.splice(i, 1);
    renderBlocks(); changed();
  }
  function addBlock(type) {
    E.doc.blocks.push({ type }); E.origins.push(null);
    $("block-menu").hidden = true;
    renderBlocks(); changed();
    const item = $(`block-${E.doc.blocks.length - 1}`);
    if (item && item.scrollIntoView) item.scrollIntoView({ block: "nearest" });
  }

  function renderMenu() {
    const menu = $("block-menu");
    menu.replaceChildren();
    const groups = [["standard", "Standard blocks"], ["advanced", "Advanced blocks"], ["other", "Other installed blocks"]];
    for (const [group, title] of groups) {
      const types = E.order.filter((t) => E.types[t].group === group);
      if (!types.length) continue;
      const ul = el("ul", { class: "block-types", "data-group": group });
      for (const t of types) {
        const info = E.types[t];
        ul.append(el("li", {}, el("button", { type: "button", class: "add-type", "data-add-type": t, onclick: () => addBlock(t) },
          el("b", { text: t }), el("span", { text: ` ${info.summary || ""}` }),
          el("small", { text: ` ${info.distribution} ${info.version || ""}` }))));
      }
      menu.append(el("h3", { text: title }), ul);
    }
  }

  function clearProblems() {
    document.querySelectorAll("#panel-definition .problem-note").forEach((n) => { n.hidden = true; n.textContent = ""; });
    document.querySelectorAll("#panel-definition .has-problem").forEach((n) => n.classList.remove("has-problem"));
    $("problems").hidden = true; $("problems").replaceChildren();
  }

  // Each problem goes to the form field its location names (block index and field path), or the
  // nearest enclosing one that exists, or its block, or the list at the top.
  function showProblems(problems) {
    clearProblems();
    if (!problems.length) return;
    const summary = $("problems");
    summary.hidden = false;
    summary.append(el("p", { text: `${problems.length} problem(s): the template is saved as a draft and cannot be built until they are fixed.` }));
    const ul = el("ul");
    for (const p of problems) {
      ul.append(el("li", { text: p.message }));
      let path = p.block === null || p.block === undefined ? (p.field ? `h.${p.field}` : null) : `b${p.block}${p.field ? "." + p.field : ""}`;
      let target = null;
      while (path) {
        target = document.querySelector(`#panel-definition [data-path="${CSS.escape(path)}"]`);
        if (target) break;
        path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : null;
      }
      if (!target) continue;
      const note = target.matches(".block") ? target.querySelector(".block-problems")
                                            : target.querySelector(":scope > .problem-note");
      if (note) {
        // At its field the location is said by the place: only the problem itself.
        const text = p.message.replace(/^line \d+: /, "").replace(/^blocks\[\d+\] \(type: [^)]*\): /, "");
        note.hidden = false;
        note.textContent = note.textContent ? `${note.textContent}\n${text}` : text;
      }
      target.classList.add("has-problem");
    }
    summary.append(ul);
  }

  function renderFiles() {
    const table = $("files");
    table.replaceChildren(el("tr", {}, el("th", { text: "Name" }), el("th", { text: "Size" }), el("th", { text: "" })));
    for (const f of E.files) {
      table.append(el("tr", {}, el("td", {}, el("code", { text: f.name })), el("td", { text: `${f.size} bytes` }),
                      el("td", { text: f.where === "uploaded" ? "uploaded (stored when a block names it)" : "stored" })));
    }
  }

  function renderDraftState() {
    const blocked = $("build-blocked");
    const bad = E.draft && E.problems.length;
    blocked.hidden = !bad;
    blocked.textContent = bad ? `The draft has ${E.problems.length} problem(s) (see the Definition tab): fix them and save before building.` : "";
    $("build").disabled = !!bad;
    $("discard-draft").hidden = !E.draft;
  }

  function renderAll() {
    renderHeader(); renderBlocks(); renderMenu(); renderFiles(); renderDraftState();
    if (E.draft) {
      status(`A draft saved by ${E.draft.saved_by} (from version ${E.draft.base_version}) is open: it has problems and is not built.`, "draft");
      showProblems(E.problems);
    } else status("", "");
  }

  function adopt(opened) {
    E.revision = opened.revision;
    E.doc = opened.document;
    for (const k of ["label", "description", "base_image"]) if (E.doc[k] === undefined) E.doc[k] = null;
    E.origins = opened.origins.slice();
    E.problems = opened.problems || [];
    E.draft = opened.draft;
    E.files = opened.files || [];
  }

  async function load() {
    const [types, opened] = await Promise.all([api("GET", "/api/v1/blocks"), api("GET", `${base}/editor`)]);
    for (const t of types) E.types[t.type] = t;
    E.order = types.map((t) => t.type);
    adopt(opened);
    renderAll();
    root.dataset.ready = "true";
  }

  function showYaml(text) {
    const view = $("yaml");
    view.replaceChildren(...text.replace(/\n$/, "").split("\n").map((line, i) => el("li", { id: `L${i + 1}` }, el("code", { text: line }))));
  }

  async function save() {
    const button = $("save");
    button.disabled = true;
    status("saving…", "pending");
    try {
      const doc = { label: E.doc.label, description: E.doc.description, base_image: E.doc.base_image, blocks: E.doc.blocks };
      const r = await api("PUT", `${base}/editor`, { revision: E.revision, document: doc, origins: E.origins });
      E.revision = r.revision;
      E.origins = E.doc.blocks.map((_, i) => i);
      E.problems = r.problems;
      if (r.saved === "draft") {
        E.draft = { saved_by: document.getElementById("me").textContent, base_version: r.version };
        renderBlocks();
        status(`Saved as a draft: ${r.problems.length} problem(s), shown at their fields. Version ${r.version} stays the latest; the template cannot be built until they are fixed.`, "draft");
        showProblems(r.problems);
      } else {
        E.draft = null;
        renderBlocks();
        status(r.new_version ? `Saved as version ${r.version}.` : `No change: version ${r.version} is still the latest.`, "saved");
        showYaml(r.yaml);
        $("download").href = `${base}/yaml?version=${r.version}&download=true`;
        $("t-label").textContent = E.doc.label || "";
        $("t-description").textContent = E.doc.description || "";
      }
      renderDraftState();
      root.dataset.saved = String(Date.now());
    } catch (err) {
      // Nothing was stored; the edits stay in this page.
      status(`Not saved: ${err.message}`, "error");
      root.dataset.saved = String(Date.now());
    } finally { button.disabled = false; }
  }

  // ------------------------------------------------------------------ build

  function logLine(text) {
    const log = $("buildlog");
    log.hidden = false; log.textContent += `${text}\n`; log.scrollTop = log.scrollHeight;
  }

  async function refreshHistory() {
    const rows = await api("GET", `${base}/builds?limit=20`);
    const table = $("builds");
    const when = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
    table.replaceChildren(el("tr", {}, ...["Build", "Version", "Started", "Outcome", "Image", "Log"].map((h) => el("th", { text: h }))));
    for (const b of rows) {
      table.append(el("tr", {}, el("td", { text: String(b.id) }), el("td", { text: String(b.template_version || "") }),
                      el("td", { text: when(b.started_at) }), el("td", { text: b.outcome }), el("td", { text: b.image || "" }),
                      el("td", {}, el("a", { href: `${base}/builds/${b.id}/log`, target: "_blank", text: "log" }))));
    }
  }

  function showResult(result) {
    const box = $("build-result");
    box.hidden = false;
    const reused = (result.blocks || []).map((b) => el("li", { class: b.reused ? "reused" : "built", "data-block": b.block,
      text: `${b.block + 1}. ${b.type}: ${b.steps ? (b.reused ? "layers reused from the cache" : "built") : "no image steps"}` }));
    box.replaceChildren(
      el("p", {}, "Image ", el("code", { id: "build-image", text: result.image || "" }),
         ` (${result.outcome}${result.outcome === "skipped" ? ": an image with the same content exists" : ""}, ` +
         `${result.cached_steps ? result.cached_steps.length : 0} of ${result.steps || 0} steps from the cache)`),
      el("ul", { id: "build-blocks" }, reused));
  }

  async function build() {
    const log = $("buildlog");
    log.textContent = ""; log.className = "joblog"; delete log.dataset.state;
    $("build-result").hidden = true;
    let job;
    try { job = await api("POST", `${base}/build`); } catch (err) {
      logLine(`error: ${err.message}`); log.dataset.state = "failed"; log.classList.add("failed");
      return;
    }
    logLine(`job ${job.id}: ${job.kind} ${job.target}`);
    const source = new EventSource(`/api/v1/jobs/${job.id}/events`);
    source.addEventListener("line", (e) => logLine(JSON.parse(e.data)));
    source.addEventListener("end", async (e) => {
      source.close();
      const end = JSON.parse(e.data);
      if (end.state === "failed") logLine(`FAILED: ${end.error ? end.error.message : "unknown error"}`);
      else { showResult(end.result || {}); logLine("done"); }
      log.dataset.state = end.state; log.classList.add(end.state);
      try { await refreshHistory(); } catch (err) { /* the history stays as it was */ }
    });
  }

  // ------------------------------------------------------------------ files

  async function upload(event) {
    event.preventDefault();
    const box = $("file-error");
    box.hidden = true;
    const file = $("file-input").files[0];
    const name = $("file-name").value.trim() || (file ? file.name : "");
    if (!file) { box.hidden = false; box.textContent = "choose a file first"; return; }
    try {
      await api("PUT", `${base}/files?name=${encodeURIComponent(name)}`, undefined, file);
      E.files = await api("GET", `${base}/files`);
      renderFiles();
      $("file-form").reset();
    } catch (err) { box.hidden = false; box.textContent = `Not uploaded: ${err.message}`; }
  }

  $("add-block").addEventListener("click", () => { $("block-menu").hidden = !$("block-menu").hidden; });
  $("save").addEventListener("click", save);
  $("build").addEventListener("click", build);
  $("file-form").addEventListener("submit", upload);
  $("header-form").addEventListener("submit", (e) => e.preventDefault());
  $("discard-draft").addEventListener("click", async () => {
    if (!window.confirm("Discard the draft and go back to the latest version?")) return;
    await api("DELETE", `${base}/draft`);
    adopt(await api("GET", `${base}/editor`));
    renderAll();
  });
  load().catch((err) => { $("blocks").replaceChildren(el("li", { class: "error", text: `The editor could not load: ${err.message}` })); });
})();
