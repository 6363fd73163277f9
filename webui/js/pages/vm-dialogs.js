/* The VM dialogs of the VMs page: a new VM from a template (on the host chosen, with
 * several), editing a shut-off VM, cloning one, moving one to another host (Migrate), and
 * who may use a VM (admins; any state). Each is about the VM of one row, ``{host, name}``
 * (see vms.js), and goes to its address: the canonical one for another host's VM. */

import { $, el, announce, collator, showError, showNameError, clearOnInput } from '../core/dom.js';
import { api, offers, capabilities } from '../core/api.js';
import { openDialog } from '../core/dialogs.js';
import { isAdmin } from '../core/session.js';
import { vmNameOf, upsertTask, watchTasks, requestCancel, TERMINAL } from '../core/tasks.js';
import { fillHostSelect, hostList, isRemoteHost, localHost, manyHosts, onHosts } from './hosts.js';
import { templates, invalidText, templateSpec, loadTemplates, onTemplatesChanged } from './templates.js';
import { CloudInitSection } from './cloud-init.js';
import {
  vmOf, vmUpsert, vmGone, forgetVm, renderVms, followVmTask, addVmControl, controlOf, openVmDialog,
  accessText, namesOf, addressOf, setBusy, hostOf, vmTitle,
} from './vms.js';
import { _ } from '../core/i18n.js';

let editing = null; // the VM the edit dialog is about, {host, name}
let cloning = null; // the VM the clone dialog is about
let accessing = null; // the VM the access dialog is about
let principals = null; // {users, groups} of the host, for the access dialog
let migrating = null; // {ref, from, task}: the VM the migrate dialog is about
const moves = new Map(); // id of a vm.migrate task started here -> {ref, from, to}

// -- a new VM from a template --------------------------------------------------------------

const showNewError = (text) => showNameError('vm-new', text);

function fillTemplatePicks(keep) {
  const box = $('vm-new-templates');
  const all = [...templates.values()].sort((a, b) => collator.compare(a.name, b.name));
  const picks = all.map((t) => {
    const problems = invalidText(t.invalid);
    const label = el('label', `pick${problems.length ? ' pick-invalid' : ''}`);
    const input = el('input');
    input.type = 'radio';
    input.name = 'vm-template';
    input.value = t.name;
    input.disabled = problems.length > 0;
    const body = el('span', 'pick-body');
    const head = el('span', 'pick-head');
    const d = t.os_distro || 'unknown';
    const chip = el('span', `distro distro-${/^[a-z0-9-]+$/.test(d) ? d : 'other'}`,
      t.os_version && t.os_version !== 'unknown' ? `${d} ${t.os_version}` : d === 'unknown' ? _('unknown') : d);
    head.append(el('span', 'pick-name', t.name), chip);
    body.append(head, el('span', 'pick-spec', templateSpec(t)));
    if (problems.length) {
      body.append(el('span', 'chip-invalid', _('Cannot be used: {problems}', { problems: problems.join(' · ') })));
    }
    label.append(input, body);
    return label;
  });
  box.replaceChildren(...picks);
  $('vm-new-none').hidden = all.length > 0;
  const usable = all.filter((t) => !invalidText(t.invalid).length).map((t) => t.name);
  const choose = usable.includes(keep) ? keep : usable[0];
  for (const input of box.querySelectorAll('input')) input.checked = input.value === choose;
  $('vm-new-create').disabled = !usable.length;
  updateNamePlaceholder();
}

function chosenTemplate() {
  const c = $('vm-new-templates').querySelector('input:checked');
  return c ? c.value : '';
}

function updateNamePlaceholder() {
  const t = chosenTemplate();
  $('vm-new-name').placeholder = t ? _('{template}-vm-N', { template: t }) : '';
  // an image template's VMs: linked disks or full copies; its cloud-init under the fields
  const rec = t ? templates.get(t) : null;
  const image = rec && rec.source_media && rec.source_media.type === 'image' ? rec.source_media : null;
  $('vm-new-disks').hidden = !image;
  // an image template's VMs are made on the host of its image
  if (image && manyHosts()) fillHostSelect($('vm-new-host'), image.host || localHost());
  if (newCi) newCi.showInherited(rec && rec.cloud_init);
}

let newCi = null; // the New VM dialog's cloud-init section (overrides of the template's)

