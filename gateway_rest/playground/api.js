// The public REST API as the Flutter app uses it: envelope in, data or an ApiError out.
// Nothing here knows about the page; app.js does.

const TOKEN_KEY = "s3.playground.token";

/** An error envelope: `code` is the contract's code (VALIDATION_ERROR, INSUFFICIENT_CREDITS, ...). */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
  }
}

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders(extra = {}) {
  const token = savedToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

async function unwrap(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("INTERNAL", `HTTP ${response.status}: the answer is not JSON`, response.status);
  }
  if (!body || typeof body !== "object" || !("success" in body)) {
    throw new ApiError("INTERNAL", `HTTP ${response.status}: the answer is not an envelope`, response.status);
  }
  if (!body.success) {
    const error = body.error || { code: "INTERNAL", message: "unknown error" };
    throw new ApiError(error.code, error.message, response.status);
  }
  return body.data;
}

/** One API call. `body` is sent as JSON when given. */
export async function call(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError("NETWORK", `the service cannot be reached (${e.message})`, 0);
  }
  return unwrap(response);
}

export const api = {
  signIn: () => call("POST", "/auth/anon", {}),
  me: () => call("GET", "/me"),
  presets: () => call("GET", "/presets"),
  preset: (id) => call("GET", `/presets/${encodeURIComponent(id)}`),
  rules: () => call("GET", "/rules"),
  createRule: (rule) => call("POST", "/rules", rule),
  updateRule: (id, rule) => call("PUT", `/rules/${encodeURIComponent(id)}`, rule),
  deleteRule: (id) => call("DELETE", `/rules/${encodeURIComponent(id)}`),
  createJob: (preset, itemCount) => call("POST", "/jobs", { preset, item_count: itemCount }),
  job: (id) => call("GET", `/jobs/${encodeURIComponent(id)}`),
  confirmUpload: (id) => call("POST", `/jobs/${encodeURIComponent(id)}/confirm-upload`, {}),
  analyze: (id, concepts) => call("POST", `/jobs/${encodeURIComponent(id)}/analyze`, { concepts }),
  execute: (id, body) => call("POST", `/jobs/${encodeURIComponent(id)}/execute`, body),
  cancel: (id) => call("POST", `/jobs/${encodeURIComponent(id)}/cancel`, {}),
};

/**
 * PUT one file to its presigned upload URL (straight to storage, not through the API), reporting
 * progress as a fraction. XMLHttpRequest because fetch() has no upload progress.
 */
export function uploadFile(target, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(target.method || "PUT", target.url);
    for (const [name, value] of Object.entries(target.headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
        return;
      }
      let code = "UPLOAD_FAILED";
      let message = `upload answered HTTP ${xhr.status}`;
      try {
        const body = JSON.parse(xhr.responseText);
        if (body && body.error) ({ code, message } = body.error);
      } catch {
        // S3-compatible stores answer XML: keep the HTTP status as the message.
      }
      reject(new ApiError(code, message, xhr.status));
    });
    xhr.addEventListener("error", () => reject(new ApiError("NETWORK", "the upload was interrupted", 0)));
    xhr.send(file);
  });
}

/**
 * Follow a job's event stream (GET /jobs/{id}/events, text/event-stream). EventSource cannot send an
 * Authorization header, so the stream is read with fetch(). Calls onJob(job) for every `job` event;
 * resolves when the job is terminal or the stream ends; `signal` aborts it.
 */
export async function watchJob(jobId, onJob, signal) {
  const response = await fetch(`/jobs/${encodeURIComponent(jobId)}/events`, {
    headers: authHeaders({ Accept: "text/event-stream" }),
    signal,
  });
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok || !type.startsWith("text/event-stream")) return unwrap(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseEvent(block);
      if (event.data === null) continue; // a keep-alive comment
      const payload = JSON.parse(event.data);
      if (event.type === "error") throw new ApiError(payload.code, payload.message, 0);
      if (event.type === "end") return;
      if (event.type === "job") onJob(payload);
    }
  }
}

function parseEvent(block) {
  const event = { type: "message", data: null };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") event.data = event.data === null ? value : `${event.data}\n${value}`;
  }
  return event;
}
