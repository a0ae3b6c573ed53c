// The five stages on the public REST API, as the Flutter app runs them: sign in, palette, photos
// (straight to the presigned URLs), instances, protect, rules, apply with live progress, output set.
// Every value from the service is put on the page as text (never as HTML).

import { ApiError, api, saveToken, savedToken, uploadFile, watchJob } from "./api.js";

const state = {
  preset: null, // the chosen preset, as GET /presets/{id} returns it
  concepts: new Set(), // concepts chosen in the palette
  protect: new Set(),
  files: [], // File objects waiting for upload
  job: null, // the latest job as the API returned it
  choices: {}, // {"<idx>": {"<Concept>": {"<number>": "keep" | "lock" | "exclude"}}}
  actions: {}, // {"<Concept>": {action, ...params}} as edited
  rules: [],
  watch: null, // AbortController of the open event stream
};

const $ = (id) => document.getElementById(id);

/** Build an element: attributes (on* are listeners), then children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// --- errors and status ------------------------------------------------------------------------------

function showError(error) {
  const box = $("alert");
  box.replaceChildren();
  if (error instanceof ApiError) box.append(h("code", {}, error.code), ": ", error.message);
  else box.append(String(error && error.message ? error.message : error));
  box.hidden = false;
}

function clearError() {
  $("alert").hidden = true;
}

/** Run an action of the page: errors end up in the alert box, never as an unhandled rejection. */
function guarded(fn) {
  return async (...args) => {
    clearError();
    try {
      await fn(...args);
    } catch (e) {
      showError(e);
    }
  };
}

// --- account ----------------------------------------------------------------------------------------

async function refreshAccount() {
  const me = await api.me();
  const account = $("account");
  account.replaceChildren(
    h("span", { id: "plan" }, `Plan: ${me.plan}`),
    h("span", { id: "credits" }, `Credits: ${me.credits}`),
    h("span", {}, `Jobs: ${me.active_jobs}/${me.max_concurrency}`),
    h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
  );
  return me;
}

async function signIn() {
  const created = await api.signIn();
  saveToken(created.token);
  await start();
}

function signOut() {
  saveToken(null);
  location.reload();
}

function showModelNotice(model) {
  const notice = $("model-notice");
  notice.hidden = model.meaningful;
  if (model.meaningful) return;
  notice.replaceChildren(
    "Masks come from a tiny random-weight SAM3 model (",
    h("code", {}, model.name),
    "): the pipeline runs for real, but the instances it finds are not meaningful. Point the service at real " +
      "SAM3 weights with ",
    h("code", {}, "S3_SAM3_CHECKPOINT=/path/to/sam3"),
    " (a Hugging Face checkpoint directory), or put the checkpoint in the Hugging Face cache, and restart it.",
  );
}

// --- 1. palette -------------------------------------------------------------------------------------

async function loadPresets() {
  const { presets, model } = await api.presets();
  showModelNotice(model);
  const select = $("preset");
  select.replaceChildren(
    ...presets.map((p) => h("option", { value: p.id }, p.phase > 1 ? `${p.name} (phase ${p.phase})` : p.name)),
  );
  select.disabled = false;
  await choosePreset(select.value);
}

async function choosePreset(id) {
  state.preset = await api.preset(id);
  state.concepts = new Set();
  state.protect = new Set(state.preset.protect_defaults);
  state.actions = {};
  renderConcepts();
  renderProtect();
  renderRuleEditor();
  renderOutputSets();
  await loadRules();
}

function renderConcepts() {
  const box = $("concepts");
  box.replaceChildren(
    ...state.preset.concepts.map((c) =>
      h(
        "button",
        {
          type: "button",
          class: "chip",
          "aria-pressed": state.concepts.has(c.id) ? "true" : "false",
          dataset: { concept: c.id },
          onclick: () => toggleConcept(c),
        },
        c.name,
      ),
    ),
  );
}

function toggleConcept(concept) {
  if (state.concepts.has(concept.id)) {
    state.concepts.delete(concept.id);
    delete state.actions[concept.id];
  } else {
    state.concepts.add(concept.id);
    state.actions[concept.id] = { action: concept.default_action, ...concept.default_params };
  }
  renderConcepts();
  renderRuleEditor();
  updateButtons();
}