/** The New VM dialog's count, disk mode and cloud-init into ``body``: a problem, or ''. */
function addNewOptions(body) {
  const count = Number($('vm-new-count').value.trim() || '1');
  if (!Number.isInteger(count) || count < 1 || count > 500) {
    $('vm-new-count').focus();
    return _('How many is a whole number from 1 to 500.');
  }
  if (count > 1) body.count = count;
  if (!$('vm-new-disks').hidden) {
    const mode = document.querySelector('input[name="vm-new-disk-mode"]:checked');
    body.disk_mode = mode ? mode.value : 'linked';
  }
  const ci = newCi.body();
  if (ci.error) {
    newCi.node.open = true;
    ci.input.focus();
    return ci.error;
  }
  if (ci.value) body.cloud_init = ci.value;
  return '';
}

/** Templates changed while the New VM dialog is open: show them, keeping the choice. */
function refreshPicks() {
  if (!$('vm-new-dialog').open) return;
  const had = document.activeElement && document.activeElement.name === 'vm-template';
  fillTemplatePicks(chosenTemplate());
  const again = $('vm-new-templates').querySelector('input:checked');
  if (had && again) again.focus();
}

/** The Host select of the New VM dialog: shown with several hosts (the local one first,
 * chosen by default). */
function fillNewHost() {
  const many = manyHosts();
  $('vm-new-host-field').hidden = !many;
  if (many) fillHostSelect($('vm-new-host'), $('vm-new-host').value || localHost());
}

async function openVmNew() {
  showNewError('');
  $('vm-new-name').value = '';
  $('vm-new-host').value = '';
  $('vm-new-count').value = '1';
  $('vm-new-linked').checked = true;
  newCi.clear();
  newCi.node.open = false;
  fillNewHost();
  fillTemplatePicks(chosenTemplate());
  openDialog($('vm-new-dialog'), {
    focus: $('vm-new-templates').querySelector('input:checked') || $('vm-new-cancel'),
    back: () => $('vm-new'),
  });
  // what a template misses may have changed since the listing: ask again
  await loadTemplates();
}

async function createVm(ev) {
  ev.preventDefault();
  showNewError('');
  const template = chosenTemplate();
  if (!template) {
    showNewError(_('Choose a template.'));
    return;
  }
  const body = { template };
  const name = $('vm-new-name').value.trim();
  if (name) body.name = name;
  const host = manyHosts() ? $('vm-new-host').value : '';
  if (host && isRemoteHost(host)) body.host = host; // the local host's by default
  const problem = addNewOptions(body);
  if (problem) {
    showError('vm-new-error', problem);
    return;
  }
  const btn = $('vm-new-create');
  btn.disabled = true;
  try {
    const r = await api('POST', '/vms', body);
    if (r.data && typeof r.data.name === 'string' && typeof r.data.id !== 'string') {
      vmUpsert(r.data); // made at once (201)
    } else {
      followVmTask(r.data);
    }
    $('vm-new-dialog').close('done');
    announce(body.count ? _('Making {count} VMs from {template}', { count: body.count, template })
      : _('Making {name}', { name: vmNameOf(r.data || {}) || name || _('a VM from {template}', { template }) }));
  } catch (e) {
    showNewError(e.message);
    $('vm-new-name').focus();
  } finally {
    btn.disabled = false;
  }
}

// -- editing a VM that is shut off -----------------------------------------------------------

const showEditError = (text) => showError('vm-edit-error', text);

function openEdit(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  editing = ref;
  $('vm-edit-title').textContent = _('Edit {ref}', { ref: vmTitle(ref) });
  $('vm-edit-name').value = ref.name;
  $('vm-edit-memory').value = vm.memory && typeof vm.memory.current === 'number' ? vm.memory.current : '';
  $('vm-edit-cpus').value = typeof vm.cpus === 'number' ? vm.cpus : '';
  fillSettings(vm);
  showEditError('');
  $('vm-edit-save').disabled = false;
  openDialog($('vm-edit-dialog'), {
    focus: $('vm-edit-name'),
    back: () => {
      const to = editing;
      editing = null;
      return controlOf(to, 'edit');
    },
  });
}

