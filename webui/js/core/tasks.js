/* Tasks: the panel of long jobs (newest first, live progress, cancel), and the task
 * records the pages follow (a VM being made, a report being collected, a scan). The task
 * listing's Events-Cursor is where the event stream starts. */

import { $, el, announce, numberFmt, timeFmt } from './dom.js';
import { api } from './api.js';
import { _, taskMessage } from './i18n.js';

export const TERMINAL = new Set(['finished', 'failed', 'cancelled']);
export const KIND_LABELS = { 'iso.scan': _('ISO scan'), 'vm.create': _('New VM'), 'vm.clone': _('Clone VM'),
  'vm.clone.disks': _('Disk copy'), 'debugreport.collect': _('Debug report'),
  'debugreport.fetch': _('Debug report'), 'disks.remove': _('Disk removal'), 'vm.snapshot': _('Snapshot'),
  'vm.migrate': _('Migration'), 'vm.template': _('Make template'), 'vm.template.disks': _('Disk copy'),
  'volume.download': _('Volume download'), 'volume.wipe': _('Volume wipe'), 'volume.clone': _('Volume clone') };
const COUNTERS = [['files', _('Files')], ['dirs', _('Folders')], ['isos', _('ISOs')], ['skipped', _('Skipped')]];
const STATUS_TEXT = {
  queued: _('Queued'), running: _('Running'), cancelling: _('Cancelling…'), finished: _('Finished'),
  failed: _('Failed'), cancelled: _('Cancelled'),
};
// a status inside a sentence read to screen readers ("New VM web1 finished: ...")
const STATUS_WORD = {
  queued: _('queued'), running: _('running'), cancelling: _('cancelling'), finished: _('finished'),
  failed: _('failed'), cancelled: _('cancelled'),
};
const statusWord = (s) => STATUS_WORD[s] || s;
const MAX_TASKS = 100;

/** id -> { rec, cancelling, el, stub } */
export const tasks = new Map();
const watchers = []; // [kinds (Set) or null, fn(rec, why)]

/** ``fn(rec, why)`` after any change to a task of one of ``kinds`` (all, with null); ``why``
 * is the event type that changed it, or 'listed' / 'answered'. */
export function watchTasks(kinds, fn) {
  watchers.push([kinds ? new Set(kinds) : null, fn]);
}

function notify(rec, why) {
  for (const [kinds, fn] of watchers) if (!kinds || kinds.has(rec.kind)) fn(rec, why);
}

export const kindLabel = (kind) => KIND_LABELS[kind] || kind;

/** The running tasks of a kind, newest first. */
export function runningOf(kind) {
  return [...tasks.values()]
    .filter((t) => !t.stub && t.rec.kind === kind && !TERMINAL.has(t.rec.status))
    .map((t) => t.rec)
    .sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
}

export function taskStatus(t) {
  const s = t.rec.status;
  if (s !== 'running') return s;
  if (t.cancelling) return 'cancelling';
  return t.rec.attempt ? 'running' : 'queued';
}

export function vmNameOf(rec) {
  const m = /^\/vms\/([^/]+)$/.exec(rec.target_uri || '');
  if (m) {
    try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
  }
  return rec.params && typeof rec.params.name === 'string' ? rec.params.name : '';
}

export function taskTarget(rec) {
  if (rec.kind === 'vm.create') {
    const name = vmNameOf(rec);
    const from = rec.params && rec.params.template;
    const names = rec.params && Array.isArray(rec.params.names) ? rec.params.names : [];
    if (names.length > 1) {
      const range = { n: names.length, first: names[0], last: names[names.length - 1], from };
      return from ? _('{n} VMs ({first} … {last}) from {from}', range) : _('{n} VMs ({first} … {last})', range);
    }
    return from ? _('{name} from {from}', { name: name || _('a VM'), from }) : name || rec.target_uri || '';
  }
  if (rec.kind === 'vm.clone') {
    const name = vmNameOf(rec);
    const from = rec.params && rec.params.source;
    return from ? _('{name}, a copy of {from}', { name: name || _('a VM'), from }) : name || rec.target_uri || '';
  }
  if (rec.kind === 'vm.template' && rec.params && rec.params.template) {
    return _('{template}, from {source}', { template: rec.params.template, source: rec.params.source || _('a VM') });
  }
  if (rec.params && typeof rec.params.path === 'string') return rec.params.path;
  return rec.target_uri || '';
}