// --- 2. photos --------------------------------------------------------------------------------------

function addFiles(list) {
  for (const file of list) if (file.type.startsWith("image/") || file.type === "") state.files.push(file);
  renderFiles();
  updateButtons();
}

function renderFiles(progress = {}) {
  $("file-list").replaceChildren(
    ...state.files.map((f, i) =>
      h(
        "li",
        {},
        h("span", {}, `${f.name} (${Math.ceil(f.size / 1024)} kB)`),
        h("progress", { max: "1", value: String(progress[i] || 0), "aria-label": `Upload of ${f.name}` }),
      ),
    ),
  );
}

async function uploadAll() {
  const files = state.files;
  const created = await api.createJob(state.preset.id, files.length);
  $("job-line").textContent = `Job ${created.job_id}: uploading ${files.length} photo(s)`;
  const bars = $("file-list").querySelectorAll("progress");
  await Promise.all(
    created.upload_urls.map((target) =>
      uploadFile(target, files[target.idx], (fraction) => {
        bars[target.idx].value = fraction;
      }),
    ),
  );
  state.job = await api.confirmUpload(created.job_id);
  state.choices = {};
  $("job-line").textContent = `Job ${state.job.job_id}: ${state.job.status}, ${state.job.total_items} photo(s)`;
  renderInstances();
  await refreshAccount();
  updateButtons();
}

// --- 3. instances -----------------------------------------------------------------------------------

async function analyze() {
  const concepts = [...state.concepts];
  state.job = await api.analyze(state.job.job_id, concepts);
  $("analyze").disabled = true;
  await followJob((job) => job.items.every((item) => item.analysis !== "pending"));
  renderInstances();
  updateButtons();
}

function choice(idx, concept, number) {
  return ((state.choices[idx] || {})[concept] || {})[number] || "keep";
}

function setChoice(idx, concept, number, value) {
  const item = (state.choices[idx] ||= {});
  const per = (item[concept] ||= {});
  per[number] = value;
  renderInstances();
}

function renderInstances() {
  const box = $("instances");
  if (!state.job) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(
    ...state.job.items.map((item) => {
      const overlays = item.instances.map((inst) =>
        h("div", {
          class: "overlay",
          hidden: true,
          dataset: { key: `${inst.concept}#${inst.number}` },
          style: inst.mask_url ? `mask-image: url("${cssUrl(inst.mask_url)}")` : null,
        }),
      );
      const photo = h(
        "div",
        { class: "photo" },
        h("img", { src: item.input_url, alt: `Photo ${item.idx + 1}` }),
        ...overlays,
      );
      const show = (key, on) => {
        for (const o of overlays) if (o.dataset.key === key) o.hidden = !on;
      };
      const cards = item.instances.map((inst) => {
        const key = `${inst.concept}#${inst.number}`;
        const current = choice(item.idx, inst.concept, inst.number);
        const name = `choice-${item.idx}-${inst.concept}-${inst.number}`;
        const radio = (value, label) =>
          h(
            "label",
            {},
            h("input", {
              type: "radio",
              name,
              value,
              checked: current === value,
              onchange: () => setChoice(item.idx, inst.concept, inst.number, value),
            }),
            ` ${label}`,
          );
        return h(
          "div",
          {
            class: `card ${current === "exclude" ? "excluded" : ""} ${current === "lock" ? "locked" : ""}`,
            dataset: { concept: inst.concept, number: String(inst.number), idx: String(item.idx) },
            onmouseenter: () => show(key, true),
            onmouseleave: () => show(key, false),
            onfocusin: () => show(key, true),
            onfocusout: () => show(key, false),
          },
          h(
            "fieldset",
            {},
            h("legend", {}, `${inst.concept} #${inst.number}`, h("span", { class: "hint" }, ` ${inst.score.toFixed(2)}`)),
            radio("keep", "check"),
            radio("lock", "lock"),
            radio("exclude", "exclude"),
          ),
        );
      });
      const analysis = { none: "not analyzed", pending: "analyzing...", done: "", failed: "analysis failed" }[
        item.analysis
      ];
      return h(
        "div",
        { class: "item", dataset: { idx: String(item.idx) } },
        h("h3", {}, `Photo ${item.idx + 1}`, analysis ? ` (${analysis})` : ""),
        photo,
        item.analysis === "done" && cards.length === 0 ? h("p", { class: "hint" }, "No instances found.") : null,
        h("div", { class: "cards" }, ...cards),
      );
    }),
  );
}

