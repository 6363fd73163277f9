/* The ISO library: every ISO found on the host (pools, scans), sortable and filterable,
 * updated live as a scan finds them; admins scan folders and follow the scan here. The
 * table is a windowed list: a scan of a large tree may find thousands.
 *
 * With several hosts (see hosts.js) each host's library is its own: an ISO is keyed by its
 * host and its path (one folder may be scanned on two hosts), each row says its host
 * ("on h2"), and the scan form offers the host whose folder to scan (a worker serving that
 * host scans it: while none does, the scan says it waits). Templates and VMs are made on
 * the local host only, for now: isoList() and hasIso() are the local host's ISOs. */

import { $, el, numberFmt, collator, humanSize, distroChip, matchesWords, showError } from '../core/dom.js';
import { api } from '../core/api.js';
import { isAdmin } from '../core/session.js';
import { TERMINAL, tasks, upsertTask, requestCancel, taskStatus, taskTarget, watchTasks } from '../core/tasks.js';
import { Listing } from '../core/listing.js';
import { WindowedList } from '../core/vlist.js';
import { fillHostSelect, isRemoteHost, localHost, manyHosts, onHosts } from './hosts.js';
import { _, _n } from '../core/i18n.js';

const SORT_KEYS = {
  name: (i) => i.name || '',
  distro: (i) => distroText(i),
  size: (i) => (typeof i.size === 'number' ? i.size : -1),
  bootable: (i) => (i.bootable ? 1 : 0),
  path: (i) => i.path || '',
  found_by: (i) => `${i.found_by || ''} ${i.pool || ''}`,
};

let isos = new Map(); // isoKey -> ISO record
const FOUND_BY = { pool: _('pool'), scan: _('scan') }; // how an ISO was found, in its row
const rows = new Map(); // isoKey -> { rec, tr }: a row is rebuilt only when its record changes
const fresh = new Set(); // isoKeys of the ISOs that arrived live, highlighted for a moment
let sort = { key: 'name', dir: 1 };
let filter = '';
let queued = false;
let scanTaskId = null; // the scan the Stop button stops
let table = null; // the WindowedList of #iso-rows
let scanHost = ''; // the host the scan form scans a folder of ('' until hosts are known)
const listeners = new Set();

/** The host of an ISO record: an event of the local host's scan names none. */
const hostOf = (iso) => iso.host || localHost();
/** An ISO's key: its host and its path (each host's library is its own). */
const isoKey = (iso) => `${hostOf(iso)}\n${iso.path}`;

export function distroText(iso) {
  const d = iso.os_distro || 'unknown';
  const v = iso.os_version || 'unknown';
  if (d === 'unknown') return 'unknown';
  return v === 'unknown' ? d : `${d} ${v}`;
}

/** The local host's ISOs of the library (records; do not change them): templates and
 * VMs are made on the local host. */
export const isoList = () => [...isos.values()].filter((i) => !isRemoteHost(hostOf(i)));
export const hasIso = (path) => isos.has(isoKey({ path }));
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
  if (c === 0) c = collator.compare(hostOf(a), hostOf(b));
  return c * sort.dir;
}

function matches(iso, q) {
  if (!q) return true;
  const hay = [iso.name, distroText(iso), iso.path, iso.found_by, iso.pool,
    iso.bootable ? 'bootable' : '', manyHosts() ? hostOf(iso) : ''].join(' ').toLowerCase();
  return matchesWords(hay, q);
}

function isoRow(iso) {
  const tr = el('tr');
  tr.dataset.path = iso.path;
  const name = el('td', 'cell-name');
  name.append(el('span', 'iso-name', iso.name));
  name.title = iso.path;
  const many = manyHosts();
  const remote = isRemoteHost(hostOf(iso));
  if (many) {
    tr.dataset.host = hostOf(iso);
    name.append(el('span', 'obj-host', _('on {host}', { host: hostOf(iso) })));
    name.title = _('{path} on {host}', { path: iso.path, host: hostOf(iso) });
  }
  const distro = el('td', 'cell-distro');
  distro.append(distroChip(iso.os_distro, iso.os_version));
  const size = el('td', 'num', humanSize(iso.size));
  if (typeof iso.size === 'number') size.title = _n('{n} byte', '{n} bytes', iso.size);
  const boot = el('td', 'cell-boot');
  boot.append(el('span', iso.bootable ? 'yes' : 'no', iso.bootable ? _('Yes') : _('No')));
  // long paths lose their start, not their end: the folder and file are what tell them apart
  const path = el('td', 'cell-path mono');
  const bdi = el('bdi', null, iso.path);
  bdi.dir = 'ltr';
  path.append(bdi);
  path.title = iso.path;
  const by = el('td', 'cell-by');
  by.append(el('span', `tag tag-${iso.found_by === 'pool' ? 'pool' : 'scan'}`,
    iso.found_by === 'pool' && iso.pool ? _('pool {pool}', { pool: iso.pool }) : FOUND_BY[iso.found_by] || iso.found_by || '—'));
  const act = el('td', 'cell-actions');
  if (isAdmin() && !remote) { // templates are the local host's: from its own ISOs
    const mk = el('button', 'btn btn-small btn-plain iso-make-template', _('+ Template'));
    mk.type = 'button';
    mk.setAttribute('aria-label', _('Create a template from {name}', { name: iso.name }));
    mk.title = _('Create a template from {name}', { name: iso.name });
    mk.addEventListener('click', () => prefill(iso.path));
    act.append(mk);
  }
  tr.append(name, distro, size, boot, path, by, act);
  if (fresh.has(isoKey(iso))) tr.classList.add('is-new');
  return tr;
}