function duration(rec) {
  const a = Date.parse(rec.created);
  const b = Date.parse(rec.updated);
  if (!isFinite(a) || !isFinite(b) || b < a) return '';
  const s = (b - a) / 1000;
  if (s < 60) return _('{s} s', { s: s.toFixed(s < 10 ? 1 : 0) });
  const m = Math.floor(s / 60);
  return _('{m} min {m2} s', { m, m2: Math.round(s - m * 60) });
}

function buildTaskEl(t) {
  const node = $('task-template').content.firstElementChild.cloneNode(true);
  node.dataset.taskId = t.rec.id;
  const cancel = node.querySelector('.task-cancel');
  cancel.addEventListener('click', () => cancelTask(t.rec.id, cancel));
  node.querySelector('.bar').id = `task-bar-${t.rec.id}`;
  return node;
}

function renderTask(t) {
  const rec = t.rec;
  if (!t.el) t.el = buildTaskEl(t);
  const node = t.el;
  const status = taskStatus(t);
  const kind = kindLabel(rec.kind);
  node.dataset.status = status;
  node.querySelector('.task-kind').textContent = kind;
  node.querySelector('.task-status').textContent = STATUS_TEXT[status] || status;
  const target = node.querySelector('.task-target');
  target.textContent = taskTarget(rec);
  target.title = taskTarget(rec);

  const bar = node.querySelector('.bar');
  bar.setAttribute('aria-label', _('{kind} progress', { kind }));
  let pct = typeof rec.progress === 'number' ? rec.progress : null;
  if (TERMINAL.has(rec.status) && pct === null) pct = rec.status === 'finished' ? 100 : 0;
  if (pct === null) {
    bar.removeAttribute('value'); // indeterminate
    bar.setAttribute('aria-valuetext', _('In progress'));
    bar.dataset.value = '';
  } else {
    bar.value = Math.max(0, Math.min(100, pct));
    bar.removeAttribute('aria-valuetext');
    bar.dataset.value = String(bar.value);
  }

  const msg = node.querySelector('.task-message');
  msg.replaceChildren();
  if (rec.status === 'failed') {
    msg.append(el('strong', null, _('Reason:')), document.createTextNode(` ${rec.message || _('unknown')}`));
  } else {
    msg.textContent = rec.message || '';
  }

  const dl = node.querySelector('.task-counters');
  const details = rec.details || rec.result || null;
  dl.replaceChildren();
  if (details && typeof details === 'object') {
    for (const [key, label] of COUNTERS) {
      if (typeof details[key] !== 'number') continue;
      const item = el('div', `counter counter-${key}`);
      item.append(el('dt', null, label), el('dd', null, numberFmt.format(details[key])));
      dl.append(item);
    }
  }
  dl.hidden = !dl.children.length;

  const time = node.querySelector('.task-time');
  const created = Date.parse(rec.created);
  time.dateTime = rec.created || '';
  let when = isFinite(created) ? timeFmt.format(new Date(created)) : '';
  if (TERMINAL.has(rec.status)) {
    const d = duration(rec);
    if (d) when += _(' · took {d}', { d });
  }
  time.textContent = when;

  const cancel = node.querySelector('.task-cancel');
  cancel.hidden = status !== 'running' && status !== 'queued';
  cancel.setAttribute('aria-label', _('Cancel {kind} {taskTarget}', { kind, taskTarget: taskTarget(rec) }));
}

/** A task run for another one that is shown (a clone's disk copy): the parent says it all. */
function shownInParent(rec) {
  const parent = rec.params && rec.params.parent;
  const p = typeof parent === 'string' ? tasks.get(parent) : null;
  return !!(p && !p.stub);
}