function cssUrl(url) {
  return url.replace(/["\\\n]/g, (c) => encodeURIComponent(c));
}

/** The execute's `instances`: per photo and concept, the numbers to exclude and to lock. */
function instanceChoices() {
  const out = {};
  for (const [idx, concepts] of Object.entries(state.choices)) {
    for (const [concept, numbers] of Object.entries(concepts)) {
      const exclude = [];
      const lock = [];
      for (const [number, value] of Object.entries(numbers)) {
        if (value === "exclude") exclude.push(Number(number));
        if (value === "lock") lock.push(Number(number));
      }
      if (exclude.length || lock.length) ((out[idx] ||= {})[concept] = { exclude, lock });
    }
  }
  return out;
}

// --- 4. protect -------------------------------------------------------------------------------------

function protectLayers() {
  const layers = state.preset.concepts.filter((c) => c.protectable).map((c) => c.id);
  for (const layer of state.preset.protect_layers || state.preset.protect_defaults) {
    if (!layers.includes(layer)) layers.push(layer);
  }
  return layers;
}

function renderProtect() {
  $("protect").replaceChildren(
    ...protectLayers().map((layer) =>
      h(
        "button",
        {
          type: "button",
          class: "chip",
          "aria-pressed": state.protect.has(layer) ? "true" : "false",
          dataset: { layer },
          onclick: () => {
            if (state.protect.has(layer)) state.protect.delete(layer);
            else state.protect.add(layer);
            renderProtect();
          },
        },
        layer,
      ),
    ),
  );
}

// --- 5. rules ---------------------------------------------------------------------------------------

function renderRuleEditor() {
  const box = $("rule-editor");
  const concepts = [...state.concepts];
  if (!concepts.length) {
    box.replaceChildren(h("p", { class: "hint" }, "Choose concepts in the palette to set what happens to them."));
    return;
  }
  const specs = state.preset.actions;
  box.replaceChildren(
    ...concepts.map((concept) => {
      const entry = state.actions[concept];
      const actionSelect = h(
        "select",
        {
          "aria-label": `Action for ${concept}`,
          dataset: { concept, field: "action" },
          onchange: (e) => {
            state.actions[concept] = { action: e.target.value };
            renderRuleEditor();
          },
        },
        ...Object.keys(specs).map((name) => h("option", { value: name, selected: name === entry.action }, name)),
      );
      const spec = specs[entry.action] || { params: {}, description: "" };
      const fields = Object.entries(spec.params).map(([name, param]) => paramField(concept, name, param, entry));
      return h(
        "div",
        { class: "rule-concept", dataset: { concept } },
        h("h3", {}, concept),
        h("label", {}, "Action ", actionSelect),
        h("p", { class: "hint" }, spec.description),
        h("div", { class: "params" }, ...fields),
      );
    }),
  );
}

/** One parameter input built from the published spec (type, default, range, choices). */
function paramField(concept, name, param, entry) {
  const id = `param-${concept}-${name}`.replace(/\s+/g, "_");
  const value = entry[name] ?? param.default;
  const set = (v) => {
    if (v === "" || v === undefined) delete state.actions[concept][name];
    else state.actions[concept][name] = v;
  };
  let input;
  if (param.type === "enum") {
    input = h(
      "select",
      { id, onchange: (e) => set(e.target.value) },
      param.required ? null : h("option", { value: "" }, "(default)"),
      ...param.enum.map((v) => h("option", { value: v, selected: v === value }, v)),
    );
    if (param.required && value === undefined) set(param.enum[0]);
  } else if (param.type === "color") {
    // A colour name from the published list or #rrggbb; the picker writes #rrggbb into the text field.
    const listId = `${id}-names`;
    const text = h("input", {
      id,
      type: "text",
      list: listId,
      value: value ?? "",
      placeholder: param.format || "",
      onchange: (e) => set(e.target.value.trim() || undefined),
    });
    const picker = h("input", {
      type: "color",
      "aria-label": `${name} picker`,
      value: /^#[0-9a-f]{6}$/i.test(value || "") ? value : "#ffffff",
      oninput: (e) => {
        text.value = e.target.value;
        set(e.target.value);
      },
    });
    input = h("span", { class: "color" }, text, picker, h("datalist", { id: listId }, ...(param.names || []).map((n) => h("option", { value: n }))));
    if (param.required && value === undefined) {
      text.value = "#ffffff";
      set("#ffffff");
    }
  } else if (param.type === "number" || param.type === "integer") {
    input = h("input", {
      id,
      type: "number",
      step: param.type === "integer" ? "1" : "any",
      min: param.minimum,
      max: param.maximum,
      value: value ?? "",
      onchange: (e) => set(e.target.value === "" ? undefined : Number(e.target.value)),
    });
  } else {
    input = h("input", { id, type: "text", value: value ?? "", onchange: (e) => set(e.target.value || undefined) });
  }
  return h("label", { for: id, title: param.description }, name + (param.required ? " *" : ""), input);
}

function ruleBody() {
  return {
    name: $("rule-name").value.trim() || "Playground rule",
    preset_id: state.preset.id,
    concepts: state.actions,
    protect: [...state.protect],
  };
}

async function loadRules() {
  const listing = await api.rules();
  state.rules = listing.rules.filter((r) => r.preset_id === state.preset.id);
  $("rule-slots").textContent = `(${listing.rule_slots_used} of ${listing.rule_slots_max} slots used)`;
  $("saved-rules").replaceChildren(
    ...(state.rules.length ? state.rules : [null]).map((r) =>
      r ? h("option", { value: r.rule_id }, r.name) : h("option", { value: "" }, "none saved"),
    ),
  );
  updateButtons();
}

async function saveRule() {
  const selected = state.rules.find((r) => r.rule_id === $("saved-rules").value);
  const body = ruleBody();
  if (selected && selected.name === body.name) await api.updateRule(selected.rule_id, body);
  else await api.createRule(body);
  await loadRules();
}

function loadRule() {
  const rule = state.rules.find((r) => r.rule_id === $("saved-rules").value);
  if (!rule) return;
  $("rule-name").value = rule.name;
  state.actions = structuredClone(rule.concepts);
  state.concepts = new Set(Object.keys(rule.concepts));
  state.protect = new Set(rule.protect);
  renderConcepts();
  renderProtect();
  renderRuleEditor();
  updateButtons();
}

async function deleteRule() {
  const id = $("saved-rules").value;
  if (id) await api.deleteRule(id);
  await loadRules();
}

// --- 6. apply ---------------------------------------------------------------------------------------

function renderOutputSets() {
  $("output-set").replaceChildren(...state.preset.output_sets.map((s) => h("option", { value: s.id }, s.name)));
}

async function execute() {
  const body = {
    concepts: state.actions,
    protect: [...state.protect],
    instances: instanceChoices(),
    output_set: $("output-set").value,
  };
  state.job = await api.execute(state.job.job_id, body);
  updateButtons();
  await followJob((job) => ["done", "failed", "canceled"].includes(job.status));
  renderOutputs();
  await refreshAccount();
}

/**
 * Show the job's progress until `finished(job)`: the event stream gives every change as it happens,
 * and a slow poll covers what the stream does not carry (the analysis state) or a broken stream.
 */
async function followJob(finished) {
  const show = (job) => {
    state.job = job;
    $("progress").value = job.progress;
    const failed = job.failed_items ? `, ${job.failed_items} failed` : "";
    $("status").textContent = `${job.status}: ${job.done_items} of ${job.total_items} done${failed}`;
    if (job.error) $("status").textContent += ` (${job.error})`;
  };
  if (state.watch) state.watch.abort();
  const controller = new AbortController();
  state.watch = controller;
  const stream = watchJob(state.job.job_id, show, controller.signal).catch((e) => {
    if (e.name !== "AbortError") console.warn("event stream ended, polling instead:", e.message);
  });
  try {
    while (!finished(state.job)) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      if (!finished(state.job)) show(await api.job(state.job.job_id));
    }
  } finally {
    controller.abort();
    state.watch = null;
    await stream;
  }
  // Stream events are light (no instances or renditions): the finished job is read in full.
  show(await api.job(state.job.job_id));
}

// --- 7. output set ----------------------------------------------------------------------------------

function renderOutputs() {
  const job = state.job;
  const link = $("set-link");
  if (job.set_url) {
    link.href = job.set_url;
    link.hidden = false;
  }
  $("outputs").replaceChildren(
    ...job.items.map((item) => {
      if (item.status !== "done") {
        return h("div", { class: "item" }, h("h3", {}, `Photo ${item.idx + 1}: ${item.status}`), item.error || "");
      }
      const after = h("img", { class: "after", src: item.output_url, alt: `Photo ${item.idx + 1} after` });
      const slider = h("input", {
        type: "range",
        min: "0",
        max: "100",
        value: "50",
        "aria-label": `Before and after, photo ${item.idx + 1}`,
        oninput: (e) => {
          after.style.clipPath = `inset(0 0 0 ${e.target.value}%)`;
        },
      });
      const check = item.protect_check;
      return h(
        "div",
        { class: "item", dataset: { idx: String(item.idx) } },
        h("h3", {}, `Photo ${item.idx + 1}`),
        h("div", { class: "compare" }, h("img", { src: item.input_url, alt: `Photo ${item.idx + 1} before` }), after),
        slider,
        check
          ? h(
              "p",
              { class: check.passed ? "check-ok" : "check-bad" },
              `Protect check ${check.passed ? "passed" : "FAILED"}: ${check.changed_pixels} of ` +
                `${check.protected_pixels} protected pixels changed`,
            )
          : null,
        h(
          "ul",
          { class: "renditions", "aria-label": "Renditions" },
          ...item.renditions.map((r) =>
            h("li", {}, h("a", { href: r.url, target: "_blank", rel: "noopener" }, r.template_id), ` ${r.width}x${r.height} ${r.format}`),
          ),
        ),
      );
    }),
  );
}

// --- wiring -----------------------------------------------------------------------------------------

function updateButtons() {
  const signedIn = Boolean(savedToken());
  const job = state.job;
  $("upload").disabled = !signedIn || !state.preset || state.files.length === 0;
  $("analyze").disabled = !job || job.status !== "uploaded" || state.concepts.size === 0;
  $("execute").disabled = !job || job.status !== "uploaded" || state.concepts.size === 0;
  $("save-rule").disabled = !signedIn || state.concepts.size === 0;
  $("load-rule").disabled = state.rules.length === 0;
  $("delete-rule").disabled = state.rules.length === 0;
}

async function start() {
  if (!savedToken()) {
    updateButtons();
    return;
  }
  try {
    await refreshAccount();
  } catch (e) {
    if (e instanceof ApiError && (e.code === "INVALID_TOKEN" || e.code === "AUTH_REQUIRED")) {
      saveToken(null); // the tab's token expired: sign in again
      updateButtons();
      return;
    }
    throw e;
  }
  await loadPresets();
  updateButtons();
}

function wire() {
  $("sign-in").addEventListener("click", guarded(signIn));
  $("preset").addEventListener("change", guarded((e) => choosePreset(e.target.value)));
  $("files").addEventListener("change", (e) => addFiles(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("upload").addEventListener("click", guarded(uploadAll));
  $("analyze").addEventListener("click", guarded(analyze));
  $("save-rule").addEventListener("click", guarded(saveRule));
  $("load-rule").addEventListener("click", guarded(loadRule));
  $("delete-rule").addEventListener("click", guarded(deleteRule));
  $("execute").addEventListener("click", guarded(execute));
}

wire();
guarded(start)();