async function saveEdit(ev) {
  ev.preventDefault();
  const ref = editing;
  const vm = ref && vmOf(ref);
  if (!vm) { $('vm-edit-dialog').close(); return; }
  showEditError('');
  const body = {};
  const to = $('vm-edit-name').value.trim();
  if (!to) { showEditError(_('A virtual machine needs a name.')); return; }
  if (to !== ref.name) body.name = to;
  const mem = Number($('vm-edit-memory').value);
  if (!Number.isInteger(mem) || mem < 64) { showEditError(_('Memory is a whole number of MiB, at least 64.')); return; }
  if (!vm.memory || mem !== vm.memory.current) body.memory = { current: mem };
  const cpus = Number($('vm-edit-cpus').value);
  if (!Number.isInteger(cpus) || cpus < 1) { showEditError(_('vCPUs is a whole number, at least 1.')); return; }
  if (cpus !== vm.cpus) body.cpus = cpus;
  const problem = addSettings(vm, body, cpus);
  if (problem) { showEditError(problem); return; }
  if (!Object.keys(body).length) { $('vm-edit-dialog').close(); return; }
  const btn = $('vm-edit-save');
  btn.disabled = true;
  try {
    // a rename answers 303 to the new URI, which fetch follows: the answer is the VM
    const r = await api('PUT', addressOf(ref), body);
    if (body.name) forgetVm(ref);
    if (r.data && typeof r.data.name === 'string') vmUpsert(r.data, { flash: false });
    renderVms();
    editing = r.data && typeof r.data.name === 'string' ? { host: hostOf(ref), name: r.data.name } : null;
    $('vm-edit-dialog').close('done');
    announce(_('{vm} saved', { vm: vmTitle(ref) }));
  } catch (e) {
    showEditError(e.message);
    btn.disabled = false;
  }
}

// the settings of the Edit dialog beside name, memory and vCPUs: autostart, boot order and
// menu, CPU topology, NIC model, firmware and TPM (what the host cannot give is hidden)

const BOOT_DEVICES = { hd: _('Hard disk'), cdrom: _('CD-ROM'), network: _('Network (PXE)') };
const NIC_MODELS = ['virtio', 'e1000e', 'rtl8139'];
let bootOrder = []; // [{dev, on}], in the order shown

function renderBoot() {
  const items = bootOrder.map((b, i) => {
    const li = el('li');
    const box = el('input');
    box.type = 'checkbox';
    box.id = `vm-edit-boot-${b.dev}`;
    box.checked = b.on;
    box.addEventListener('change', () => { b.on = box.checked; });
    const label = el('label', null, BOOT_DEVICES[b.dev] || b.dev);
    label.htmlFor = box.id;
    const move = (text, to, said) => {
      const btn = el('button', 'btn btn-small btn-plain', text);
      btn.type = 'button';
      btn.setAttribute('aria-label', said);
      btn.disabled = to < 0 || to >= bootOrder.length;
      btn.addEventListener('click', () => {
        [bootOrder[i], bootOrder[to]] = [bootOrder[to], bootOrder[i]];
        renderBoot();
        const again = $('vm-edit-boot').querySelector(`[aria-label="${CSS.escape(said)}"]`);
        if (again && !again.disabled) again.focus();
      });
      return btn;
    };
    const dev = BOOT_DEVICES[b.dev] || b.dev;
    li.append(box, label, move('↑', i - 1, _('Move {dev} up', { dev })), move('↓', i + 1, _('Move {dev} down', { dev })));
    return li;
  });
  $('vm-edit-boot').replaceChildren(...items);
}

const isQ35 = (machine) => typeof machine === 'string' && machine.includes('q35');

function secureBootUsable(vm) {
  return $('vm-edit-firmware').value === 'uefi' && isQ35(vm.machine);
}

