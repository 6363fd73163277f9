/* Virtual machines: the list (a windowed list: 10,000 VMs stay fast), their state and
 * figures live, the power actions, deletion; running vm.create and vm.clone tasks show as
 * rows of their own until their VM appears. Other modules add their controls to each
 * row (addVmControl: the console, the dialogs) and follow the rows (onVmItem).
 *
 * Sorting and filtering stay cheap at 10,000: the VMs are kept in their names' collation
 * order (a VM made or deleted is inserted or cut in place), other orders sort numbers, and a
 * VM's search text is worked out once per record. Only the rows on screen are touched.
 *
 * With several hosts (see hosts.js) each row says its VM's host and a filter picks one
 * host's. Rows are keyed by host and name (two hosts may each have a VM of a name: two
 * rows), and so is everything said of a VM (its events, its thumbnail, its dialogs):
 * whatever is done to another host's VM goes to its canonical address
 * (/hosts/<host>/vms/<name>/...), the root one (/vms/<name>) naming the local host's. */

import { $, el, announce, numberFmt, collator, memText, humanSize, actionButton, matchesWords } from '../core/dom.js';
import { api, offers, capabilities, onServerKnown } from '../core/api.js';
import { askConfirm, openDialog } from '../core/dialogs.js';
import { isAdmin } from '../core/session.js';
import { tasks, TERMINAL, upsertTask, vmNameOf, watchTasks } from '../core/tasks.js';
import { onLibvirt, libvirtIsDown } from '../core/health.js';
import { Listing } from '../core/listing.js';
import { WindowedList } from '../core/vlist.js';
import { hostList, hostObjectPath, isRemoteHost, localHost, manyHosts, onHosts } from './hosts.js';
import { _, _n } from '../core/i18n.js';

export const STATE_TEXT = { running: _('Running'), paused: _('Paused'), shutoff: _('Shut off'), shutdown: _('Shutting down'),
  crashed: _('Crashed'), blocked: _('Blocked'), pmsuspended: _('Suspended'), nostate: _('No state') };
const STATE_RANK = { running: 0, paused: 1, blocked: 2, pmsuspended: 3, shutdown: 4, crashed: 5, shutoff: 6, nostate: 7 };

// action -> [button text, the states that offer it, what the row says while it runs]
const VM_ACTIONS = [
  ['start', _('Start'), ['shutoff', 'crashed'], _('Starting…')],
  ['shutdown', _('Shut down'), ['running'], _('Shutting down…')],
  ['poweroff', _('Power off'), ['running', 'paused', 'blocked', 'pmsuspended', 'shutdown'], _('Powering off…')],
  ['reset', _('Reset'), ['running'], _('Resetting…')],
  ['suspend', _('Pause'), ['running'], _('Pausing…')],
  ['resume', _('Resume'), ['paused'], _('Resuming…')],
];
const BUSY_TEXT = { ...Object.fromEntries(VM_ACTIONS.map((a) => [a[0], a[3]])), delete: _('Deleting…'),
  migrate: _('Migrating…') };
const MAKES_VM = new Set(['vm.create', 'vm.clone']);
const COPIES_VM = new Set(['vm.clone', 'vm.template']); // tasks that copy a VM's disks
// other orders than the name's: a number per VM (ties go by name)
const SORTS = {
  state: (vm) => STATE_RANK[vm.state] ?? 9,
  memory: (vm) => -((vm.memory && vm.memory.current) || 0),
  cpus: (vm) => -(vm.cpus || 0),
  cpu: (vm) => -((vm.stats && vm.stats.cpu_utilization) || 0),
};

