/* What is wrong with the service, said where everyone sees it: the connection chip in the
 * header, and a banner with each problem GET /health knows (what, why, how to fix it),
 * for whoever opens the page at any time, the login page included (/health is public:
 * someone who cannot sign in because Redis is away is told why). It is read again at every (re)connection and
 * whenever a service.degraded or service.recovered event says something changed, and
 * every 15 s while anything is wrong or nobody is signed in. Admins can collect a debug report from the banner,
 * for a bug report or a support case, and follow it there. */

import { $, el, announce } from './dom.js';
import { api, offers, capabilities, onServerKnown } from './api.js';
import { onConnChange, connState } from './stream.js';
import { isAdmin, signedIn } from './session.js';
import { upsertTask, watchTasks, TERMINAL } from './tasks.js';
import { REPORT_KINDS, reportNameOf, reportsBeingMade } from '../pages/reports.js';
import { _ } from './i18n.js';

const RECHECK = 5000; // ms between two looks while something is wrong

let problems = []; // [{id, component, what, reason, fix}]
let libvirtDown = false;
let asked = 0;
let recheckTimer = null;
let reportTask = null; // the id of the report the banner follows
const libvirtListeners = new Set();

/** ``fn(down)`` when libvirt goes away or comes back. */
export function onLibvirt(fn) {
  libvirtListeners.add(fn);
}

export const libvirtIsDown = () => libvirtDown;

function setLibvirt(down) {
  if (libvirtDown === down) return;
  libvirtDown = down;
  for (const fn of libvirtListeners) fn(down);
}

function updateConn() {
  const c = connState();
  let st;
  let text;
  if (!c.open) {
    st = c.everOpen ? 'reconnecting' : 'connecting';
    text = c.everOpen ? _('Reconnecting…') : _('Connecting…');
  } else if (problems.length) {
    st = 'degraded';
    text = _('Degraded');
  } else {
    st = 'live';
    text = _('Live');
  }
  const chip = $('conn');
  if (chip.dataset.state !== st) {
    chip.dataset.state = st;
    $('conn-text').textContent = text;
    chip.title = st === 'live' ? _('Receiving live updates')
      : st === 'degraded' ? _('Connected, but a service is degraded')
        : _('Live updates are interrupted; retrying');
  }
}

const keyOf = (p) => p.id || p.what || p.component || '';

function problemItem(p) {
  const li = el('li', 'banner-problem');
  li.dataset.problem = keyOf(p);
  li.append(el('strong', 'banner-what', p.what || p.component || _('A component')));
  if (p.reason) li.append(el('span', 'banner-reason', p.reason));
  if (p.fix) li.append(el('span', 'banner-fix', p.fix));
  return li;
}

function render() {
  const had = new Set([...$('banner-problems').children].map((li) => li.dataset.problem));
  $('banner-title').textContent = problems.length > 1
    ? _('kimchi is degraded: {n} problems', { n: problems.length }) : _('kimchi is degraded');
  $('banner-problems').replaceChildren(...problems.map(problemItem));
  $('banner').hidden = !problems.length;
  const fresh = problems.filter((p) => !had.has(keyOf(p)));
  if (fresh.length) {
    announce(_('kimchi is degraded: {problems}', { problems: fresh.map((p) => `${p.what}: ${p.reason}`).join('; ') }));
  }
  renderReport();
  updateConn();
  clearTimeout(recheckTimer);
  // while something is wrong, and on the login page (no event stream there to say so)
  recheckTimer = problems.length || !signedIn() ? setTimeout(checkHealth, RECHECK) : null;
}

