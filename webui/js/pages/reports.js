/* Debug reports (admins): made by a worker with the host's report tool (a task: the
 * report's row shows its progress until it is listed, and can be stopped), listed newest
 * first, downloaded, renamed and deleted. Without the tool (the capabilities say so),
 * the page says how to install it. With several hosts the form offers the host to report
 * on: another host's report is a debugreport.fetch task (its worker's debugreport.collect
 * job, marked `upload`, is part of it and not shown as a report of its own). */

import { $, el, announce, collator, humanSize, whenText, actionButton, showNameError, clearOnInput,
  replaceRowsKeepingFocus } from '../core/dom.js';
import { api, remove, capabilities, onServerKnown } from '../core/api.js';
import { askConfirm, openDialog } from '../core/dialogs.js';
import { Listing, showListingState } from '../core/listing.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { TERMINAL, upsertTask, watchTasks, runningOf, requestCancel, isCancelling } from '../core/tasks.js';

import { fillHostSelect, localHost, manyHosts, onHosts } from './hosts.js';
import { _, _n } from '../core/i18n.js';

/** The tasks that make a report: the local host's, and another host's. */
export const REPORT_KINDS = ['debugreport.collect', 'debugreport.fetch'];

/** The reports being made, newest first (without the jobs that are part of another's). */
export function reportsBeingMade() {
  return REPORT_KINDS.flatMap((k) => runningOf(k))
    .filter((rec) => !(rec.params && rec.params.upload))
    .sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
}

let reportHost = ''; // the host the form reports on ('' until the hosts are known)

/** The name of the report a task makes. */
export function reportNameOf(rec) {
  return rec.params && typeof rec.params.name === 'string' ? rec.params.name
    : (/^\/debugreports\/([^/]+)$/.exec(rec.target_uri || '') || [])[1] || '';
}

const reportPath = (name) => `/debugreports/${encodeURIComponent(name)}`;

const making = new Map(); // task id -> its row, for the reports being made
let renaming = null; // the report the rename dialog is about
let focusRenamed = null; // a report renamed whose row was not listed yet when the dialog closed

const reports = new Listing({
  path: '/debugreports',
  render: () => renderReports(),
  active: () => isShown('reports'),
});

function loadReports() {
  if (isAdmin()) reports.load();
}

// -- the reports being made ------------------------------------------------------------------