export const vms = new Map(); // vmKey -> VM record
let keys = []; // every VM's key, in the order of their names (then hosts)
let sortKey = 'name';
let ordered = null; // the VMs in sortKey's order, or null: work it out again
const busy = new Map(); // vmKey -> the action in flight
const errors = new Map(); // vmKey -> why the last action was refused
const arriving = new Map(); // vmKey -> {made, rec}: its finished task, until vm.created comes
const pending = new Map(); // vmKey -> the "Creating" row of a VM being made
const items = new Map(); // vmKey -> the row shown for it (only rows in the document)
const hay = new WeakMap(); // VM record -> its search text
const myCreates = new Set(); // ids of the vm.create and vm.clone tasks this page started
let filter = '';
let hostFilter = ''; // '' for every host's VMs, else one host's name
let hostsTimer = null; // lists the VMs again a while after a host changed
let listError = null; // why GET /vms failed (libvirt away)
let queued = false;
let context = 0; // bumped when something every row shows changed (capabilities, routes…)
let list = null; // the WindowedList of #vm-list
const controls = []; // the row's controls, see addVmControl
const itemListeners = [];

/**
 * A control of every VM row: ``{key, text, cls, place: 'actions'|'access', order,
 * shown(vm), run(ref, button), label(ref), free}`` (``ref``: the row's VM, ``{host,
 * name}``; ``label``: its accessible name, "<text> <VM>" unless said; ``free``: usable
 * while the VM is busy).
 */
export function addVmControl(c) {
  controls.push(c);
  controls.sort((a, b) => a.order - b.order);
}

/** ``fn(item, event)`` with event 'built' | 'updated' | 'removed' for the rows shown. */
export function onVmItem(fn) {
  itemListeners.push(fn);
}

/** The host of a VM, or of what names one (an event, a ref): the local one when unsaid. */
export const hostOf = (x) => (x && typeof x.host === 'string' && x.host) || localHost();

/** A VM's key: its host and its name (two hosts may each have a VM of a name). */
export const vmKey = (x) => `${hostOf(x)}\n${x.name}`;

/** What names one VM, ``{host, name}``: what the rows' controls are given. */
export const vmRef = (x) => ({ host: hostOf(x), name: x.name });

/** The VM ``ref`` names as the user reads it: "web1", or "web1 on h2" with several hosts. */
export const vmTitle = (ref) => (manyHosts() ? _('{name} on {host}', { name: ref.name, host: hostOf(ref) }) : ref.name);

/** The address of a VM: the root one (/vms/<name>) for the local host's, which names the
 * local host's VM of that name; the canonical /hosts/<host>/vms/<name> for another's. */
export const addressOf = (ref) => hostObjectPath(hostOf(ref), 'vms', ref.name);

/** The VM's record, or undefined once it is gone. */
export const vmOf = (ref) => vms.get(vmKey(ref));
export const isBusy = (ref) => busy.has(vmKey(ref));
export const itemOf = (ref) => items.get(vmKey(ref)) || null;
/** Open a dialog about VM ``ref`` opened from its row's control ``key``: on close, the
 * keyboard goes back to that control (while the VM and its row are there). */
export function openVmDialog(dialog, ref, key, focus) {
  openDialog(dialog, { focus, back: () => controlOf(ref, key) });
}

/** The control ``key`` of a VM's row, if the VM is still there and its row in the document. */
export const controlOf = (ref, key) => {
  if (!ref) return null;
  const k = vmKey(ref);
  const item = vms.has(k) && items.get(k);
  return item ? item.buttons.get(key) || null : null;
};

// -- the list's order and filter ---------------------------------------------------------

/** The list's own order: by name, the local host's first among VMs of one name. */
function compareVms(a, b) {
  const ha = hostOf(a);
  const hb = hostOf(b);
  const local = localHost();
  return collator.compare(a.name, b.name) || (hb === local) - (ha === local)
    || collator.compare(ha, hb) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function insertKey(vm) {
  const key = vmKey(vm);
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareVms(vms.get(keys[mid]), vm) < 0) lo = mid + 1; else hi = mid;
  }
  if (keys[lo] !== key) keys.splice(lo, 0, key);
}

function removeKey(key) {
  const i = keys.indexOf(key);
  if (i >= 0) keys.splice(i, 1);
}

function inOrder() {
  if (ordered) return ordered;
  const all = keys.map((k) => vms.get(k)).filter(Boolean);
  if (sortKey !== 'name' && SORTS[sortKey]) {
    const key = SORTS[sortKey];
    const keyed = all.map((vm, i) => [key(vm), i, vm]);
    keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    ordered = keyed.map((x) => x[2]);
  } else {
    ordered = all;
  }
  return ordered;
}

