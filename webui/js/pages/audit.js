/* The audit log (admins): every change made through kimchi, newest first — who, from
 * where, what, the result and, for a task, how it ended. Narrowed to a user and a time
 * window; older changes a page at a time (the answer's Link: rel="next"). Nothing here is
 * live: the log is read when the page is shown and when asked. */

import { $, el, announce, pathText } from '../core/dom.js';
import { api } from '../core/api.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { _, _n } from '../core/i18n.js';

const PAGE = 100;

const state = {
  rows: [], // entries shown, newest first
  next: '', // the URL of the next (older) page, '' when there is none
  asked: 0, // answers to requests made earlier than the last are dropped
  error: '',
  loaded: false,
};

const dayFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short' });
const clockFmt = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** The next page's URL from a Link header (only our own /auditlog paths are taken). */
function nextLink(headers) {
  const link = headers && headers.get('Link');
  const m = link && /<(\/auditlog\?[^>]*)>\s*;\s*rel="next"/.exec(link);
  return m ? m[1] : '';
}

/** A datetime-local value (the browser's local time) as ISO 8601 in UTC. */
function isoOf(input) {
  const v = input.value;
  if (!v) return '';
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

function query() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  const user = $('audit-user').value.trim();
  if (user) q.set('user', user);
  for (const [param, id] of [['since', 'audit-since'], ['until', 'audit-until']]) {
    const iso = isoOf($(id));
    if (iso === null) {
      showAuditError(_('Give a whole date and time.'), id);
      return null;
    }
    if (iso) q.set(param, iso);
  }
  return q;
}

function showAuditError(text, id) {
  const e = $('audit-error');
  e.textContent = text;
  e.hidden = !text;
  for (const f of ['audit-user', 'audit-since', 'audit-until']) {
    $(f).setAttribute('aria-invalid', f === id ? 'true' : 'false');
  }
  if (id) $(id).focus();
}

async function load(more = false) {
  if (!isAdmin()) return;
  let path;
  if (more) {
    path = state.next;
  } else {
    const q = query();
    if (!q) return;
    path = `/auditlog?${q}`;
  }
  if (!path) return;
  const seq = ++state.asked;
  $('audit-older').disabled = true;
  try {
    const r = await api('GET', path);
    if (seq !== state.asked) return;
    const got = Array.isArray(r.data) ? r.data : [];
    state.rows = more ? [...state.rows, ...got] : got;
    state.next = nextLink(r.headers);
    state.error = '';
    showAuditError('');
  } catch (e) {
    if (seq !== state.asked || e.status === 401) return;
    state.error = e.message;
    if (e.body && e.body.errcode) showAuditError(e.message);
  } finally {
    if (seq === state.asked) $('audit-older').disabled = false;
  }
  state.loaded = true;
  render();
  if (more) announce(_n('{n} change shown', '{n} changes shown', state.rows.length));
}

function resultText(e) {
  if (e.kind === 'task.end') {
    return { text: _('Task {status}', { status: e.task_status || '?' }),
      bad: e.task_status !== 'finished' };
  }
  const bad = e.status !== null && e.status >= 400;
  let text = e.status === null ? '?' : String(e.status);
  if (e.errcode) text += ` ${e.errcode}`;
  if (e.task) {
    text += ` · ${e.task_status ? _('task {status}', { status: e.task_status }) : _('task running')}`;
  }
  return { text, bad: bad || (!!e.task_status && e.task_status !== 'finished') };
}

function auditRow(e) {
  const tr = el('tr', e.kind === 'task.end' ? 'audit-task-end' : null);
  tr.dataset.id = e.id;
  const when = Date.parse(e.time);
  const time = el('td', 'audit-time');
  if (Number.isNaN(when)) time.textContent = e.time;
  else time.append(el('span', null, dayFmt.format(when)), el('span', null, clockFmt.format(when)));
  time.title = e.time;
  const who = el('td', 'cell-name', e.user);
  who.title = e.user;
  const change = el('td', 'audit-change');
  change.append(el('span', 'audit-method', e.kind === 'task.end' ? _('end of') : e.method),
    document.createTextNode(' '), pathText('audit-path', e.path));
  if (e.kind === 'task.end') change.append(document.createTextNode(` (${e.method})`));
  if (e.summary && Object.keys(e.summary).length) {
    change.title = JSON.stringify(e.summary);
  }
  const target = el('td');
  target.append(pathText('audit-target', e.target));
  const { text, bad } = resultText(e);
  const result = el('td', bad ? 'audit-bad' : 'audit-ok', text);
  if (e.message) result.title = e.message;
  tr.append(time, who, el('td', 'audit-address', e.address), change, target, result);
  return tr;
}

function render() {
  $('audit-rows').replaceChildren(...state.rows.map(auditRow));
  const empty = $('audit-empty');
  const text = $('audit-empty-text');
  if (state.error && !state.rows.length) {
    text.textContent = _('The audit log cannot be read: {error}', { error: state.error });
    empty.hidden = false;
  } else {
    text.textContent = _('No changes recorded for this choice.');
    empty.hidden = !!state.rows.length || !state.loaded;
  }
  const n = state.rows.length;
  $('audit-count').textContent = !state.loaded ? _('Loading…')
    : state.next ? _n('{n} change, more are older', '{n} changes, more are older', n)
      : _n('{n} change', '{n} changes', n);
  $('audit-older').hidden = !state.next;
}

function forget() {
  state.rows = [];
  state.next = '';
  state.error = '';
  state.loaded = false;
  state.asked += 1;
}

export default {
  name: 'audit',
  page: {
    id: 'audit',
    title: _('Audit log'),
    admin: true,
    show() {
      if (signedIn()) load();
    },
  },
  init() {
    $('audit-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      showAuditError('');
      load();
    });
    $('audit-clear').addEventListener('click', () => {
      for (const id of ['audit-user', 'audit-since', 'audit-until']) $(id).value = '';
      showAuditError('');
      load();
    });
    $('audit-older').addEventListener('click', () => load(true));
    for (const id of ['audit-user', 'audit-since', 'audit-until']) {
      $(id).addEventListener('input', () => {
        if (!$('audit-error').hidden) showAuditError('');
      });
    }
  },
  async resync() {
    if (state.loaded && isShown('audit')) await load();
  },
  stop() {
    forget();
    showAuditError('');
    $('audit-rows').replaceChildren();
    $('audit-count').textContent = _('Loading…');
    $('audit-empty').hidden = true;
    $('audit-older').hidden = true;
  },
};