let rowsMany = false; // whether the cached rows say their host

function rowOf(iso) {
  const key = isoKey(iso);
  let cached = rows.get(key);
  if (!cached || cached.rec !== iso) {
    cached = { rec: iso, tr: isoRow(iso) };
    rows.set(key, cached);
  }
  return cached.tr;
}

function render() {
  queued = false;
  const q = filter.trim().toLowerCase();
  const all = [...isos.values()];
  const shown = all.filter((i) => matches(i, q)).sort(compare);
  if (rowsMany !== manyHosts()) { // the rows say their host only with several
    rowsMany = manyHosts();
    rows.clear();
  }
  for (const key of rows.keys()) if (!isos.has(key)) rows.delete(key);
  table.setItems(shown, { now: true });
  const empty = $('iso-empty');
  if (!all.length) {
    $('iso-empty-text').textContent = isAdmin() ? _('No ISO images yet. Scan a folder to find some.')
      : _('No ISO images yet.');
    empty.hidden = false;
  } else if (!shown.length) {
    $('iso-empty-text').textContent = _('No image matches “{filter}”.', { filter: filter.trim() });
    empty.hidden = false;
  } else {
    empty.hidden = true;
  }
  const n = all.length;
  $('iso-count').textContent = shown.length === n ? _n('{n} image', '{n} images', n)
    : _n('{shown} of {n} image', '{shown} of {n} images', n, { shown: numberFmt.format(shown.length) });
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
    isos = new Map(listing.items.map((i) => [isoKey(i), i]));
    render();
  },
});

function isoFound(data) {
  if (typeof data.path !== 'string') return;
  const rec = { ...data };
  delete rec.task;
  if (!rec.host) rec.host = localHost(); // as GET /isos says it
  const key = isoKey(rec);
  const known = isos.has(key);
  isos.set(key, rec);
  if (!known) {
    fresh.add(key);
    setTimeout(() => {
      fresh.delete(key);
      const row = rows.get(key);
      if (row) row.tr.classList.remove('is-new');
    }, 2500);
  }
  queueRender();
}

function isoRemoved(data) {
  if (typeof data.path === 'string' && isos.delete(isoKey(data))) queueRender();
}

// -- the scan form ----------------------------------------------------------------------

const showScanError = (text) => showError('scan-error', text, ['scan-path']);

/** The scan form's host chooser: shown with several hosts (the local host's by default). */
function fillScanHost() {
  const many = manyHosts();
  $('scan-host-field').hidden = !many;
  if (many) scanHost = fillHostSelect($('scan-host'), scanHost || localHost());
}

/** What a scan is of: its folder, and with several hosts its host. */
function scanTarget(rec) {
  const where = taskTarget(rec);
  return manyHosts() && rec.host ? _('{path} on {host}', { path: where, host: rec.host }) : where;
}

/** Whether a scan still waits for a worker serving its host (none does now). */
const waiting = (rec) => rec.status === 'running' && !rec.attempt && rec.errcode === 'KCHTASK0008E';

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
    stop.lastChild.textContent = t.cancelling ? _('Stopping…') : _('Stop');
    stop.setAttribute('aria-label', _('Stop the scan of {t}', { t: scanTarget(t.rec) }));
    stop.dataset.taskId = t.rec.id;
  }
  if (t) {
    status.hidden = false;
    status.dataset.status = taskStatus(t);
    const where = scanTarget(t.rec);
    if (running) {
      status.textContent = t.cancelling ? _('Stopping the scan of {where}…', { where })
        : waiting(t.rec) ? _('The scan of {where} is waiting: {message}', { where, message: t.rec.message }) : _('Scanning {where}…', { where });
    } else {
      const msg = t.rec.message || '';
      const said = msg && msg.toLowerCase().replace(/\.$/, '') !== t.rec.status;
      status.textContent = said ? _('Scan of {where} {status}: {message}', { where, status: t.rec.status, message: msg })
        : _('Scan of {where} {status}.', { where, status: t.rec.status });
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
    showScanError(_('Enter the absolute path of a folder, for example /srv/isos.'));
    input.focus();
    return;
  }
  const body = { path };
  if (manyHosts()) body.host = $('scan-host').value || localHost(); // whose folder it is
  const btn = $('scan-btn');
  btn.disabled = true;
  try {
    const r = await api('POST', '/isos/scan', body);
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
  page: { id: 'isos', title: _('ISO library') },
  events: {
    'iso.found': isoFound,
    'iso.removed': isoRemoved,
  },
  init() {
    table = new WindowedList({ container: $('iso-rows'), key: isoKey, render: rowOf,
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
    onHosts(() => {
      fillScanHost();
      if (rowsMany !== manyHosts()) queueRender(); // the rows' "on <host>" labels
    });
    $('scan-host').addEventListener('change', (e) => {
      scanHost = e.target.value;
    });
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
    scanHost = '';
    $('scan-host-field').hidden = true;
    $('scan-host').replaceChildren();
    table.clear();
    updateScanControls();
  },
};