export const namesOf = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === 'string' && n) : []);

function matches(vm, q) {
  if (!q) return true;
  let text = hay.get(vm);
  if (text === undefined) {
    text = [vm.name, vm.state, STATE_TEXT[vm.state] || '', vm.uuid, hostOf(vm),
      ...(isAdmin() ? [...namesOf(vm.users), ...namesOf(vm.groups)] : [])].join(' ').toLowerCase();
    hay.set(vm, text);
  }
  return matchesWords(text, q);
}

/** The VM a vm.create or vm.clone task makes, ``{host, name}`` (null: unnamed yet): on
 * the task's host. */
function madeBy(rec) {
  const name = vmNameOf(rec);
  return name ? { host: hostOf(rec.params && rec.params.host ? rec.params : rec), name } : null;
}

/** Every VM a task makes: the one of madeBy, or the ``names`` of a vm.create of several. */
function madeAll(rec) {
  const names = rec.params && Array.isArray(rec.params.names) ? rec.params.names : [];
  if (rec.kind !== 'vm.create' || names.length < 2) {
    const one = madeBy(rec);
    return one ? [one] : [];
  }
  const host = hostOf(rec.params.host ? rec.params : rec);
  return names.filter((n) => typeof n === 'string' && n).map((name) => ({ host, name }));
}

/** The VMs vm.create and vm.clone tasks are making, until they show up: vmKey ->
 * {made: {host, name}, rec: the task}. */
function beingMade() {
  const out = new Map();
  for (const t of tasks.values()) {
    const r = t.rec;
    if (t.stub || !MAKES_VM.has(r.kind) || TERMINAL.has(r.status)) continue;
    for (const made of madeAll(r)) if (!vms.has(vmKey(made))) out.set(vmKey(made), { made, rec: r });
  }
  for (const [key, m] of arriving) if (!vms.has(key)) out.set(key, m);
  return out;
}

/** The running clone (or make-template) task copying this VM, if any: the VM cannot
 * start meanwhile. */
function cloneOf(vm) {
  for (const t of tasks.values()) {
    const r = t.rec;
    if (t.stub || !COPIES_VM.has(r.kind) || TERMINAL.has(r.status) || !r.params) continue;
    if (vm.uuid ? r.params.source_uuid === vm.uuid
      : r.params.source === vm.name && hostOf(r.params.host ? r.params : r) === hostOf(vm)) return r;
  }
  return null;
}

// -- a row ----------------------------------------------------------------------------------

function buildItem(vm) {
  const ref = vmRef(vm);
  const { name } = ref;
  const li = $('vm-template').content.firstElementChild.cloneNode(true);
  const item = {
    li,
    key: vmKey(ref),
    ref,
    name,
    shot: li.querySelector('.vm-shot'),
    off: li.querySelector('.vm-shot-off'),
    chip: li.querySelector('.state'),
    host: li.querySelector('.vm-host'),
    error: li.querySelector('.vm-error'),
    stats: li.querySelector('.vm-stats'),
    accessText: li.querySelector('.vm-access-text'),
    buttons: new Map(),
    hasShot: false,
    noScreen: false,
    rec: null,
    context: -1,
  };
  li.dataset.name = name;
  li.querySelector('.vm-name').textContent = name;
  const places = { actions: li.querySelector('.vm-actions'), access: li.querySelector('.vm-access') };
  for (const c of controls) {
    const b = actionButton(c.text, c.cls, '', (btn) => c.run(ref, btn));
    b.dataset.action = c.key;
    item.buttons.set(c.key, b);
    places[c.place].append(b);
  }
  item.shot.addEventListener('load', () => {
    item.hasShot = true;
    updateThumb(item, vms.get(item.key));
  });
  for (const fn of itemListeners) fn(item, 'built');
  return item;
}