function fillSettings(vm) {
  const caps = capabilities() || {};
  $('vm-edit-autostart').checked = !!vm.autostart;
  $('vm-edit-bootmenu').checked = !!vm.bootmenu;
  const boot = Array.isArray(vm.boot) ? vm.boot.filter((d) => d in BOOT_DEVICES) : [];
  bootOrder = [...boot.map((dev) => ({ dev, on: true })),
    ...Object.keys(BOOT_DEVICES).filter((d) => !boot.includes(d)).map((dev) => ({ dev, on: false }))];
  renderBoot();
  const top = vm.cpu_topology || {};
  $('vm-edit-sockets').value = top.sockets || '';
  $('vm-edit-cores').value = top.cores || '';
  $('vm-edit-threads').value = top.threads || '';
  $('vm-edit-topology-help').textContent = typeof vm.maxcpus === 'number'
    ? _('Sockets × cores × threads is the most vCPUs the VM may have (now {maxcpus}); empty: libvirt\'s (one socket per vCPU).', { maxcpus: vm.maxcpus })
    : _('Sockets × cores × threads is the most vCPUs the VM may have; empty: libvirt\'s (one socket per vCPU).');
  const nics = Array.isArray(vm.interfaces) ? vm.interfaces : [];
  const models = [...new Set(nics.map((n) => n.model || ''))];
  const sel = $('vm-edit-nic');
  const choices = [...NIC_MODELS, ...models.filter((m) => m && !NIC_MODELS.includes(m))];
  const opts = choices.map((m) => { const o = el('option', null, m); o.value = m; return o; });
  if (models.length > 1) {
    const mixed = el('option', null, _('as they are (several models)'));
    mixed.value = '';
    opts.unshift(mixed);
  }
  sel.replaceChildren(...opts);
  sel.value = models.length === 1 ? models[0] : '';
  $('vm-edit-nic-field').hidden = !nics.length;
  // what the host cannot give is not offered (what the VM has already stays shown)
  const uefi = !!caps.uefi || vm.firmware === 'uefi';
  $('vm-edit-firmware-field').hidden = !uefi;
  $('vm-edit-firmware').value = vm.firmware === 'uefi' ? 'uefi' : 'bios';
  $('vm-edit-secure-field').hidden = !(caps.secure_boot || vm.secure_boot);
  $('vm-edit-secure').checked = !!vm.secure_boot;
  $('vm-edit-secure').disabled = !secureBootUsable(vm);
  $('vm-edit-tpm-field').hidden = !(caps.tpm || vm.tpm);
  $('vm-edit-tpm').checked = !!vm.tpm;
}

const sameTopology = (a, b) => (!a && !b) || (!!a && !!b && ['sockets', 'cores', 'threads'].every((k) => a[k] === b[k]));

/** The changed settings into ``body``; a problem found here, in words, or ''. */
function addSettings(vm, body, cpus) {
  if ($('vm-edit-autostart').checked !== !!vm.autostart) body.autostart = $('vm-edit-autostart').checked;
  if ($('vm-edit-bootmenu').checked !== !!vm.bootmenu) body.bootmenu = $('vm-edit-bootmenu').checked;
  const boot = bootOrder.filter((b) => b.on).map((b) => b.dev);
  if (!boot.length) return _('Choose at least one device to boot from.');
  if (boot.join() !== (Array.isArray(vm.boot) ? vm.boot.join() : '')) body.boot = boot;
  const parts = ['sockets', 'cores', 'threads'].map((k) => $(`vm-edit-${k}`).value.trim());
  let top = null;
  if (parts.some((v) => v)) {
    const n = parts.map(Number);
    if (n.some((x) => !Number.isInteger(x) || x < 1)) return _('Give sockets, cores and threads as whole numbers, at least 1 (or none of them).');
    top = { sockets: n[0], cores: n[1], threads: n[2] };
    const most = n[0] * n[1] * n[2];
    if (cpus > most) return _('{cpus} vCPUs is more than sockets × cores × threads, {most}.', { cpus, most });
    if (most !== vm.maxcpus) {
      body.maxcpus = most; // the server takes a new maximum with the vCPUs
      body.cpus = cpus;
    }
  }
  if (!sameTopology(top, vm.cpu_topology)) body.cpu_topology = top;
  const nic = $('vm-edit-nic').value;
  const nics = Array.isArray(vm.interfaces) ? vm.interfaces : [];
  if (nic && nics.some((n) => n.model !== nic)) body.nic_model = nic;
  if (!$('vm-edit-firmware-field').hidden && $('vm-edit-firmware').value !== (vm.firmware || 'bios')) {
    body.firmware = $('vm-edit-firmware').value;
  }
  const secure = $('vm-edit-secure').checked && secureBootUsable(vm);
  if (!$('vm-edit-secure-field').hidden && secure !== !!vm.secure_boot) body.secure_boot = secure;
  if (!$('vm-edit-tpm-field').hidden && $('vm-edit-tpm').checked !== !!vm.tpm) body.tpm = $('vm-edit-tpm').checked;
  return '';
}

