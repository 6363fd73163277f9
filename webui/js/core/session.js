/* Signing in, the session and its end.
 *
 * Nothing of the app shows, and no socket opens, before GET /session says who is signed
 * in; else the login page. The session cookie is HttpOnly: the page knows only what the
 * server says, GET /session and each answer's Session-Expires-On, which is tracked to warn
 * before the session ends. Any 401 goes back to the login page. The first login of a page
 * starts the app in it; a later one (after a sign-out or an ended session) reloads the
 * page, so nothing of the previous session (its user's VMs, timers, socket) is carried
 * into the next.
 */

import { $, announce, showError } from './dom.js';
import { api, setApiHooks, loadRoutes, loadCapabilities, forgetServer } from './api.js';
import { each } from './registry.js';
import { route, leave, setAccess } from './router.js';
import { startStream, stopStream, configureStream, nextDelay } from './stream.js';
import { listTasks } from './tasks.js';
import { _, followAccount, onLanguageChosen } from './i18n.js';

// The warning shows when a fifth of the idle time is left, 2 minutes at most, but at least
// 15 s before the end (or half the idle time, if even that is shorter): time to react.
const WARN_SHARE = 0.2;
const WARN_MAX = 120000; // ms
const WARN_MIN = 15000; // ms
const EXPIRY_GRACE = 600; // ms after the end before asking whether it really ended

const s = {
  who: null, // GET /session: {username, groups, role}
  signedIn: false,
  started: false, // the app ran in this page (a later login reloads it, to start clean)
  expiresAt: 0, // when the session ends (ms, this browser's clock) unless it is used
  idleMs: 0, // the longest span a Session-Expires-On gave: about the idle timeout
  expiryTimer: null,
  atLimit: false, // using the session no longer extends it (its absolute limit)
  lastActivity: Date.now(), // the user's last key or pointer press
  loginWaitTimer: null, // the countdown after a 429
  signingIn: false,
  signingOut: false, // the 401s of requests crossing POST /logout are no news
  checkingEnd: false,
  renewError: '', // why "Stay signed in" failed
};

export const isAdmin = () => !!s.who && s.who.role === 'admin';
export const signedIn = () => s.signedIn;
export const currentUser = () => s.who;
export const idleMs = () => s.idleMs;

/**
 * Whether someone has used the page lately. Thumbnails are the page's only requests that
 * repeat by themselves: without a pause they would keep an unattended session alive.
 */
export const userPresent = () => Date.now() - s.lastActivity < Math.max(60000, s.idleMs / 2);
const presenceListeners = new Set();
export function onPresence(fn) {
  presenceListeners.add(fn);
}

/** Note when the session ends unless used, as an answer's Session-Expires-On says. */
function noteExpiry(headers) {
  const value = headers.get('Session-Expires-On');
  if (!value) return;
  const at = Date.parse(value);
  if (!isFinite(at)) return;
  const now = Date.now();
  // the server's clock decides; its Date has whole seconds, so only a larger gap is skew
  const served = Date.parse(headers.get('Date') || '');
  const skew = isFinite(served) && Math.abs(served - now) > 2000 ? served - now : 0;
  const local = at - skew;
  s.idleMs = Math.max(s.idleMs, local - now);
  if (local > s.expiresAt) {
    s.expiresAt = local;
    armExpiry();
  }
}

function warnBefore() {
  const idle = s.idleMs;
  return Math.max(Math.min(WARN_MAX, idle * WARN_SHARE), Math.min(WARN_MIN, idle / 2));
}

function leftText(ms) {
  const sec = Math.max(0, Math.ceil(ms / 1000));
  return sec >= 60 ? _('{m} min {s} s', { m: Math.floor(sec / 60), s: String(sec % 60).padStart(2, '0') })
    : _('{s} s', { s: sec });
}

/** Show, update or hide the warning for the session's end; at the end, ask the server. */
function armExpiry() {
  clearTimeout(s.expiryTimer);
  s.expiryTimer = null;
  if (!s.signedIn || !s.expiresAt) {
    $('session-warning').hidden = true;
    return;
  }
  const left = s.expiresAt - Date.now();
  if (left <= -EXPIRY_GRACE) {
    checkEnded();
    return;
  }
  const warn = warnBefore();
  if (left <= warn) {
    showExpiryWarning(left);
    const next = left > 0 ? left % 1000 || 1000 : left + EXPIRY_GRACE;
    s.expiryTimer = setTimeout(armExpiry, Math.max(50, next + 10));
  } else {
    $('session-warning').hidden = true;
    s.renewError = '';
    s.expiryTimer = setTimeout(armExpiry, Math.min(left - warn, 3600000));
  }
}