export function updateThumb(item, vm) {
  const running = vm && vm.state === 'running';
  const shown = running && item.hasShot;
  // a paused VM keeps its last screen, dimmed; a stopped one has none
  if (vm && !running && vm.state !== 'paused' && item.hasShot) {
    item.hasShot = false;
    item.shot.removeAttribute('src');
  }
  item.shot.hidden = !(shown || (vm && vm.state === 'paused' && item.hasShot));
  item.li.classList.toggle('vm-frozen', !!(vm && vm.state === 'paused' && item.hasShot));
  item.off.hidden = shown;
  item.off.textContent = !vm ? '' : running ? (item.noScreen ? _('Running: no screen to show') : _('Loading the screen…'))
    : vm.state === 'paused' ? STATE_TEXT[vm.state] || vm.state
      : _('{state}: no screen', { state: STATE_TEXT[vm.state] || vm.state });
}

const kibRate = (kib) => (typeof kib === 'number' && isFinite(kib) ? `${humanSize(Math.round(kib * 1024))}/s` : '—');
const pct = (v) => (typeof v === 'number' && isFinite(v) ? `${Math.round(v)} %` : '—');

function updateStats(item, vm) {
  const s = vm && vm.state === 'running' && vm.stats && typeof vm.stats === 'object' ? vm.stats : null;
  item.stats.hidden = !s;
  if (!s) return;
  const set = (cls, text, value) => {
    const box = item.stats.querySelector(`.${cls}`);
    box.querySelector('.stat-val').textContent = text;
    const m = box.querySelector('meter');
    if (m) m.value = typeof value === 'number' && isFinite(value) ? Math.max(0, Math.min(100, value)) : 0;
  };
  set('stat-cpu', pct(s.cpu_utilization), s.cpu_utilization);
  set('stat-mem', pct(s.mem_utilization), s.mem_utilization);
  set('stat-io', kibRate(s.io_throughput));
  set('stat-net', kibRate(s.net_throughput));
}

export function accessText(vm) {
  const users = namesOf(vm.users);
  const groups = namesOf(vm.groups);
  if (!users.length && !groups.length) return _('Administrators only');
  const parts = [];
  if (users.length) parts.push(_n('User: {names}', 'Users: {names}', users.length, { names: users.join(', ') }));
  if (groups.length) parts.push(_n('Group: {names}', 'Groups: {names}', groups.length, { names: groups.join(', ') }));
  return parts.join(' · ');
}

function updateItem(item, vm) {
  const li = item.li;
  const st = vm.state || 'nostate';
  const doing = busy.get(item.key);
  const copied = cloneOf(vm);
  li.dataset.state = st;
  li.setAttribute('aria-busy', doing ? 'true' : 'false');
  item.chip.className = `state state-${/^[a-z]+$/.test(st) ? st : 'unknown'}`;
  item.chip.textContent = doing ? BUSY_TEXT[doing] || doing
    : copied ? (copied.kind === 'vm.template' ? _('Making a template') : _('Being cloned')) : STATE_TEXT[st] || st;
  li.querySelector('.vm-cpus').textContent = typeof vm.cpus === 'number'
    ? _n('{n} vCPU', '{n} vCPUs', vm.cpus) : _('— vCPUs');
  li.querySelector('.vm-mem').textContent = memText(vm.memory && vm.memory.current);
  li.querySelector('.vm-uuid').textContent = vm.uuid || '';
  const many = manyHosts();
  item.host.textContent = _('on {host}', { host: hostOf(vm) });
  item.host.hidden = !many;
  // keyed by host and name, as the other pages' rows: the host said with several only
  if (many) li.dataset.host = hostOf(vm);
  else delete li.dataset.host;
  const title = vmTitle(item.ref);
  item.shot.alt = _('Screen of {title}', { title });
  // libvirtIsDown() is the local host's libvirt: another host's VMs are listed only while
  // their host is connected
  const down = libvirtIsDown() && !isRemoteHost(hostOf(vm));
  for (const c of controls) {
    const b = item.buttons.get(c.key);
    const label = c.label ? c.label(item.ref) : `${c.text} ${title}`;
    if (b.getAttribute('aria-label') !== label) b.setAttribute('aria-label', label);
    b.hidden = !c.shown(vm);
    // the server refuses to start (or clone again) a VM while its disks are being copied
    const held = !!copied && (c.key === 'start' || c.key === 'clone' || c.key === 'template');
    b.disabled = down || (!c.free && (!!doing || held));
    b.title = held ? _('Its disks are being copied for {template}', { template: vmNameOf(copied) || copied.params.template }) : '';
  }
  item.accessText.textContent = accessText(vm);
  const err = errors.get(item.key);
  item.error.textContent = err || '';
  item.error.hidden = !err;
  const caps = capabilities();
  li.classList.toggle('no-thumb', caps !== null && !caps.screenshot);
  updateThumb(item, vm);
  updateStats(item, vm);
  item.rec = vm;
  item.context = context;
  for (const fn of itemListeners) fn(item, 'updated');
}