// -- cloning a VM that is shut off --------------------------------------------------------

const showCloneError = (text) => showNameError('vm-clone', text);

function openClone(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  cloning = ref;
  const { name } = ref;
  $('vm-clone-title').textContent = _('Clone {ref}', { ref: vmTitle(ref) });
  $('vm-clone-text').textContent = manyHosts()
    ? _('The copy is a virtual machine of its own, shut off, with a new UUID and new MAC addresses, on {host} too. {name} cannot be started until its disks are copied.', { host: hostOf(ref), name })
    : _('The copy is a virtual machine of its own, shut off, with a new UUID and new MAC addresses. {name} cannot be started until its disks are copied.', { name });
  const disks = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'disk');
  const box = $('vm-clone-disks');
  box.replaceChildren();
  if (disks.length) {
    box.append(el('p', null, disks.length === 1 ? _('Its disk is copied next to it:')
      : _('Its {n} disks are copied next to them:', { n: disks.length })));
    const ul = el('ul', 'path-list copy-list');
    for (const d of disks) ul.append(el('li', 'mono', d.path || _('{dev} (no file)', { dev: d.dev || _('disk') })));
    box.append(ul);
  }
  const input = $('vm-clone-name');
  input.value = '';
  input.placeholder = _('{vm}-clone-N', { vm: name });
  showCloneError('');
  $('vm-clone-submit').disabled = false;
  openDialog($('vm-clone-dialog'), { focus: input, back: cloneClosed });
}

async function submitClone(ev) {
  ev.preventDefault();
  const source = cloning;
  if (!source || !vmOf(source)) { $('vm-clone-dialog').close(); return; }
  showCloneError('');
  const name = $('vm-clone-name').value.trim();
  const btn = $('vm-clone-submit');
  btn.disabled = true;
  try {
    const r = await api('POST', `${addressOf(source)}/clone`, name ? { name } : {});
    followVmTask(r.data);
    $('vm-clone-dialog').close('done');
    announce(_('Cloning {vm} as {name}', { vm: vmTitle(source), name: vmNameOf(r.data || {}) || name || _('a new VM') }));
  } catch (e) {
    showCloneError(e.message);
    if (e.status === 404) vmGone(source);
    $('vm-clone-name').focus();
  } finally {
    btn.disabled = false;
  }
}

/** Where the keyboard goes once the clone dialog closed: back to Clone; while the copy
 * holds it (or once the VM has started), to the row's first usable control. */
function cloneClosed() {
  const ref = cloning;
  cloning = null;
  if (!ref || !vmOf(ref)) return null; // gone, or signed out
  renderVms(); // a clone just started holds the buttons: know which are left
  const usable = (b) => b && !b.hidden && !b.disabled;
  const clone = controlOf(ref, 'clone');
  if (usable(clone)) return clone;
  const row = clone && clone.closest('li');
  return row ? [...row.querySelectorAll('button')].find(usable) || null : null;
}

// -- moving a VM to another host (admins; several hosts) -------------------------------------

const MIGRATABLE = new Set(['running', 'paused', 'shutoff']);
const showMigrateError = (text) => showError('vm-migrate-error', text);
const mib = (n) => (typeof n === 'number' && isFinite(n) ? Math.round(n / 1048576) : null);

/** While a move runs, the dialog shows its progress and Cancel cancels it; else its form. */
function migrateRunning(running) {
  for (const id of ['vm-migrate-host', 'vm-migrate-live', 'vm-migrate-storage']) $(id).disabled = running;
  $('vm-migrate-submit').hidden = running;
  $('vm-migrate-progress').hidden = !running;
  const cancel = $('vm-migrate-cancel');
  cancel.textContent = running ? _('Cancel migration') : _('Cancel');
  cancel.disabled = false;
  if (!running) {
    $('vm-migrate-bar').removeAttribute('value');
    $('vm-migrate-bar').removeAttribute('aria-valuetext');
  }
}