function placeTask(t) {
  const list = $('task-list');
  if (t.el && t.el.parentNode === list) return;
  const after = [...list.children].find((c) => {
    const other = tasks.get(c.dataset.taskId);
    return other && other.rec.created < t.rec.created;
  });
  list.insertBefore(t.el, after || null);
}

function trimTasks() {
  if (tasks.size <= MAX_TASKS) return;
  const ended = [...tasks.values()].filter((t) => TERMINAL.has(t.rec.status))
    .sort((a, b) => (a.rec.created < b.rec.created ? -1 : 1));
  while (tasks.size > MAX_TASKS && ended.length) {
    const t = ended.shift();
    tasks.delete(t.rec.id);
    if (t.el) t.el.remove();
  }
}

function updateSummary() {
  for (const t of tasks.values()) if (t.el) t.el.hidden = shownInParent(t.rec);
  const all = [...tasks.values()].filter((t) => !t.stub && !shownInParent(t.rec));
  const running = all.filter((t) => !TERMINAL.has(t.rec.status)).length;
  $('task-summary').textContent = running ? _('{running} running · {n} shown', { running, n: all.length })
    : all.length ? _('None running · {n} shown', { n: all.length }) : _('None');
  $('task-empty').hidden = all.length > 0;
  const badge = $('nav-running');
  badge.hidden = running === 0;
  badge.replaceChildren(String(running), el('span', 'visually-hidden', ` ${_('running')}`));
}

function changed(t, why) {
  renderTask(t);
  placeTask(t);
  trimTasks();
  updateSummary();
  notify(t.rec, why);
}

/** Apply a full task record, unless it is older than what is shown. */
export function upsertTask(rec, { announceIt = true, why = 'answered' } = {}) {
  if (!rec || typeof rec.id !== 'string') return;
  if (typeof rec.message === 'string') rec = { ...rec, message: taskMessage(rec) };
  let t = tasks.get(rec.id);
  if (t && t.stub) {
    tasks.delete(rec.id);
    t = null;
  }
  if (t) {
    const was = t.rec;
    if (TERMINAL.has(was.status) && !TERMINAL.has(rec.status)) return; // never goes back
    const newerEnd = TERMINAL.has(rec.status) && !TERMINAL.has(was.status);
    if (!newerEnd && rec.updated && was.updated && rec.updated < was.updated) return;
    if ((rec.attempt || 0) < (was.attempt || 0) && !newerEnd) return;
    t.rec = { ...was, ...rec };
    if (TERMINAL.has(rec.status)) t.cancelling = false;
    if (announceIt && newerEnd) {
      announce(_('{kind} {target} {status}: {message}', { kind: kindLabel(rec.kind), target: taskTarget(rec),
        status: statusWord(rec.status), message: rec.message || '' }));
    }
  } else {
    t = { rec: { ...rec }, cancelling: false, el: null };
    tasks.set(rec.id, t);
    if (announceIt) {
      announce(_('{kind} {target}: {status}', { kind: kindLabel(rec.kind), target: taskTarget(rec),
        status: statusWord(rec.status) }));
    }
  }
  changed(t, why);
}

/** A task we do not show yet (older than the listing's window): fetch it once. */
async function fetchTask(id) {
  if (!/^[0-9a-f]{32}$/.test(id) || tasks.has(id)) return;
  const stub = { rec: { id, status: 'running', kind: '', created: '' }, stub: true, el: null };
  tasks.set(id, stub);
  let rec = null;
  try {
    rec = (await api('GET', `/tasks/${id}`)).data;
  } catch (e) {
    rec = null;
  }
  if (tasks.get(id) === stub) tasks.delete(id);
  if (rec) upsertTask(rec, { why: 'fetched' });
}