function pendingItem({ key, host, name, making: rec }) {
  let item = pending.get(key);
  if (!item) {
    const li = el('li', 'vm vm-pending');
    li.dataset.name = name;
    if (manyHosts()) li.dataset.host = host;
    li.dataset.state = 'creating';
    li.setAttribute('aria-busy', 'true');
    const thumb = el('div', 'vm-thumb');
    thumb.append(el('span', 'vm-shot-off', _('Being made')));
    const main = el('div', 'vm-main');
    const head = el('div', 'vm-head');
    head.append(el('h3', 'vm-name', name), el('span', 'state state-creating', _('Creating')));
    const bar = el('progress', 'bar');
    bar.max = 100;
    bar.setAttribute('aria-label', _('Making {name}', { name }));
    main.append(head, bar, el('p', 'vm-spec vm-pending-msg'));
    li.append(thumb, main);
    item = { li, bar, msg: main.querySelector('.vm-pending-msg') };
    pending.set(key, item);
  }
  if (typeof rec.progress === 'number') item.bar.value = rec.progress;
  else item.bar.removeAttribute('value');
  const p = rec.params || {};
  item.msg.textContent = rec.message || (p.template ? _('From the template {template}', { template: p.template })
    : p.source ? _('A copy of {source}', { source: p.source }) : '');
  return item.li;
}

/** The node of one entry of the list (a VM, or a VM being made), made or brought up to date. */
function nodeOf(entry) {
  if (entry.making) return pendingItem(entry);
  const vm = entry;
  const key = vmKey(vm);
  let item = items.get(key);
  if (!item) {
    item = buildItem(vm);
    items.set(key, item);
  }
  if (item.rec !== vm || item.context !== context) updateItem(item, vm);
  if (vm.flash) {
    delete vm.flash;
    item.li.classList.remove('row-flash');
    void item.li.offsetWidth; // restart the animation
    item.li.classList.add('row-flash');
  }
  return item.li;
}

function removedNode(key, node) {
  if (node.classList.contains('vm-pending')) return;
  const item = items.get(key);
  if (item && item.li === node) {
    items.delete(key);
    for (const fn of itemListeners) fn(item, 'removed');
  }
}

// -- rendering ----------------------------------------------------------------------------

export function renderVms() {
  queued = false;
  const q = filter.trim().toLowerCase();
  const all = inOrder();
  const on = manyHosts() ? hostFilter : '';
  const shown = q || on ? all.filter((v) => (!on || hostOf(v) === on) && matches(v, q)) : all;
  const making = beingMade();
  const entries = [...making].map(([key, m]) => ({ ...m.made, key, making: m.rec }))
    .sort(compareVms);
  for (const key of pending.keys()) if (!making.has(key)) pending.delete(key);
  list.setItems(entries.length ? entries.concat(shown) : shown, { now: true });

  const empty = $('vm-empty');
  const n = vms.size;
  if (listError && !n) {
    $('vm-empty-text').textContent = _('The virtual machines cannot be listed: {listError}', { listError });
    empty.hidden = false;
  } else if (!n && !making.size) {
    $('vm-empty-text').textContent = isAdmin()
      ? _('No virtual machines on this host. Make one from a template with “New VM”.')
      : _('No virtual machine is assigned to you.');
    empty.hidden = false;
  } else if (!shown.length && !making.size) {
    $('vm-empty-text').textContent = q ? (on ? _('No virtual machine on {on} matches “{filter}”.', { on, filter: filter.trim() })
      : _('No virtual machine matches “{filter}”.', { filter: filter.trim() }))
      : _('No virtual machine on {on}.', { on });
    empty.hidden = false;
  } else {
    empty.hidden = true;
  }
  let running = 0;
  for (const vm of vms.values()) if (vm.state === 'running') running += 1;
  $('vm-count').textContent = listError && !n ? _('Unavailable')
    : shown.length === n ? _n('{n} guest · {running} running', '{n} guests · {running} running', n, { running })
      : _n('{shown} of {n} guest · {running} running', '{shown} of {n} guests · {running} running', n,
        { shown: numberFmt.format(shown.length), running });
  const badge = $('nav-vm-count');
  badge.hidden = n === 0;
  badge.textContent = String(n);
  $('vm-new').disabled = libvirtIsDown();
  $('vm-new').hidden = !offers('/vms', 'post') || !isAdmin();
}

