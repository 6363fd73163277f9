/* The event stream: one WebSocket to /events. On close it reconnects with back-off and
 * resumes with ?since=<last event id>, so nothing is missed; events are applied once, in
 * order (EventOrder). A "reset" (the server no longer has what we missed) lists
 * everything again, holding the events that arrive meanwhile. */

import { EventOrder } from './dispatch.js';
import { dispatcher, each } from './registry.js';

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 5000;

const order = new EventOrder();
const conn = { open: false, everOpen: false };
let ws = null;
let running = false;
let backoff = BACKOFF_MIN;
let timer = null;
let resyncing = false;
let held = [];
let cursorSource = null; // async () => the Events-Cursor of a fresh listing
let beforeReconnect = async () => true; // false: do not reconnect (the session ended)
let ready = () => {}; // the first listing has been applied
const connListeners = new Set();

/** ``fn(conn)`` when the socket opens or closes: {open, everOpen}. */
export function onConnChange(fn) {
  connListeners.add(fn);
}

export const connState = () => conn;

function connChanged() {
  for (const fn of connListeners) fn(conn);
}

/**
 * ``cursor``: lists the tasks and answers the listing's Events-Cursor (it must come
 * first: the other listings are at least as new). ``check``: asked before reconnecting.
 */
export function configureStream({ cursor, check, onReady }) {
  cursorSource = cursor;
  beforeReconnect = check;
  ready = onReady;
}

/** The next back-off delay (ms), doubled each time up to its cap. */
export function nextDelay() {
  const d = backoff * (0.8 + Math.random() * 0.2);
  backoff = Math.min(BACKOFF_MAX, backoff * 2);
  return d;
}

async function listAll() {
  const cursor = await cursorSource();
  // a module's own listing failing (libvirt away) is its to show; only the cursor's matters
  await Promise.all(each('resync'));
  order.resetTo(cursor);
}

/** List everything again, holding the events that arrive meanwhile; then apply them. */
async function relist() {
  resyncing = true;
  held = [];
  try {
    await listAll();
  } catch (e) {
    resyncing = false;
    held = [];
    throw e;
  }
  resyncing = false;
  const pending = held;
  held = [];
  for (const ev of pending) onEvent(ev);
}

/** List everything, then watch from there; retried with back-off while the server is away. */
export async function startStream() {
  running = true;
  try {
    await relist();
  } catch (e) {
    if (!running) return;
    conn.everOpen = true;
    connChanged();
    clearTimeout(timer);
    timer = setTimeout(startStream, nextDelay());
    return;
  }
  backoff = BACKOFF_MIN;
  connect();
  ready();
}

/** A "reset": what was missed is no longer kept. On failure, reconnect (which lists again). */
async function resync() {
  try {
    await relist();
  } catch (e) {
    if (ws) ws.close();
  }
}

export function onEvent(ev) {
  if (!ev || typeof ev.type !== 'string') return;
  if (ev.type === 'reset') { resync(); return; }
  if (ev.id !== null && ev.id !== undefined) {
    if (resyncing) { held.push(ev); return; }
    if (!order.accept(ev)) return;
  }
  dispatcher.dispatch(ev);
}

function connect() {
  if (!running) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const since = order.lastId !== null ? `?since=${encodeURIComponent(order.lastId)}` : '';
  let sock;
  try {
    sock = new WebSocket(`${proto}//${location.host}/events${since}`);
  } catch (e) {
    scheduleReconnect();
    return;
  }
  ws = sock;
  sock.addEventListener('open', () => {
    if (ws !== sock) return;
    conn.open = true;
    conn.everOpen = true;
    backoff = BACKOFF_MIN;
    connChanged();
  });
  sock.addEventListener('message', (m) => {
    if (ws !== sock) return;
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    onEvent(ev);
  });
  sock.addEventListener('close', () => {
    if (ws !== sock || !running) return;
    ws = null;
    conn.open = false;
    conn.everOpen = true;
    connChanged();
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (!running) return;
  clearTimeout(timer);
  timer = setTimeout(reconnect, nextDelay());
}

/**
 * Ask whether the session still holds before opening the socket again: a refused
 * handshake does not say why, and a socket outlives the session it was opened with.
 */
async function reconnect() {
  if (!running) return;
  let go;
  try {
    go = await beforeReconnect();
  } catch (e) {
    go = e.status !== 0; // kimchid away: try later; anything else: try the socket
    if (!go) { scheduleReconnect(); return; }
  }
  if (go && running) connect();
}

export function stopStream() {
  running = false;
  clearTimeout(timer);
  timer = null;
  const sock = ws;
  ws = null;
  conn.open = false;
  backoff = BACKOFF_MIN;
  if (sock) sock.close();
  order.forget();
}