/** One row per report being made, kept (not rebuilt) while its progress moves. */
function renderMaking() {
  const recs = reportsBeingMade();
  const ids = new Set(recs.map((r) => r.id));
  for (const [id, row] of making) {
    if (!ids.has(id)) { row.tr.remove(); making.delete(id); }
  }
  const body = $('report-making');
  recs.forEach((rec, i) => {
    let row = making.get(rec.id);
    if (!row) {
      const name = reportNameOf(rec);
      const tr = el('tr', 'report-pending');
      tr.dataset.name = name;
      tr.setAttribute('aria-busy', 'true');
      const made = el('td', 'report-progress');
      const bar = el('progress', 'bar');
      bar.max = 100;
      bar.setAttribute('aria-label', _('Making {name}', { name }));
      const msg = el('p', 'help report-msg');
      made.append(bar, msg);
      const act = el('td', 'cell-actions');
      const stop = actionButton(_('Stop'), 'btn-plain report-stop', _('Stop making {name}', { name }),
        (b) => stopReport(rec.id, b));
      act.append(stop);
      tr.append(el('td', 'cell-name', name), made, el('td', 'num', '—'), act);
      row = { tr, bar, msg, stop };
      making.set(rec.id, row);
    }
    if (typeof rec.progress === 'number') row.bar.value = rec.progress;
    else row.bar.removeAttribute('value');
    const stopping = isCancelling(rec.id);
    row.msg.textContent = stopping ? _('Stopping…') : rec.message || _('Waiting for a worker');
    row.stop.disabled = stopping;
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  renderCount();
}

async function stopReport(id, button) {
  button.disabled = true;
  try {
    await requestCancel(id);
  } catch (e) {
    if (e.status !== 400) { button.disabled = false; showReportError(e.message); }
  }
}

/** A report's task ended: a finished one is in the list now. */
function reportTaskEnded(rec, why) {
  renderMaking();
  if (rec.status === 'finished') loadReports();
  // an old failure met again in a task listing (a reload, a reconnection) is no news
  else if (rec.status === 'failed' && rec.message && why !== 'listed') showReportError(rec.message);
}

// -- the list ----------------------------------------------------------------------------------

function reportRow(r) {
  const tr = el('tr');
  tr.dataset.name = r.name;
  const name = el('td', 'cell-name', r.name);
  name.title = r.file || r.name;
  const made = el('td', null, whenText(r.time));
  made.title = r.time || '';
  const size = el('td', 'num', humanSize(r.size));
  const act = el('td', 'cell-actions');
  const link = el('a', 'btn btn-small btn-plain report-download', _('Download'));
  link.href = r.uri || `${reportPath(r.name)}/content`;
  link.setAttribute('download', r.file || `${r.name}.tar.xz`);
  link.setAttribute('aria-label', _('Download {name}', { name: r.name }));
  act.append(link,
    actionButton(_('Rename'), 'btn-plain report-rename', _('Rename {name}', { name: r.name }), () => openRename(r.name)),
    actionButton(_('Delete'), 'btn-danger-outline report-delete', _('Delete {name}', { name: r.name }), () => askDeleteReport(r)));
  tr.append(name, made, size, act);
  return tr;
}

function renderReports() {
  const list = reports.items || [];
  const sorted = [...list].sort((a, b) => collator.compare(b.time || '', a.time || '')
    || collator.compare(a.name, b.name));
  const rows = $('report-rows');
  replaceRowsKeepingFocus(rows, sorted.map(reportRow)); // the same control of the same report
  if (focusRenamed) {
    const button = rows.querySelector(`tr[data-name="${CSS.escape(focusRenamed)}"] .report-rename`);
    if (button) {
      focusRenamed = null;
      if (document.activeElement === $('report-name')) button.focus();
    }
  }
  renderMaking();
}

function renderCount() {
  const n = making.size;
  showListingState(reports, { prefix: 'report', noun: (n) => _n('{n} report', '{n} reports', n), what: _('reports'),
    emptyText: _('No debug reports. Make one above when something goes wrong.'),
    extra: n ? _(' · {n} being made', { n }) : '', busy: n });
  const caps = capabilities();
  const noTool = !!caps && caps.system_report_tool === false;
  $('report-notool').hidden = !noTool;
  $('report-create').disabled = noTool;
}

function reportChanged(d, ev) {
  if (typeof d.name !== 'string') return;
  if (ev.type === 'debugreport.deleted') {
    reports.patch((items) => items.filter((x) => x.name !== d.name));
  } else {
    const { previous, ...rec } = d;
    reports.patch((items) => [...items.filter((x) => x.name !== previous && x.name !== d.name), rec]);
  }
}

// -- making, renaming, deleting ----------------------------------------------------------------

function showReportError(text) {
  const e = $('report-error');
  e.textContent = text;
  e.hidden = !text;
  $('report-name').setAttribute('aria-invalid', text ? 'true' : 'false');
}

/** The form's host chooser: shown with several hosts, the local one first. */
function renderHostChoice() {
  $('report-host-field').hidden = !manyHosts();
  if (manyHosts()) reportHost = fillHostSelect($('report-host'), reportHost || localHost());
}

async function makeReport(ev) {
  ev.preventDefault();
  showReportError('');
  const input = $('report-name');
  const name = input.value.trim();
  if (name && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) {
    showReportError(_('Use letters, digits, - and _ (starting with a letter or digit), at most 64.'));
    input.focus();
    return;
  }
  const btn = $('report-create');
  btn.disabled = true;
  try {
    const body = name ? { name } : {};
    if (manyHosts() && reportHost && reportHost !== localHost()) body.host = reportHost;
    const r = await api('POST', '/debugreports', body);
    upsertTask(r.data);
    input.value = '';
    announce(_('Making debug report {name}', { name: reportNameOf(r.data || {}) || name }));
  } catch (e) {
    showReportError(e.message);
    input.focus();
  } finally {
    btn.disabled = false;
    renderCount();
  }
}

function openRename(name) {
  renaming = name;
  focusRenamed = null;
  $('report-rename-title').textContent = _('Rename {name}', { name });
  const input = $('report-rename-name');
  input.value = name;
  showNameError('report-rename', '');
  $('report-rename-dialog').returnValue = '';
  openDialog($('report-rename-dialog'), { focus: input, back: renameClosed });
  input.select();
}

/** Where the keyboard goes once the dialog is closed: the report's Rename button. */
function renameClosed() {
  const name = renaming;
  renaming = null;
  const tr = [...$('report-rows').children].find((x) => x.dataset.name === name);
  if (tr) return tr.querySelector('.report-rename');
  // renamed, but not listed under its new name yet: its button once it is
  if ($('report-rename-dialog').returnValue === 'done') focusRenamed = name;
  return $('report-name');
}

async function submitRename(ev) {
  ev.preventDefault();
  const from = renaming;
  const to = $('report-rename-name').value.trim();
  if (!from || !to || to === from) { $('report-rename-dialog').close(); return; }
  const btn = $('report-rename-submit');
  btn.disabled = true;
  try {
    await api('PUT', reportPath(from), { name: to });
    renaming = to;
    $('report-rename-dialog').close('done');
    announce(_('{from} renamed to {to}', { from, to }));
    loadReports();
  } catch (e) {
    showNameError('report-rename', e.message);
    $('report-rename-name').focus();
  } finally {
    btn.disabled = false;
  }
}

function askDeleteReport(r) {
  askConfirm({
    title: _('Delete debug report?'),
    text: _('The report “{name}” ({size}) is deleted from this host. Copies already downloaded are not affected.', { name: r.name, size: humanSize(r.size) }),
    run: async () => {
      await remove(reportPath(r.name)); // gone already: fine
      reports.patch((items) => items.filter((x) => x.name !== r.name));
      announce(_('Report {name} deleted', { name: r.name }));
    },
    back: () => document.querySelector('#report-rows .report-delete') || $('report-name'),
  });
}

export default {
  name: 'reports',
  page: {
    id: 'reports',
    title: _('Debug reports'),
    admin: true,
    show() {
      if (signedIn()) loadReports();
    },
  },
  events: {
    'debugreport.updated debugreport.deleted': reportChanged,
  },
  init() {
    watchTasks(REPORT_KINDS, (rec, why) => {
      if (rec.params && rec.params.upload) return; // part of a debugreport.fetch
      if (TERMINAL.has(rec.status)) reportTaskEnded(rec, why);
      else renderMaking();
    });
    onHosts(renderHostChoice);
    $('report-host').addEventListener('change', () => { reportHost = $('report-host').value; });
    onServerKnown(renderCount);
    $('report-form').addEventListener('submit', makeReport);
    clearOnInput('report-error', ['report-name'], () => showReportError(''));
    $('report-rename-form').addEventListener('submit', submitRename);
    $('report-rename-cancel').addEventListener('click', () => $('report-rename-dialog').close());
    clearOnInput('report-rename-error', ['report-rename-name'], () => showNameError('report-rename', ''));
  },
  async resync() {
    await reports.relist(); // shown only to admins
  },
  stop() {
    reports.forget();
    making.clear();
    renaming = null;
    focusRenamed = null;
    $('report-rows').replaceChildren();
    $('report-making').replaceChildren();
    $('report-count').textContent = _('Loading…');
    $('report-empty').hidden = true;
    showReportError('');
  },
};
