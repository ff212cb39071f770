// Seed 002's `api` client (src/services/api.ts) in plain JS: a base URL ending in /api, paths without a
// leading slash, the Bearer JWT from localStorage on every request, and the response interceptor that
// refreshes on 401 and retries. Like the seed's, each request that meets a 401 refreshes on its own: three
// requests in flight when the access token expires send three refreshes with the same refresh token.
const config = window.THOR_CONFIG;
const ACCESS = "jwt_token";
const REFRESH = "refresh_token";

class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${(body && (body.detail || body.error)) || ""}`.trim());
    this.status = status;
    this.body = body;
  }
}

// Every refresh this page sent: which refresh token it spent and which it received (#1 the first the page
// held, #2 the next it saw; never a token itself), and the answer's status, for the page to show.
const refreshes = [];
const tokenNumbers = new Map();

function tokenNumber(token) {
  if (!tokenNumbers.has(token)) tokenNumbers.set(token, tokenNumbers.size + 1);
  return `#${tokenNumbers.get(token)}`;
}

function storeTokens({ access, refresh }) {
  localStorage.setItem(ACCESS, access);
  if (refresh) localStorage.setItem(REFRESH, refresh);
}

function loggedIn() {
  return Boolean(localStorage.getItem(ACCESS) && localStorage.getItem(REFRESH));
}

function logOut() {
  localStorage.removeItem(ACCESS);
  localStorage.removeItem(REFRESH);
}

async function send(method, path, { params, body, auth = true } = {}) {
  const url = new URL(`${config.apiBase}/${path}`);
  for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = localStorage.getItem(ACCESS);
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function refreshTokens() {
  const refresh = localStorage.getItem(REFRESH);
  const entry = { token: tokenNumber(refresh), status: null };
  refreshes.push(entry);
  try {
    const pair = await send("POST", "auth/token/refresh/", { body: { refresh }, auth: false });
    entry.status = 200;
    entry.received = tokenNumber(pair.refresh);
    storeTokens(pair);
  } catch (error) {
    entry.status = error.status;
    entry.detail = error.body && error.body.detail;
    // The seed's interceptor: a refresh that fails ends the session.
    logOut();
    throw error;
  }
}

async function request(method, path, options = {}) {
  try {
    return await send(method, path, options);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || options.auth === false || !loggedIn()) throw error;
    await refreshTokens();
    return send(method, path, options);
  }
}

const api = {
  get: (path, { params } = {}) => request("GET", path, { params }),
  post: (path, body, { auth } = {}) => request("POST", path, { body: body === undefined ? {} : body, auth }),
  refreshes,
  storeTokens,
  loggedIn,
};

// Sign-up and log-in, as the seeds' apps do before anything else.
async function signUp(email, password) {
  const { tokens } = await api.post("auth/register/", { email, password }, { auth: false });
  storeTokens(tokens);
}

function show(id, value) {
  document.getElementById(id).textContent = typeof value === "string" ? value : JSON.stringify(value);
}