/** The host filter: shown with several hosts, one option per host. */
function fillHostFilter() {
  const many = manyHosts();
  $('vm-host-field').hidden = !many;
  const sel = $('vm-host');
  const names = hostList().map((h) => h.name);
  if (hostFilter && !names.includes(hostFilter)) hostFilter = ''; // removed
  const had = [...sel.options].map((o) => o.value).join('\n');
  if (had !== ['', ...names].join('\n')) {
    const all = el('option', null, _('All hosts'));
    all.value = '';
    sel.replaceChildren(all, ...names.map((n) => {
      const o = el('option', null, n);
      o.value = n;
      return o;
    }));
  }
  sel.value = hostFilter;
}

/** A host came, went, or changed state: its VMs come or go with it (no vm.* event says
 * so), listed once it is read; a host just connected is read a moment later: ask again. */
function hostsChanged() {
  listing.soon(300);
  clearTimeout(hostsTimer);
  hostsTimer = setTimeout(() => { hostsTimer = null; listing.load(); }, 2500);
}

export function queueVmRender() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(renderVms);
}

/** Something every row shows changed: bring them all up to date. */
export function refreshAll() {
  context += 1;
  queueVmRender();
}

function setAll(list) {
  vms.clear();
  for (const vm of list) if (vm && typeof vm.name === 'string') vms.set(vmKey(vm), vm);
  keys = [...vms.keys()].sort((a, b) => compareVms(vms.get(a), vms.get(b)));
  ordered = null;
}

/** Take a VM (whole, or a part of one: a vm.state event) into the list. */
export function vmUpsert(vm, { flash = true } = {}) {
  if (!vm || typeof vm.name !== 'string') return;
  const key = vmKey(vm);
  const old = vms.get(key);
  // a VM renamed elsewhere comes back under its new name with the same UUID, on its host
  // (the same UUID on another host is a VM moving there: the old host says when it went)
  if (vm.uuid) {
    for (const [k, other] of vms) {
      if (k !== key && other.uuid === vm.uuid && hostOf(other) === hostOf(vm)) forgetVm(other);
    }
  }
  const rec = { ...(old || {}), ...vm, host: hostOf(vm) };
  delete rec.previous;
  if (rec.state !== 'running') delete rec.stats;
  rec.flash = flash && !!old && old.state !== rec.state;
  vms.set(key, rec);
  if (!old) insertKey(rec);
  if (!old || sortKey !== 'name') ordered = null;
  else if (ordered) ordered[ordered.indexOf(old)] = rec;
  arriving.delete(key);
  queueVmRender();
}

/** Forget a VM without a word (renamed: it comes back under its new name). */
export function forgetVm(ref) {
  const key = vmKey(ref);
  if (!vms.delete(key)) return false;
  removeKey(key);
  ordered = null;
  return true;
}

function vmState(d) {
  if (typeof d.name !== 'string') return;
  const key = vmKey(d);
  if (vms.has(key)) {
    const was = vms.get(key).state;
    vmUpsert(d);
    // said for the rows on screen: a burst of changes elsewhere is not read out
    if (was !== d.state && items.has(key)) announce(`${vmTitle(d)}: ${STATE_TEXT[d.state] || d.state}`);
    return;
  }
  api('GET', addressOf(d)).then((r) => vmUpsert(r.data), () => {
    // gone again: the vm.deleted event follows
  });
}

