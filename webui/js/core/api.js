/* The REST client, what this server offers (its OpenAPI paths) and what the host can do
 * (GET /config/capabilities). */

import { _ } from './i18n.js';

const hooks = {
  headers: () => {}, // every answer's headers (the session notes Session-Expires-On)
  unauthorized: () => {}, // a 401 on an authenticated call: the session has ended
};

/** The session module's hooks (kept here so that api.js imports only i18n.js). */
export function setApiHooks(h) {
  Object.assign(hooks, h);
}

/** Note an answer fetched outside api() (a screenshot): expiry and a 401. */
export function noteAnswer(resp) {
  hooks.headers(resp.headers);
  if (resp.status === 401) hooks.unauthorized();
}

/**
 * Call the API. Every call says it is the app's (X-Requested-With: no browser login
 * dialog on a 401); the answer's headers go to the session, and a 401 ends the app's
 * session (``auth: false`` for the login itself, whose 401 is a wrong password).
 * Errors carry ``status`` (0: the server cannot be reached), ``body`` and ``retryAfter``.
 */
export async function api(method, path, body, { auth = true, signal } = {}) {
  const opts = {
    method,
    headers: { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
    credentials: 'same-origin',
    signal,
  };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    const err = new Error(_('The server cannot be reached. Check that kimchid is running.'));
    err.status = 0;
    throw err;
  }
  hooks.headers(resp.headers);
  if (resp.status === 401 && auth) hooks.unauthorized();
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!resp.ok) {
    const reason = data && typeof data.reason === 'string' ? data.reason
      : `${resp.status} ${resp.statusText}`;
    const code = data && typeof data.errcode === 'string' ? data.errcode : '';
    const err = new Error(code && !reason.includes(code) ? `${reason} (${code})` : reason);
    err.status = resp.status;
    err.body = data;
    const wait = Number(resp.headers.get('Retry-After'));
    if (isFinite(wait) && wait > 0) err.retryAfter = wait;
    throw err;
  }
  return { data, headers: resp.headers, status: resp.status };
}

/** A DELETE whose 404 means it is already gone: done either way. */
export async function remove(path) {
  try {
    await api('DELETE', path);
  } catch (e) {
    if (e.status !== 404) throw e;
  }
}

// -- what the server offers and what the host can do ----------------------------------

let routes = null; // the paths of GET /openapi.json, once known
let caps = null; // GET /config/capabilities, once known
const listeners = new Set();

function changed() {
  for (const fn of listeners) fn();
}

/** Call ``fn`` whenever the routes or the capabilities become known or change. */
export function onServerKnown(fn) {
  listeners.add(fn);
}

/** Whether the server has this route (unknown: the core routes are there). */
export function offers(path, method) {
  if (!routes) return path !== '/config/distros';
  const r = routes[path];
  return !!(r && r[method]);
}

/** Whether GET /openapi.json has answered (offers() then knows). */
export const routesKnown = () => routes !== null;

/** The host's capabilities, or null while unknown. */
export const capabilities = () => caps;

export async function loadRoutes() {
  try {
    const r = await api('GET', '/openapi.json');
    routes = r.data && r.data.paths && typeof r.data.paths === 'object' ? r.data.paths : null;
  } catch (e) {
    routes = null;
  }
  changed();
}

export async function loadCapabilities() {
  try {
    caps = (await api('GET', '/config/capabilities')).data || {};
  } catch (e) {
    caps = null; // unknown: no thumbnails until it is known
    return;
  }
  changed();
}

export function forgetServer() {
  routes = null;
  caps = null;
}