function openMigrate(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  const from = hostOf(vm);
  const { name } = ref;
  migrating = { ref, from, task: null };
  $('vm-migrate-title').textContent = _('Migrate {name}', { name });
  $('vm-migrate-text').textContent = _('{name} is on {from}: it moves to the host chosen, its definition with it.', { name, from });
  const targets = hostList().filter((h) => h.name !== from && h.state === 'connected');
  const sel = $('vm-migrate-host');
  sel.replaceChildren(...targets.map((h) => {
    const o = el('option', null, h.name);
    o.value = h.name;
    return o;
  }));
  $('vm-migrate-live').checked = true;
  $('vm-migrate-storage').value = 'auto';
  $('vm-migrate-status').textContent = '';
  migrateRunning(false);
  showMigrateError(targets.length ? '' : _('No other host is connected.'));
  $('vm-migrate-submit').disabled = !targets.length;
  openDialog($('vm-migrate-dialog'), { focus: targets.length ? sel : $('vm-migrate-cancel'),
    back: migrateClosed });
}

/** The keyboard goes back to Migrate, or to the row's first usable control (while the VM
 * moves, Migrate is held). */
function migrateClosed() {
  const ref = migrating && migrating.ref;
  migrating = null;
  if (!ref || !vmOf(ref)) return null;
  renderVms();
  const usable = (b) => b && !b.hidden && !b.disabled;
  const b = controlOf(ref, 'migrate');
  if (usable(b)) return b;
  const row = b && b.closest('li');
  return row ? [...row.querySelectorAll('button')].find(usable) || null : null;
}

async function submitMigrate(ev) {
  ev.preventDefault();
  const m = migrating;
  if (!m || m.task) return;
  if (!vmOf(m.ref)) { $('vm-migrate-dialog').close(); return; }
  showMigrateError('');
  const to = $('vm-migrate-host').value;
  if (!to) { showMigrateError(_('Choose the host to move it to.')); return; }
  const body = { host: to, live: $('vm-migrate-live').checked,
    copy_storage: $('vm-migrate-storage').value };
  const btn = $('vm-migrate-submit');
  btn.disabled = true;
  try {
    const r = await api('POST', `${addressOf(m.ref)}/migrate`, body);
    const rec = r.data || {};
    if (typeof rec.id !== 'string') throw new Error(_('The server did not start the migration.'));
    moves.set(rec.id, { ref: m.ref, from: m.from, to });
    if (migrating === m) {
      m.task = rec.id;
      migrateRunning(true);
      $('vm-migrate-status').textContent = _('Moving {name} to {to}…', { name: m.ref.name, to });
      $('vm-migrate-cancel').focus();
    }
    setBusy(m.ref, 'migrate');
    upsertTask(rec); // in the task panel; its events follow
    migrateProgress(rec);
  } catch (e) {
    showMigrateError(e.message);
    if (e.status === 404) vmGone(m.ref);
    $('vm-migrate-host').focus();
  } finally {
    btn.disabled = false;
  }
}

/** A vm.migrate task changed: the dialog's progress; once ended, what it did. */
function migrateProgress(rec) {
  const move = moves.get(rec.id);
  if (!move) return;
  const shown = migrating && migrating.task === rec.id && $('vm-migrate-dialog').open;
  if (!TERMINAL.has(rec.status)) {
    if (!shown) return;
    const pct = typeof rec.progress === 'number' ? Math.max(0, Math.min(100, rec.progress)) : null;
    const d = rec.details || {};
    const bar = $('vm-migrate-bar');
    if (pct === null) bar.removeAttribute('value'); else bar.value = pct;
    const moved = mib(d.bytes);
    const total = mib(d.total);
    const parts = [];
    if (pct !== null) parts.push(`${Math.round(pct)}%`);
    if (moved !== null) parts.push(total !== null ? _('{moved} of {total} MiB moved', { moved, total }) : _('{moved} MiB moved', { moved }));
    const text = parts.length ? parts.join(' · ') : _('Moving {name} to {to}…', { name: move.ref.name, to: move.to });
    bar.setAttribute('aria-valuetext', text);
    $('vm-migrate-status').textContent = text;
    return;
  }
  moves.delete(rec.id);
  setBusy(move.ref, null);
  if (rec.status === 'finished') {
    // its row is the target's before the dialog closes: the keyboard goes back to it
    movedVm(move).then(() => {
      if (shown && migrating && migrating.task === rec.id) $('vm-migrate-dialog').close('done');
      announce(_('Moved {name} to {to}', { name: move.ref.name, to: move.to }));
    });
    return;
  }
  const why = rec.status === 'cancelled' ? _('Cancelled: {name} stays on {from}.', { name: move.ref.name, from: move.from })
    : _('{name} was not moved: {reason}', { name: move.ref.name, reason: rec.message || _('the migration failed') });
  if (shown) {
    migrating.task = null;
    migrateRunning(false);
    $('vm-migrate-status').textContent = '';
    showMigrateError(why);
    $('vm-migrate-submit').focus();
  } else {
    announce(why);
  }
  renderVms();
}