function taskProgress(d) {
  const t = tasks.get(d.id);
  if (!t) { fetchTask(d.id); return; }
  if (t.stub || TERMINAL.has(t.rec.status)) return;
  if (typeof d.attempt === 'number' && d.attempt < (t.rec.attempt || 0)) return;
  const before = t.rec.progress;
  t.rec.progress = typeof d.progress === 'number' ? d.progress : null;
  t.rec.message = taskMessage(d);
  t.rec.message_id = d.message_id;
  t.rec.message_args = d.message_args;
  t.rec.errcode = d.errcode;
  if (d.details) t.rec.details = d.details;
  if (typeof d.attempt === 'number') t.rec.attempt = d.attempt;
  renderTask(t);
  notify(t.rec, 'task.progress');
  const p = t.rec.progress;
  if (typeof p === 'number' && typeof before === 'number'
      && Math.floor(p / 25) > Math.floor(before / 25) && p < 100) {
    announce(_('{kind}: {percent}%', { kind: kindLabel(t.rec.kind), percent: Math.round(p) }));
  }
}

function taskStarted(d) {
  const t = tasks.get(d.id);
  if (!t) { fetchTask(d.id); return; }
  if (t.stub || TERMINAL.has(t.rec.status)) return;
  if (typeof d.attempt === 'number' && d.attempt >= (t.rec.attempt || 0)) {
    if (d.attempt > (t.rec.attempt || 0)) t.rec.progress = null; // a new attempt
    t.rec.attempt = d.attempt;
    t.rec.worker = d.worker;
  }
  changed(t, 'task.started');
}

function taskCancelling(d) {
  upsertTask(d, { announceIt: false, why: 'task.cancelling' });
  const t = tasks.get(d.id);
  if (t && !TERMINAL.has(t.rec.status) && !t.cancelling) {
    t.cancelling = true;
    changed(t, 'task.cancelling');
  }
}

export function isCancelling(id) {
  const t = tasks.get(id);
  return !!(t && t.cancelling);
}

/** DELETE /tasks/<id> and show the answer; errors are the caller's to show. */
export async function requestCancel(id) {
  const r = await api('DELETE', `/tasks/${encodeURIComponent(id)}`);
  const t = tasks.get(id);
  if (t) t.cancelling = !TERMINAL.has(r.data.status);
  upsertTask(r.data, { announceIt: false });
}

async function cancelTask(id, button) {
  const t = tasks.get(id);
  if (!t || !t.el) return;
  const errEl = t.el.querySelector('.task-error');
  errEl.hidden = true;
  button.disabled = true;
  try {
    await requestCancel(id);
  } catch (e) {
    errEl.textContent = e.message;
    errEl.hidden = false;
  } finally {
    button.disabled = false;
  }
}

/** GET /tasks (the 50 newest): the panel again; answers the Events-Cursor to watch from. */
export async function listTasks() {
  const r = await api('GET', '/tasks?limit=50');
  const listed = Array.isArray(r.data) ? r.data : [];
  const ids = new Set(listed.map((x) => x.id));
  for (const [id, t] of tasks) {
    // keep live tasks the listing window left out; drop ended ones it no longer has
    if (!ids.has(id) && (t.stub || TERMINAL.has(t.rec.status))) {
      if (t.el) t.el.remove();
      tasks.delete(id);
    }
  }
  for (const rec of listed) upsertTask(rec, { announceIt: false, why: 'listed' });
  updateSummary();
  return r.headers.get('Events-Cursor') || '0';
}

export default {
  name: 'tasks',
  events: {
    'task.created task.cancelled task.finished task.failed': (d, ev) => upsertTask(d, { why: ev.type }),
    'task.cancelling': taskCancelling,
    'task.started': taskStarted,
    'task.progress': taskProgress,
  },
  init() {
    $('nav-tasks').addEventListener('click', (e) => {
      e.preventDefault();
      const drawer = $('tasks');
      drawer.scrollIntoView({ block: 'start', behavior: 'smooth' });
      drawer.focus({ preventScroll: true });
    });
  },
  stop() {
    tasks.clear();
    $('task-list').replaceChildren();
  },
};
