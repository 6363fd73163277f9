/* The ISO library: every ISO found on the host (pools, scans), sortable and filterable,
 * updated live as a scan finds them; admins scan folders and follow the scan here. The
 * table is a windowed list: a scan of a large tree may find thousands. */

import { $, el, numberFmt, collator, humanSize, distroChip, matchesWords, showError } from '../core/dom.js';
import { api } from '../core/api.js';
import { isAdmin } from '../core/session.js';
import { TERMINAL, tasks, upsertTask, requestCancel, taskStatus, taskTarget, watchTasks } from '../core/tasks.js';
import { Listing } from '../core/listing.js';
import { WindowedList } from '../core/vlist.js';

const SORT_KEYS = {
  name: (i) => i.name || '',
  distro: (i) => distroText(i),
  size: (i) => (typeof i.size === 'number' ? i.size : -1),
  bootable: (i) => (i.bootable ? 1 : 0),
  path: (i) => i.path || '',
  found_by: (i) => `${i.found_by || ''} ${i.pool || ''}`,
};

let isos = new Map(); // path -> ISO record
const rows = new Map(); // path -> { rec, tr }: a row is rebuilt only when its record changes
const fresh = new Set(); // paths that arrived live, highlighted for a moment
let sort = { key: 'name', dir: 1 };
let filter = '';
let queued = false;
let scanTaskId = null; // the scan the Stop button stops
let table = null; // the WindowedList of #iso-rows
const listeners = new Set();

export function distroText(iso) {
  const d = iso.os_distro || 'unknown';
  const v = iso.os_version || 'unknown';
  if (d === 'unknown') return 'unknown';
  return v === 'unknown' ? d : `${d} ${v}`;
}

/** The library's ISOs (records; do not change them). */
export const isoList = () => [...isos.values()];
export const hasIso = (path) => isos.has(path);
/** ``fn()`` after the library changed. */
export function onIsosChanged(fn) {
  listeners.add(fn);
}

let prefill = () => {}; // set by the templates page: a template from this ISO
export function setPrefill(fn) {
  prefill = fn;
}

function compare(a, b) {
  const key = SORT_KEYS[sort.key];
  const x = key(a);
  const y = key(b);
  let c = typeof x === 'number' && typeof y === 'number' ? x - y : collator.compare(x, y);
  if (c === 0) c = collator.compare(a.path || '', b.path || '');
  return c * sort.dir;
}

function matches(iso, q) {
  if (!q) return true;
  const hay = [iso.name, distroText(iso), iso.path, iso.found_by, iso.pool,
    iso.bootable ? 'bootable' : ''].join(' ').toLowerCase();
  return matchesWords(hay, q);
}

function isoRow(iso) {
  const tr = el('tr');
  tr.dataset.path = iso.path;
  const name = el('td', 'cell-name');
  name.append(el('span', 'iso-name', iso.name));
  name.title = iso.path;
  const distro = el('td', 'cell-distro');
  distro.append(distroChip(iso.os_distro, iso.os_version));
  const size = el('td', 'num', humanSize(iso.size));
  if (typeof iso.size === 'number') size.title = `${numberFmt.format(iso.size)} bytes`;
  const boot = el('td', 'cell-boot');
  boot.append(el('span', iso.bootable ? 'yes' : 'no', iso.bootable ? 'Yes' : 'No'));
  // long paths lose their start, not their end: the folder and file are what tell them apart
  const path = el('td', 'cell-path mono');
  const bdi = el('bdi', null, iso.path);
  bdi.dir = 'ltr';
  path.append(bdi);
  path.title = iso.path;
  const by = el('td', 'cell-by');
  by.append(el('span', `tag tag-${iso.found_by === 'pool' ? 'pool' : 'scan'}`,
    iso.found_by === 'pool' && iso.pool ? `pool ${iso.pool}` : iso.found_by || '—'));
  const act = el('td', 'cell-actions');
  if (isAdmin()) {
    const mk = el('button', 'btn btn-small btn-plain iso-make-template', '+ Template');
    mk.type = 'button';
    mk.setAttribute('aria-label', `Create a template from ${iso.name}`);
    mk.title = `Create a template from ${iso.name}`;
    mk.addEventListener('click', () => prefill(iso.path));
    act.append(mk);
  }
  tr.append(name, distro, size, boot, path, by, act);
  if (fresh.has(iso.path)) tr.classList.add('is-new');
  return tr;
}

function rowOf(iso) {
  let cached = rows.get(iso.path);
  if (!cached || cached.rec !== iso) {
    cached = { rec: iso, tr: isoRow(iso) };
    rows.set(iso.path, cached);
  }
  return cached.tr;
}

function render() {
  queued = false;
  const q = filter.trim().toLowerCase();
  const all = [...isos.values()];
  const shown = all.filter((i) => matches(i, q)).sort(compare);
  for (const path of rows.keys()) if (!isos.has(path)) rows.delete(path);
  table.setItems(shown, { now: true });
  const empty = $('iso-empty');
  if (!all.length) {
    $('iso-empty-text').textContent = isAdmin() ? 'No ISO images yet. Scan a folder to find some.'
      : 'No ISO images yet.';
    empty.hidden = false;
  } else if (!shown.length) {
    $('iso-empty-text').textContent = `No image matches “${filter.trim()}”.`;
    empty.hidden = false;
  } else {
    empty.hidden = true;
  }
  const n = all.length;
  const word = n === 1 ? 'image' : 'images';
  $('iso-count').textContent = shown.length === n ? `${numberFmt.format(n)} ${word}`
    : `${numberFmt.format(shown.length)} of ${numberFmt.format(n)} ${word}`;
  for (const th of document.querySelectorAll('#iso-table th[data-key]')) {
    th.setAttribute('aria-sort', th.dataset.key !== sort.key ? 'none'
      : sort.dir > 0 ? 'ascending' : 'descending');
  }
  for (const fn of listeners) fn();
}

