/* Hosts: the KVM hosts kimchi manages (the local one, named "local", and those an admin
 * adds by their libvirt URI), each with its connection state and, while it is not
 * connected, libvirt's reason. Kept live by the host.* events on every page, not only
 * this one: the VMs page shows each VM's host and a host filter when there are several,
 * and both pages say which hosts are unreachable (their VMs are not listed meanwhile).
 * Each connected host's row shows its CPU use and memory in use, from the host.stats
 * notices naming it: those two figures change in place, the rows stay as they are. */

import { $, el, announce, numberFmt, humanSize, actionButton, clearOnInput,
  replaceRowsKeepingFocus } from '../core/dom.js';
import { api, remove } from '../core/api.js';
import { askConfirm } from '../core/dialogs.js';
import { Listing, showListingState } from '../core/listing.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { _, _n } from '../core/i18n.js';

export const LOCAL_HOST = 'local';
const STATE_TEXT = { connected: _('Connected'), connecting: _('Connecting'), unreachable: _('Unreachable') };
const STATE_CLASS = { connected: 'running', connecting: 'paused', unreachable: 'crashed' };
// "3.1 of 15.6 GiB", in each unit
const IN_USE = [(p) => _('{used} of {total} B', p), (p) => _('{used} of {total} KiB', p),
  (p) => _('{used} of {total} MiB', p), (p) => _('{used} of {total} GiB', p),
  (p) => _('{used} of {total} TiB', p), (p) => _('{used} of {total} PiB', p)];

const listeners = new Set();
const figures = new Map(); // host name -> its latest host.stats sample
let downKey = ''; // what the unreachable-hosts notices say now (rebuilt only on a change)
let laterTimer = null;

// listed on every page while signed in: the VMs page needs the hosts too
const hosts = new Listing({
  path: '/hosts',
  render: () => changed(),
  active: () => signedIn(),
});

export const hostPath = (name) => `/hosts/${encodeURIComponent(name)}`;

/** The hosts known (the local one first), or [] while unknown. */
export const hostList = () => hosts.items || [];

/** The name of the local host ("local"). */
export function localHost() {
  const h = hostList().find((x) => x && x.local);
  return h ? h.name : LOCAL_HOST;
}

/** Whether a VM's ``host`` is another host than the local one. */
export const isRemoteHost = (name) => typeof name === 'string' && !!name && name !== localHost();

/** ``fn()`` whenever the hosts (or their states) change. */
export function onHosts(fn) {
  listeners.add(fn);
}

/** "Connected", "Unreachable"...: a host's state in words. */
export const hostStateText = (state) => STATE_TEXT[state] || state || _('Connecting');

/** Whether kimchi manages several hosts: the pages then say whose each object is. */
export const manyHosts = () => hostList().length > 1;

/** The address of an object of a host (``kind``: storagepools, networks): the root one
 * (``/<kind>/<name>``) for the local host's, which names the local host's object of that
 * name; the canonical ``/hosts/<host>/<kind>/<name>`` for another host's. */
export function hostObjectPath(host, kind, name) {
  const tail = `/${kind}/${encodeURIComponent(name)}`;
  return isRemoteHost(host) ? `${hostPath(host)}${tail}` : tail;
}

/** The collection ``kind`` of a host, where a new object of it is made: the root one for
 * the local host. */
export const hostCollectionPath = (host, kind) => (isRemoteHost(host) ? `${hostPath(host)}/${kind}`
  : `/${kind}`);

/** Fills a host <select> with one option per host (``first``: the text of a first option
 * of value '', such as "All hosts"), rebuilt only when they changed; keeps ``value`` when
 * it is still offered. Answers the value chosen. */
export function fillHostSelect(sel, value, first = null) {
  const opts = first === null ? [] : [['', first]];
  for (const h of hostList()) {
    opts.push([h.name, h.state === 'unreachable' ? _('{name} (unreachable)', { name: h.name }) : h.name]);
  }
  const had = [...sel.options].map((o) => `${o.value}\t${o.textContent}`).join('\n');
  if (had !== opts.map(([v, t]) => `${v}\t${t}`).join('\n')) {
    sel.replaceChildren(...opts.map(([v, t]) => {
      const o = el('option', null, t);
      o.value = v;
      return o;
    }));
  }
  const values = opts.map(([v]) => v);
  sel.value = values.includes(value) ? value : values[0] || '';
  return sel.value;
}