function vmStats(d) {
  const all = d.vms && typeof d.vms === 'object' ? d.vms : {};
  for (const [name, s] of Object.entries(all)) {
    // the figures of one host's VMs (a name may be another host's VM's too)
    const key = vmKey({ host: d.host, name });
    const vm = vms.get(key);
    if (!vm || vm.state !== 'running') continue;
    vm.stats = s;
    const item = items.get(key);
    if (item) updateStats(item, vm);
  }
  if (sortKey === 'cpu') { ordered = null; queueVmRender(); }
}

/** A VM went (``d``: its name and host). */
export function vmGone(d) {
  if (typeof d.name !== 'string') return;
  const key = vmKey(d);
  errors.delete(key);
  if (forgetVm(d)) {
    announce(_('{vm} deleted', { vm: vmTitle(d) }));
    queueVmRender();
  }
}

/** A VM's task finished: its row stays until vm.created (a moment later) says so. */
function vmArriving(rec) {
  for (const made of madeAll(rec)) {
    const key = vmKey(made);
    if (vms.has(key)) continue;
    arriving.set(key, { made, rec });
    setTimeout(() => {
      if (arriving.get(key) && arriving.get(key).rec === rec) {
        arriving.delete(key);
        queueVmRender();
      }
    }, 10000);
  }
}

function showNotice(text) {
  $('vm-notice-text').textContent = text;
  $('vm-notice').hidden = !text;
}

function createFailed(rec) {
  const name = vmNameOf(rec);
  showNotice((name ? _('The virtual machine “{name}” could not be made: {reason}', { name, reason: rec.message || _('the task failed') })
      : _('The virtual machine could not be made: {reason}', { reason: rec.message || _('the task failed') })));
}

/** A task this page started that makes a VM: in the panel, its row in the list. */
export function followVmTask(rec) {
  if (!rec || typeof rec.id !== 'string') return;
  myCreates.add(rec.id);
  upsertTask(rec);
  if (rec.status === 'failed') createFailed(rec);
}

// -- actions ------------------------------------------------------------------------------

function focusAfter(item, button) {
  // the clicked button may now be hidden (Start becomes Shut down): stay in the row
  if (document.activeElement !== document.body && document.activeElement !== button) return;
  const next = button && !button.hidden && !button.disabled ? button
    : [...item.buttons.values()].find((b) => !b.hidden && !b.disabled);
  if (next) next.focus();
}

/** Mark a VM busy (or not) with an action, and show it at once. */
export function setBusy(ref, action) {
  if (action) busy.set(vmKey(ref), action);
  else busy.delete(vmKey(ref));
  refreshAll();
}

async function vmAction(ref, action, button) {
  const key = vmKey(ref);
  if (busy.has(key)) return;
  errors.delete(key);
  setBusy(ref, action);
  renderVms();
  try {
    const r = await api('POST', `${addressOf(ref)}/${action}`);
    vmUpsert(r.data);
  } catch (e) {
    errors.set(key, e.message);
    if (e.status === 404) vmGone(ref);
  } finally {
    setBusy(ref, null);
    renderVms();
    const item = items.get(key);
    if (item) focusAfter(item, button);
  }
}