function showExpiryWarning(left) {
  const box = $('session-warning');
  const text = s.atLimit
    ? _('It reaches its time limit in {left}: sign in again then.', { left: leftText(left) })
    : _('It ends in {left} unless you stay signed in.', { left: leftText(left) });
  $('session-warning-text').textContent = s.renewError
    ? _('{text} It could not be renewed: {renewError}', { text, renewError: s.renewError }) : text;
  $('session-stay').hidden = s.atLimit;
  if (box.hidden) {
    box.hidden = false;
    announce(_('Your session is about to end. {text}', { text }));
  }
}

/**
 * GET /session once signed in: a 401 shows the login page; if another tab of this browser
 * signed in as someone else meanwhile (the cookie is shared), start again as them.
 */
async function askSession() {
  const r = await api('GET', '/session');
  const who = r.data || {};
  const was = s.who;
  if (s.signedIn && was && (who.username !== was.username || who.role !== was.role)) {
    location.reload();
  }
  return who;
}

/** The end has passed with no answer here extending it: has another tab kept it open? */
async function checkEnded() {
  if (s.checkingEnd) return;
  s.checkingEnd = true;
  try {
    await askSession(); // a 401 shows the login page
  } catch (e) {
    if (s.signedIn) s.expiryTimer = setTimeout(checkEnded, 5000); // no answer
    return;
  } finally {
    s.checkingEnd = false;
  }
  // still open: its new end was noted (a clock far off the server's: look again later)
  if (s.expiresAt <= Date.now()) s.expiresAt = Date.now() + 5000;
  armExpiry();
}

async function staySignedIn() {
  const btn = $('session-stay');
  btn.disabled = true;
  s.renewError = '';
  try {
    await askSession(); // any authenticated request renews the session
    // near its absolute limit, using it no longer moves its end: say so instead
    if (s.signedIn && s.expiresAt - Date.now() <= warnBefore()) s.atLimit = true;
  } catch (e) {
    s.renewError = e.message;
  } finally {
    btn.disabled = false;
  }
  armExpiry();
}

/** A request was refused for want of a session (it ended, or was revoked). */
function sessionEnded() {
  if (!s.signedIn || s.signingOut) return;
  leaveApp(_('Your session has ended. Sign in again to go on.'), 'ended', s.who ? s.who.username : '');
}

async function signOut() {
  const btn = $('sign-out');
  btn.disabled = true;
  s.signingOut = true; // requests refused meanwhile are no news
  let note = _('You have signed out.');
  try {
    await api('POST', '/logout', undefined, { auth: false });
  } catch (e) {
    note = _('You left the app, but the server could not end the session ({message}); it ends by itself when left unused.', { message: e.message });
  }
  btn.disabled = false;
  leaveApp(note, 'info', '');
  s.signingOut = false;
}

/** Stop everything the session started, forget what it showed, show the login page. */
function leaveApp(note, kind, username) {
  s.signedIn = false;
  clearTimeout(s.expiryTimer);
  s.expiryTimer = null;
  s.expiresAt = 0;
  s.atLimit = false;
  stopStream();
  leave();
  each('stop');
  for (const f of document.querySelectorAll('form')) if (f.id !== 'login-form') f.reset();
  for (const input of document.querySelectorAll('input[type="search"]')) input.value = '';
  $('announcer').replaceChildren();
  forgetServer();
  s.who = null;
  showLogin(note, kind, username);
}

function showLogin(note = '', kind = 'info', username = '') {
  document.body.dataset.auth = 'out';
  delete document.body.dataset.role;
  for (const id of ['app', 'conn', 'account', 'session-warning', 'skip-link']) {
    $(id).hidden = true;
  }
  $('login').hidden = false;
  $('login-fields').hidden = false;
  const n = $('login-note');
  n.textContent = note;
  n.hidden = !note;
  n.dataset.kind = kind;
  showError('login-error', '');
  $('login-user').value = username; // kept when the session ended, not after a sign-out
  $('login-password').value = '';
  document.title = _('Sign in · kimchi');
  ($('login-user').value ? $('login-password') : $('login-user')).focus();
}

/** The server cannot say yet whether anyone is signed in: no form, a note, a retry. */
function showWaiting(text) {
  document.body.dataset.auth = 'waiting';
  $('login').hidden = false;
  $('login-fields').hidden = true;
  const n = $('login-note');
  n.textContent = text;
  n.hidden = false;
  n.dataset.kind = 'info';
}