/** replaceRowsKeepingFocus for rows of several hosts' objects, each keyed by its host and
 * its name (``data-host``, set with several hosts only, and ``data-name``): the control
 * focused stays focused in its row's new self. */
export function replaceHostRowsKeepingFocus(tbody, rows) {
  const active = document.activeElement;
  const row = active && active.closest && active.closest(`#${tbody.id} tr`);
  const again = row ? [row.dataset.host || '', row.dataset.name,
    active.getAttribute('aria-label')] : null;
  tbody.replaceChildren(...rows);
  if (!again) return;
  const all = [...tbody.children];
  const tr = all.find((x) => (x.dataset.host || '') === again[0] && x.dataset.name === again[1])
    || all.find((x) => x.dataset.name === again[1]); // its host just became known, or forgotten
  const controls = tr ? [...tr.querySelectorAll('button, a')] : [];
  const same = controls.find((b) => b.getAttribute('aria-label') === again[2]);
  const c = same || controls[0];
  if (c) c.focus();
}

function changed() {
  renderHosts();
  renderDown();
  for (const fn of listeners) fn();
}

// -- the list ------------------------------------------------------------------------------

const isNumber = (n) => typeof n === 'number' && isFinite(n);

function count(n) {
  return isNumber(n) ? numberFmt.format(n) : '—';
}

/** "3.1 of 15.6 GiB": memory in use, in the unit of the total. */
function inUseText(used, total) {
  let i = 0;
  while (total >= 1024 ** (i + 1) && i < IN_USE.length - 1) i += 1;
  const n = (v) => (v / 1024 ** i).toFixed(i ? 1 : 0);
  return IN_USE[i]({ used: n(used), total: n(total) });
}

/** The CPU use and memory in use of a host as its row says them: "—" while it is not
 * connected, before its first sample, or for a figure its libvirtd does not tell (null). */
function figuresText(h) {
  const f = h.state === 'connected' ? figures.get(h.name) : null;
  if (!f) return ['—', '—'];
  const m = f.memory && typeof f.memory === 'object' ? f.memory : {};
  return [isNumber(f.cpu_utilization) ? `${f.cpu_utilization.toFixed(1)} %` : '—',
    isNumber(m.total) && m.total > 0 && isNumber(m.avail) ? inUseText(m.total - m.avail, m.total) : '—'];
}

function hostRow(h) {
  const tr = el('tr');
  tr.dataset.name = h.name;
  tr.dataset.state = h.state || '';
  const name = el('td', 'cell-name');
  name.append(el('span', 'host-name', h.name));
  if (h.local) name.append(el('span', 'tag host-local', _('this host')));
  const uri = el('bdi', 'host-uri mono', h.uri || '—');
  uri.dir = 'ltr';
  name.append(uri);
  const st = el('td', 'host-state');
  const state = h.state || 'connecting';
  st.append(el('span', `state state-${STATE_CLASS[state] || 'shutoff'}`, STATE_TEXT[state] || state));
  if (state !== 'connected' && h.reason) st.append(el('p', 'host-reason', h.reason));
  const up = state === 'connected';
  const vms = h.vms && typeof h.vms === 'object' ? h.vms : {};
  const act = el('td', 'cell-actions');
  if (isAdmin() && !h.local) {
    act.append(actionButton(_('Remove'), 'btn-danger-outline host-remove', _('Remove host {name}', { name: h.name }),
      () => askRemove(h)));
  }
  const [cpuUse, memUse] = figuresText(h);
  // each with its live figure below: "4" over "12.3 %", "15.6 GiB" over "3.1 of 15.6 GiB"
  const cpus = el('td', 'num');
  cpus.append(el('span', 'host-cpus', up || h.cpus ? count(h.cpus) : '—'),
    el('span', 'host-use host-cpu-use', cpuUse));
  const memory = el('td', 'num');
  memory.append(el('span', 'host-memory', h.memory ? humanSize(h.memory) : '—'),
    el('span', 'host-use host-mem-use', memUse));
  tr.append(name, st, cpus, memory,
    el('td', 'num', up ? _('{running} of {total}', { running: count(vms.running), total: count(vms.total) }) : '—'),
    el('td', 'num', count(h.workers)),
    act);
  return tr;
}