function askDeleteVm(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  const disks = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'disk');
  const cdroms = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'cdrom');
  const extra = el('div', 'confirm-disks');
  if (disks.length) {
    extra.append(el('p', null, disks.length === 1 ? _('Its disk will be deleted too:')
      : _('Its {n} disks will be deleted too:', { n: disks.length })));
    const ul = el('ul', 'path-list');
    for (const d of disks) ul.append(el('li', 'mono', d.path || _('{dev} (no file)', { dev: d.dev || _('disk') })));
    extra.append(ul);
  } else {
    extra.append(el('p', null, _('It has no disks to delete.')));
  }
  if (cdroms.length) {
    const paths = cdroms.map((d) => d.path).filter(Boolean);
    extra.append(el('p', 'kept', paths.length
      ? _('CD-ROMs are kept: {paths}.', { paths: paths.join(', ') }) : _('CD-ROMs are kept.')));
  } else {
    extra.append(el('p', 'kept', _('CD-ROM images are never deleted.')));
  }
  const running = vm.state !== 'shutoff' && vm.state !== 'crashed';
  const on = manyHosts() ? _(' on {host}', { host: hostOf(ref) }) : '';
  askConfirm({
    title: _('Delete virtual machine?'),
    text: running ? _('The virtual machine “{name}”{on} will be deleted (it is powered off first).', { name: ref.name, on })
      : _('The virtual machine “{name}”{on} will be deleted.', { name: ref.name, on }),
    extra,
    run: async () => {
      setBusy(ref, 'delete');
      try {
        await api('DELETE', addressOf(ref));
      } catch (e) {
        setBusy(ref, null);
        if (e.status !== 404) throw e;
      }
      setBusy(ref, null);
      vmGone(ref);
    },
    back: () => controlOf(ref, 'delete') || $('vm-new'),
  });
}

// the listing: answers taken in order (a resync and libvirt's return may both ask)
const listing = new Listing({
  path: '/vms',
  render: () => {
    listError = listing.error || null; // libvirt away: say why, keep what we had
    if (!listing.error) setAll(listing.items);
    refreshAll();
    renderVms();
  },
});

function onLibvirtChange(down) {
  refreshAll();
  if (!down) listing.load(); // back: list again
}

export default {
  name: 'vms',
  page: { id: 'vms', title: _('Virtual machines'), show: () => queueVmRender() },
  events: {
    'vm.created vm.updated': (d) => vmUpsert(d),
    'vm.state': vmState,
    'vm.stats': vmStats,
    'vm.deleted': vmGone,
    'host.created host.deleted host.state': hostsChanged,
  },
  init() {
    list = new WindowedList({ container: $('vm-list'), estimate: 150, render: nodeOf,
      key: (x) => (x.making ? `\u0000${x.key}` : vmKey(x)), removed: removedNode });
    for (const [key, text, states] of VM_ACTIONS) {
      addVmControl({ key, text, cls: 'btn-plain', place: 'actions', order: 10,
        shown: (vm) => states.includes(vm.state || 'nostate'), run: (ref, b) => vmAction(ref, key, b) });
    }
    addVmControl({ key: 'delete', text: _('Delete'), cls: 'btn-danger-outline', place: 'actions', order: 90,
      shown: () => isAdmin(), run: askDeleteVm });
    watchTasks([...MAKES_VM], (rec, why) => {
      if (why === 'task.finished') vmArriving(rec);
      if (why === 'task.failed' && myCreates.has(rec.id)) createFailed(rec);
      refreshAll(); // a clone holds its source's buttons
    });
    onLibvirt(onLibvirtChange);
    onServerKnown(refreshAll);
    onHosts(() => {
      fillHostFilter();
      refreshAll(); // the rows' "on <host>" labels
    });
    $('vm-host').addEventListener('change', (e) => {
      hostFilter = e.target.value;
      renderVms();
    });
    $('vm-filter').addEventListener('input', (e) => {
      filter = e.target.value;
      queueVmRender();
    });
    $('vm-sort').addEventListener('change', (e) => {
      sortKey = e.target.value in SORTS ? e.target.value : 'name';
      ordered = null;
      renderVms();
    });
    $('vm-notice-close').addEventListener('click', () => showNotice(''));
  },
  async resync() {
    await listing.load(); // best effort: a failure must not hide the rest
  },
  stop() {
    listing.forget();
    list.clear();
    vms.clear();
    keys = [];
    ordered = null;
    for (const m of [busy, errors, arriving, pending, items, myCreates]) m.clear();
    filter = '';
    hostFilter = '';
    clearTimeout(hostsTimer);
    hostsTimer = null;
    $('vm-host-field').hidden = true;
    $('vm-host').replaceChildren(el('option', null, _('All hosts')));
    listError = null;
    showNotice('');
  },
};