/** On load: GET /session says who is signed in (200) or that nobody is (401). */
export async function checkSession() {
  let who;
  try {
    who = (await api('GET', '/session', undefined, { auth: false })).data;
  } catch (e) {
    if (e.status === 401) {
      showLogin();
      return;
    }
    showWaiting(_('{reason} Trying again…', { reason: e.status === 0 ? _('The server cannot be reached.') : e.message }));
    setTimeout(checkSession, nextDelay());
    return;
  }
  startApp(who, { focus: false });
}

function startApp(who, { focus }) {
  if (!who || typeof who.username !== 'string') {
    showLogin();
    return;
  }
  if (followAccount(who.language)) return; // the page comes back in the account's language
  s.who = who;
  s.signedIn = true;
  s.started = true;
  s.lastActivity = Date.now();
  const admin = who.role === 'admin';
  document.body.dataset.auth = 'in';
  document.body.dataset.role = admin ? 'admin' : 'user';
  $('account-name').textContent = who.username;
  const role = $('account-role');
  role.textContent = admin ? _('Administrator') : _('User');
  role.dataset.role = admin ? 'admin' : 'user';
  const groups = Array.isArray(who.groups) ? who.groups.join(', ') : '';
  $('account').title = groups ? _('{username}, groups: {groups}', { username: who.username, groups }) : who.username;
  $('login').hidden = true;
  for (const id of ['app', 'conn', 'account', 'skip-link']) $(id).hidden = false;
  each('start');
  route(focus);
  armExpiry();
  startStream();
}

function loginWait(seconds) {
  const btn = $('login-submit');
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      s.loginWaitTimer = null;
      btn.disabled = false;
      btn.textContent = _('Sign in');
      showError('login-error', '');
      return;
    }
    btn.disabled = true;
    btn.textContent = _('Try again in {left} s', { left });
    s.loginWaitTimer = setTimeout(tick, (until - Date.now()) % 1000 || 1000);
  };
  clearTimeout(s.loginWaitTimer);
  tick();
}

async function submitLogin(ev) {
  ev.preventDefault();
  if (s.loginWaitTimer || s.signingIn) return;
  const user = $('login-user');
  const pw = $('login-password');
  const username = user.value.trim();
  showError('login-error', '');
  for (const input of [user, pw]) input.setAttribute('aria-invalid', 'false');
  if (!username || !pw.value) {
    const missing = username ? pw : user;
    showError('login-error', username ? _('Enter your password.') : _('Enter your user name.'));
    missing.setAttribute('aria-invalid', 'true');
    missing.focus();
    return;
  }
  const btn = $('login-submit');
  btn.disabled = true;
  btn.textContent = _('Signing in…');
  s.signingIn = true;
  let who;
  try {
    who = (await api('POST', '/login', { username, password: pw.value }, { auth: false })).data;
  } catch (e) {
    s.signingIn = false;
    pw.value = '';
    btn.disabled = false;
    btn.textContent = _('Sign in');
    showError('login-error', e.message);
    if (e.status === 401) for (const input of [user, pw]) input.setAttribute('aria-invalid', 'true');
    if (e.retryAfter) loginWait(e.retryAfter);
    pw.focus();
    return;
  }
  pw.value = '';
  if (s.started) {
    location.reload(); // start clean, with the new session's cookie
    return;
  }
  s.signingIn = false;
  btn.disabled = false;
  btn.textContent = _('Sign in');
  startApp(who, { focus: true });
}

export default {
  name: 'session',
  init() {
    setApiHooks({ headers: noteExpiry, unauthorized: sessionEnded });
    setAccess((page) => !page.admin || isAdmin());
    configureStream({
      cursor: listTasks,
      check: async () => { await askSession(); return s.signedIn; },
      onReady: () => { loadCapabilities(); loadRoutes(); },
    });
    onLanguageChosen(async (tag) => {
      if (s.signedIn) await api('PUT', '/preferences', { language: tag || null });
    });
    $('login-form').addEventListener('submit', submitLogin);
    $('sign-out').addEventListener('click', signOut);
    $('session-stay').addEventListener('click', staySignedIn);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) armExpiry(); // timers of a hidden tab run late
    });
    const present = () => {
      const was = userPresent();
      s.lastActivity = Date.now();
      if (!was) for (const fn of presenceListeners) fn();
    };
    for (const type of ['pointerdown', 'pointermove', 'keydown', 'wheel', 'touchstart']) {
      document.addEventListener(type, present, { capture: true, passive: true });
    }
  },
};