function renderHosts() {
  const list = hostList();
  replaceRowsKeepingFocus($('host-rows'), list.map(hostRow));
  const down = list.filter((h) => h.state === 'unreachable').length;
  showListingState(hosts, { prefix: 'host', noun: (n) => _n('{n} host', '{n} hosts', n), what: _('hosts'),
    emptyText: _('No hosts.'), extra: down ? _(' · {down} unreachable', { down: numberFmt.format(down) }) : '' });
}

/** "Host h3 is unreachable: <libvirt's reason>. <tail>" for each unreachable host. */
function downLines(down, tail) {
  return down.map((h) => {
    const p = el('p', 'hosts-down-line');
    const words = el('span');
    const reason = (h.reason || '').trim().replace(/\.+$/, '');
    words.append(el('strong', null, _('Host {name} is unreachable', { name: h.name })),
      document.createTextNode(`${reason ? `: ${reason}` : ''}. ${tail}`));
    p.append(words);
    return p;
  });
}

function renderDown() {
  const down = hostList().filter((h) => h.state === 'unreachable');
  const key = JSON.stringify(down.map((h) => [h.name, h.reason]));
  const badge = $('nav-hosts-down');
  badge.hidden = !down.length;
  badge.replaceChildren(document.createTextNode(String(down.length)),
    el('span', 'visually-hidden', ` ${_('unreachable')}`));
  if (key === downKey) return; // the live regions speak only when their words change
  downKey = key;
  $('hosts-down').replaceChildren(...downLines(down,
    _('kimchi keeps trying: its VMs are not listed until it comes back.')));
  $('vm-hosts-down').replaceChildren(...downLines(down,
    _('Its VMs are not listed until it comes back.')));
}

// -- live updates ------------------------------------------------------------------------

/** List again now and in a while: a host just connected reads its VMs a moment later (no
 * event says when: its VM counts are known once they are read). */
function relistSoonAndLater() {
  hosts.soon();
  clearTimeout(laterTimer);
  laterTimer = setTimeout(() => {
    laterTimer = null;
    if (signedIn()) hosts.load();
  }, 2000);
}

/** A VM made, gone or changing state changes its host's counts: shown on this page only. */
function vmsChanged() {
  if (isShown('hosts')) hosts.soon(300);
}

/** A host's new figures: the two figures of its row change, not the row (nor the focus). */
function hostStats(d) {
  if (!d || typeof d.time !== 'number') return;
  const name = typeof d.host === 'string' ? d.host : localHost(); // an older kimchid's: local
  figures.set(name, d);
  const h = hostList().find((x) => x.name === name);
  const tr = h && [...$('host-rows').children].find((x) => x.dataset.name === name);
  if (!tr) return;
  const [cpuUse, memUse] = figuresText(h);
  const set = (cls, text) => {
    const span = tr.querySelector(`.${cls}`);
    if (span && span.textContent !== text) span.textContent = text;
  };
  set('host-cpu-use', cpuUse);
  set('host-mem-use', memUse);
}

function upsert(items, h) {
  const i = items.findIndex((x) => x.name === h.name);
  if (i < 0) return [...items, h];
  const out = [...items];
  out[i] = { ...items[i], ...h };
  return out;
}

function hostCreated(d) {
  if (!d || typeof d.name !== 'string') return;
  const { by, ...h } = d;
  const known = hostList().some((x) => x.name === h.name);
  hosts.patch((items) => upsert(items, h));
  if (!known && isShown('hosts')) announce(_('Host {name} added', { name: h.name }));
  relistSoonAndLater();
}

function hostDeleted(d) {
  if (!d || typeof d.name !== 'string') return;
  const known = hostList().some((x) => x.name === d.name);
  figures.delete(d.name);
  hosts.patch((items) => items.filter((x) => x.name !== d.name));
  if (known && isShown('hosts')) announce(_('Host {name} removed', { name: d.name }));
  hosts.soon();
}

function hostState(d) {
  if (!d || typeof d.host !== 'string') return;
  const old = hostList().find((x) => x.name === d.host);
  if (d.state !== 'connected') figures.delete(d.host); // none until its next sample
  hosts.patch((items) => (items.some((x) => x.name === d.host)
    ? upsert(items, { name: d.host, state: d.state, reason: d.reason || '' }) : items));
  if (old && old.state !== d.state && isShown('hosts')) {
    announce(_('Host {name}: {state}', { name: d.host, state: (STATE_TEXT[d.state] || d.state || '').toLowerCase() }));
  }
  relistSoonAndLater(); // its CPUs, memory and VM counts
}