/** The VM is now its target's: its row there at once, the source's gone (the source's
 * vm.deleted may come later); the open dialog is then about the target's row. */
async function movedVm(move) {
  const there = { host: move.to, name: move.ref.name };
  try {
    const r = await api('GET', addressOf(there));
    if (!r.data || typeof r.data.name !== 'string') return;
    forgetVm(move.ref);
    vmUpsert(r.data, { flash: false });
    if (migrating && migrating.ref === move.ref) migrating.ref = there;
  } catch (e) {
    // gone already: its events say so
  }
  renderVms();
}

async function cancelMigrate() {
  const m = migrating;
  if (!m || !m.task) { $('vm-migrate-dialog').close(); return; }
  const btn = $('vm-migrate-cancel');
  btn.disabled = true;
  showMigrateError('');
  $('vm-migrate-status').textContent = _('Cancelling…');
  try {
    await requestCancel(m.task);
  } catch (e) {
    showMigrateError(e.message);
    btn.disabled = false;
  }
}

// -- who may use a VM (admins; any state) ---------------------------------------------------

/** "alice, bob carol" -> ["alice", "bob", "carol"]: the server judges each name. */
function splitNames(text) {
  const out = [];
  for (const n of text.split(/[\s,]+/)) if (n && !out.includes(n)) out.push(n);
  return out;
}

const showAccessError = (text) => showError('vm-access-error', text, ['vm-access-users', 'vm-access-groups']);

function openAccess(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  accessing = ref;
  $('vm-access-title').textContent = _('Who may use {ref}', { ref: vmTitle(ref) });
  $('vm-access-users').value = namesOf(vm.users).join(', ');
  $('vm-access-groups').value = namesOf(vm.groups).join(', ');
  showAccessError('');
  $('vm-access-save').disabled = false;
  openVmDialog($('vm-access-dialog'), ref, 'access', $('vm-access-users'));
  loadPrincipals();
}

/** The host's users and groups, offered as one-click additions to the access fields. */
async function loadPrincipals() {
  if (!offers('/users', 'get')) return;
  try {
    const [u, g] = await Promise.all([api('GET', '/users'), api('GET', '/groups')]);
    principals = { users: (u.data || []).map((x) => x.name), groups: (g.data || []).map((x) => x.name) };
  } catch (e) {
    principals = { users: [], groups: [] };
  }
  renderPicks();
}

function renderPicks() {
  const p = principals || { users: [], groups: [] };
  for (const [kind, input, box] of [['users', 'vm-access-users', 'vm-access-user-picks'],
    ['groups', 'vm-access-groups', 'vm-access-group-picks']]) {
    const have = new Set(splitNames($(input).value));
    const left = p[kind].filter((n) => !have.has(n)).slice(0, 16);
    $(box).replaceChildren(...left.map((n) => {
      const b = el('button', 'btn btn-small btn-plain pick', `+ ${n}`);
      b.type = 'button';
      b.setAttribute('aria-label', kind === 'users' ? _('Add user {name}', { name: n }) : _('Add group {name}', { name: n }));
      b.addEventListener('click', () => {
        $(input).value = [...splitNames($(input).value), n].join(', ');
        renderPicks();
        $(input).focus();
      });
      return b;
    }));
  }
}