/** Read GET /health (a 503 says the same in its body, while Redis is away). */
export async function checkHealth() {
  const seq = ++asked;
  let h;
  try {
    const r = await fetch('/health', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    h = await r.json();
  } catch (e) {
    return; // kimchid away: the chip says so
  }
  if (seq !== asked || !h || typeof h !== 'object') return;
  if (h.libvirt === 'down' || h.libvirt === 'up') setLibvirt(h.libvirt === 'down');
  problems = Array.isArray(h.problems) ? h.problems.filter((p) => p && typeof p === 'object') : [];
  if (h.status === 'degraded' && !problems.length) {
    const down = ['redis', 'libvirt'].filter((k) => h[k] === 'down');
    problems = down.map((k) => ({ id: k, component: k, what: k, reason: _('not answering'), fix: '' }));
  }
  render();
}

/** An event said something broke: show it now, then ask /health for the whole picture. */
function degraded(d) {
  if (d.component === 'libvirt' && d.status === 'down') setLibvirt(true);
  const listed = Array.isArray(d.problems) ? d.problems : [{
    id: d.component, component: d.component,
    what: d.component ? _('{component} is {status}', { component: d.component, status: d.status || _('down') })
      : _('A component is {status}', { status: d.status || _('down') }),
    reason: d.reason || '', fix: d.fix || '',
  }];
  const ids = new Set(listed.map(keyOf));
  problems = [...problems.filter((p) => !ids.has(keyOf(p)) && p.component !== d.component), ...listed];
  render();
  checkHealth();
}

function recovered(d) {
  if (d.component === 'libvirt') setLibvirt(false);
  problems = problems.filter((p) => p.component !== d.component);
  render();
  checkHealth();
}

// -- a debug report from the banner (admins) --------------------------------------------

function reportOffered() {
  const caps = capabilities();
  return isAdmin() && offers('/debugreports', 'post') && !(caps && caps.system_report_tool === false);
}

function renderReport() {
  const box = $('banner-report');
  box.hidden = !reportOffered();
  if (box.hidden) return;
  if (!reportTask) {
    const running = reportsBeingMade()[0];
    if (running) reportTask = running.id; // one being made already (elsewhere): follow it
  }
}

function showReport(rec) {
  const bar = $('banner-report-bar');
  const status = $('banner-report-status');
  const link = $('banner-report-download');
  const make = $('banner-report-make');
  const name = reportNameOf(rec);
  if (!TERMINAL.has(rec.status)) {
    bar.hidden = false;
    if (typeof rec.progress === 'number') bar.value = rec.progress;
    else bar.removeAttribute('value');
    status.textContent = _('Collecting {name}: {message}', { name, message: rec.message || _('waiting for a worker') });
    make.disabled = true;
    link.hidden = true;
    return;
  }
  bar.hidden = true;
  make.disabled = false;
  if (rec.status === 'finished') {
    status.textContent = _('The debug report {name} is ready: download it and attach it to your support request.', { name });
    link.href = `/debugreports/${encodeURIComponent(name)}/content`;
    link.setAttribute('download', `${name}.tar.xz`);
    link.hidden = false;
    link.focus();
  } else {
    status.textContent = _('The debug report was not made: {status}', { status: rec.message || rec.status });
    link.hidden = true;
  }
}

async function makeReport() {
  const make = $('banner-report-make');
  make.disabled = true;
  $('banner-report-download').hidden = true;
  $('banner-report-status').textContent = _('Starting the debug report…');
  try {
    const r = await api('POST', '/debugreports', {});
    reportTask = r.data.id;
    upsertTask(r.data);
    showReport(r.data);
  } catch (e) {
    make.disabled = false;
    $('banner-report-status').textContent = _('The debug report could not be started: {message}', { message: e.message });
  }
}

export default {
  name: 'health',
  events: {
    'service.degraded': degraded,
    'service.recovered': recovered,
  },
  init() {
    onConnChange((c) => {
      updateConn();
      if (c.open) checkHealth();
    });
    onServerKnown(renderReport);
    watchTasks(REPORT_KINDS, (rec) => {
      if (rec.params && rec.params.upload) return; // part of another host's report
      if (!reportTask) renderReport();
      if (rec.id === reportTask) showReport(rec);
    });
    $('banner-report-make').addEventListener('click', makeReport);
    checkHealth(); // before anyone signs in: the login page shows the problems too
  },
  start() {
    updateConn();
    checkHealth();
  },
  stop() {
    clearTimeout(recheckTimer);
    recheckTimer = null;
    problems = [];
    libvirtDown = false;
    reportTask = null;
    $('banner-problems').replaceChildren();
    $('banner-report-status').textContent = '';
    $('banner-report-download').hidden = true;
    $('banner-report-bar').hidden = true;
    $('banner').hidden = true;
    checkHealth(); // for the login page that follows
  },
};