// -- adding and removing -----------------------------------------------------------------

function showHostError(text, field) {
  const e = $('host-error');
  e.textContent = text;
  e.hidden = !text;
  for (const id of ['host-name', 'host-uri']) {
    $(id).setAttribute('aria-invalid', text && id === field ? 'true' : 'false');
  }
}

/** The field a refusal of POST /hosts is about. */
function fieldOf(e) {
  const code = e.body && e.body.errcode;
  if (code === 'KCHHOST0003E' || code === 'KCHHOST0004E') return 'host-uri';
  if (code === 'KCHAPI0006E' && /\buri\b/.test(e.message)) return 'host-uri';
  return 'host-name';
}

async function addHost(ev) {
  ev.preventDefault();
  showHostError('');
  const nameInput = $('host-name');
  const uriInput = $('host-uri');
  const name = nameInput.value.trim();
  const uri = uriInput.value.trim();
  if (!name) {
    showHostError(_('Give the host a name, such as h2.'), 'host-name');
    nameInput.focus();
    return;
  }
  if (!uri) {
    showHostError(_('Give the libvirt URI of the host, such as qemu+ssh://root@h2/system.'), 'host-uri');
    uriInput.focus();
    return;
  }
  const btn = $('host-add');
  btn.disabled = true;
  $('host-adding').textContent = _('Connecting to {uri}… (at most 20 seconds)', { uri });
  try {
    const r = await api('POST', '/hosts', { name, uri });
    const h = r.data && typeof r.data.name === 'string' ? r.data : { name, uri };
    nameInput.value = '';
    uriInput.value = '';
    hosts.patch((items) => upsert(items, h));
    announce(_('Host {name} added: {state}', { name: h.name, state: (STATE_TEXT[h.state] || _('Connecting')).toLowerCase() }));
    relistSoonAndLater();
  } catch (e) {
    const field = fieldOf(e);
    showHostError(e.message, field);
    $(field).focus();
  } finally {
    btn.disabled = false;
    $('host-adding').textContent = '';
  }
}

function askRemove(h) {
  const n = h.vms && typeof h.vms.total === 'number' ? h.vms.total : null;
  askConfirm({
    title: _('Remove host?'),
    text: n ? _n('kimchi stops managing the host {name} ({uri}). Its virtual machines keep running (one VM): they are only no longer listed here. The host can be added again later.',
      'kimchi stops managing the host {name} ({uri}). Its virtual machines keep running ({n} VMs): they are only no longer listed here. The host can be added again later.',
      n, { name: h.name, uri: h.uri })
      : _('kimchi stops managing the host {name} ({uri}). Its virtual machines keep running: they are only no longer listed here. The host can be added again later.', { name: h.name, uri: h.uri }),
    ok: _('Remove'),
    run: async () => {
      await remove(hostPath(h.name)); // gone already: removed elsewhere
      hosts.patch((items) => items.filter((x) => x.name !== h.name));
      announce(_('Host {name} removed', { name: h.name }));
    },
    back: () => document.querySelector('#host-rows .host-remove') || $('host-name'),
  });
}

export default {
  name: 'hosts',
  page: {
    id: 'hosts',
    title: _('Hosts'),
    show() {
      if (signedIn()) hosts.load();
    },
  },
  events: {
    'host.created': hostCreated,
    'host.deleted': hostDeleted,
    'host.state': hostState,
    'host.stats': hostStats,
    'vm.created vm.deleted vm.state': vmsChanged,
  },
  init() {
    $('host-form').addEventListener('submit', addHost);
    clearOnInput('host-error', ['host-name', 'host-uri'], () => showHostError(''));
  },
  async resync() {
    await hosts.load(); // every page needs them (the VMs page's host column and notice)
  },
  stop() {
    hosts.forget();
    figures.clear();
    clearTimeout(laterTimer);
    laterTimer = null;
    downKey = '';
    showHostError('');
    $('host-adding').textContent = '';
    $('host-rows').replaceChildren();
    $('host-count').textContent = _('Loading…');
    $('host-empty').hidden = true;
    $('hosts-down').replaceChildren();
    $('vm-hosts-down').replaceChildren();
    $('nav-hosts-down').hidden = true;
  },
};