async function saveAccess(ev) {
  ev.preventDefault();
  const ref = accessing;
  if (!ref || !vmOf(ref)) { $('vm-access-dialog').close(); return; }
  showAccessError('');
  const body = { users: splitNames($('vm-access-users').value),
    groups: splitNames($('vm-access-groups').value) };
  const btn = $('vm-access-save');
  btn.disabled = true;
  try {
    const r = await api('PUT', addressOf(ref), body);
    if (r.data && typeof r.data.name === 'string') vmUpsert(r.data, { flash: false });
    renderVms();
    $('vm-access-dialog').close('done');
    announce(`${vmTitle(ref)}: ${accessText(r.data || body)}`);
  } catch (e) {
    showAccessError(e.message);
    if (e.status === 404) vmGone(ref);
    btn.disabled = false;
    $('vm-access-users').focus();
  }
}

export default {
  name: 'vm-dialogs',
  init() {
    addVmControl({ key: 'edit', text: _('Edit'), cls: 'btn-plain', place: 'actions', order: 20,
      shown: (vm) => isAdmin() && vm.state === 'shutoff' && offers('/vms/{name}', 'put'), run: openEdit });
    addVmControl({ key: 'clone', text: _('Clone'), cls: 'btn-plain', place: 'actions', order: 30,
      shown: (vm) => isAdmin() && vm.state === 'shutoff' && offers('/vms/{name}/clone', 'post'),
      run: openClone });
    addVmControl({ key: 'migrate', text: _('Migrate'), cls: 'btn-plain', place: 'actions', order: 40,
      shown: (vm) => isAdmin() && manyHosts() && MIGRATABLE.has(vm.state)
        && offers('/vms/{name}/migrate', 'post'),
      run: openMigrate });
    // who may use the VM: beside its assignment, apart from the power actions
    addVmControl({ key: 'access', text: _('Access'), cls: 'btn-plain btn-access', place: 'access', order: 100,
      free: true, label: (ref) => _('Access to {ref}', { ref: vmTitle(ref) }),
      shown: () => isAdmin() && offers('/vms/{name}', 'put'), run: openAccess });
    onTemplatesChanged(refreshPicks);
    $('vm-new').addEventListener('click', openVmNew);
    newCi = new CloudInitSection('vm-new', { mode: 'override' });
    $('vm-new-ci-slot').append(newCi.node);
    clearOnInput('vm-new-error', ['vm-new-count'], () => showNewError(''));
    $('vm-new-form').addEventListener('submit', createVm);
    $('vm-new-cancel').addEventListener('click', () => $('vm-new-dialog').close());
    $('vm-new-templates').addEventListener('change', () => { updateNamePlaceholder(); showNewError(''); });
    clearOnInput('vm-new-error', ['vm-new-name'], () => showNewError(''));
    $('vm-edit-form').addEventListener('submit', saveEdit);
    $('vm-edit-cancel').addEventListener('click', () => $('vm-edit-dialog').close());
    $('vm-edit-firmware').addEventListener('change', () => {
      const vm = editing && vmOf(editing);
      $('vm-edit-secure').disabled = !vm || !secureBootUsable(vm);
      if ($('vm-edit-secure').disabled) $('vm-edit-secure').checked = false;
    });
    $('vm-clone-form').addEventListener('submit', submitClone);
    $('vm-clone-cancel').addEventListener('click', () => $('vm-clone-dialog').close());
    clearOnInput('vm-clone-error', ['vm-clone-name'], () => showCloneError(''));
    $('vm-migrate-form').addEventListener('submit', submitMigrate);
    $('vm-migrate-cancel').addEventListener('click', cancelMigrate);
    $('vm-migrate-host').addEventListener('change', () => showMigrateError(''));
    watchTasks(['vm.migrate'], (rec) => migrateProgress(rec));
    onHosts(() => { if ($('vm-new-dialog').open) fillNewHost(); });
    $('vm-access-form').addEventListener('submit', saveAccess);
    $('vm-access-cancel').addEventListener('click', () => $('vm-access-dialog').close());
    $('vm-access-dialog').addEventListener('close', () => { accessing = null; });
    for (const id of ['vm-access-users', 'vm-access-groups']) {
      $(id).addEventListener('input', () => {
        if (!$('vm-access-error').hidden) showAccessError('');
        if (principals) renderPicks(); // typed names are no longer offered
      });
    }
  },
  stop() {
    editing = null;
    cloning = null;
    migrating = null;
    moves.clear();
    accessing = null;
    principals = null;
    $('vm-new-templates').replaceChildren();
    newCi.clear();
  },
};