function queueRender() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(render);
}

// the listing: answers taken in order
const listing = new Listing({
  path: '/isos',
  render: () => {
    if (listing.error) return;
    isos = new Map(listing.items.map((i) => [i.path, i]));
    render();
  },
});

function isoFound(data) {
  if (typeof data.path !== 'string') return;
  const rec = { ...data };
  delete rec.task;
  const known = isos.has(rec.path);
  isos.set(rec.path, rec);
  if (!known) {
    fresh.add(rec.path);
    setTimeout(() => {
      fresh.delete(rec.path);
      const row = rows.get(rec.path);
      if (row) row.tr.classList.remove('is-new');
    }, 2500);
  }
  queueRender();
}

function isoRemoved(data) {
  if (isos.delete(data.path)) queueRender();
}

// -- the scan form ----------------------------------------------------------------------

const showScanError = (text) => showError('scan-error', text, ['scan-path']);

function currentScan() {
  let t = scanTaskId ? tasks.get(scanTaskId) : null;
  if (!t || TERMINAL.has(t.rec.status)) {
    // adopt the newest running scan (e.g. started before a reload, or elsewhere)
    const running = [...tasks.values()]
      .filter((x) => !x.stub && x.rec.kind === 'iso.scan' && !TERMINAL.has(x.rec.status))
      .sort((a, b) => (a.rec.created < b.rec.created ? 1 : -1));
    if (running.length) {
      t = running[0];
      scanTaskId = t.rec.id;
    }
  }
  return t;
}

function updateScanControls() {
  const t = currentScan();
  const stop = $('stop-btn');
  const status = $('scan-status');
  const running = t && !TERMINAL.has(t.rec.status);
  stop.hidden = !running;
  if (running) {
    stop.disabled = !!t.cancelling;
    stop.lastChild.textContent = t.cancelling ? 'Stopping…' : 'Stop';
    stop.setAttribute('aria-label', `Stop the scan of ${taskTarget(t.rec)}`);
    stop.dataset.taskId = t.rec.id;
  }
  if (t) {
    status.hidden = false;
    status.dataset.status = taskStatus(t);
    const where = taskTarget(t.rec);
    if (running) {
      status.textContent = t.cancelling ? `Stopping the scan of ${where}…` : `Scanning ${where}…`;
    } else {
      const msg = t.rec.message || '';
      const said = msg && msg.toLowerCase().replace(/\.$/, '') !== t.rec.status;
      status.textContent = `Scan of ${where} ${t.rec.status}${said ? `: ${msg}` : '.'}`;
    }
  } else {
    status.hidden = true;
  }
}

async function startScan(ev) {
  ev.preventDefault();
  const input = $('scan-path');
  const path = input.value.trim();
  showScanError('');
  if (!path) {
    showScanError('Enter the absolute path of a folder, for example /srv/isos.');
    input.focus();
    return;
  }
  const btn = $('scan-btn');
  btn.disabled = true;
  try {
    const r = await api('POST', '/isos/scan', { path });
    scanTaskId = r.data.id;
    upsertTask(r.data);
  } catch (e) {
    showScanError(e.message);
    input.focus();
  } finally {
    btn.disabled = false;
  }
}

async function stopScan() {
  const stop = $('stop-btn');
  const id = stop.dataset.taskId;
  if (!id || !tasks.get(id)) return;
  stop.disabled = true;
  try {
    await requestCancel(id);
  } catch (e) {
    showScanError(e.message);
    stop.disabled = false;
  }
}

export default {
  name: 'isos',
  page: { id: 'isos', title: 'ISO library' },
  events: {
    'iso.found': isoFound,
    'iso.removed': isoRemoved,
  },
  init() {
    table = new WindowedList({ container: $('iso-rows'), key: (i) => i.path, render: rowOf,
      estimate: 45, columns: 7 });
    $('scan-form').addEventListener('submit', startScan);
    $('stop-btn').addEventListener('click', stopScan);
    $('scan-path').addEventListener('input', () => {
      if (!$('scan-error').hidden) showScanError('');
    });
    $('iso-filter').addEventListener('input', (e) => {
      filter = e.target.value;
      queueRender();
    });
    for (const th of document.querySelectorAll('#iso-table th[data-key]')) {
      th.querySelector('button').addEventListener('click', () => {
        const key = th.dataset.key;
        sort = { key, dir: sort.key === key ? -sort.dir : 1 };
        render();
      });
    }
    watchTasks(null, updateScanControls);
  },
  start() {
    render();
  },
  async resync() {
    await listing.load();
    if (listing.error) throw new Error(listing.error); // the library is not optional: retry
  },
  stop() {
    listing.forget();
    isos.clear();
    rows.clear();
    fresh.clear();
    filter = '';
    scanTaskId = null;
    table.clear();
    updateScanControls();
  },
};
