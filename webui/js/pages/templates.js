/* Templates: how VMs are made (an ISO with memory, processors, disk and network). Made
 * from an ISO of the library, a path, or a distribution's published media; cloned,
 * renamed in place, deleted. What a template misses (an ISO gone, a pool) is shown. */

import { $, el, announce, collator, memText, humanSize, distroChip, actionButton, showError,
  replaceRowsKeepingFocus } from '../core/dom.js';
import { api, offers, onServerKnown, routesKnown, capabilities } from '../core/api.js';
import { askConfirm, openDialog } from '../core/dialogs.js';
import { Listing } from '../core/listing.js';
import { isAdmin } from '../core/session.js';
import { upsertTask, taskTarget } from '../core/tasks.js';
import { isoList, hasIso, onIsosChanged, setPrefill, distroText } from './isos.js';
import { fillHostSelect, isRemoteHost, localHost, manyHosts, onHosts } from './hosts.js';
import { CloudInitSection, cloudInitText } from './cloud-init.js';
import { _, _n } from '../core/i18n.js';

export let templates = new Map(); // name -> template
const rowErrors = new Map(); // name -> error text shown in its row
let renaming = null; // the template whose name is being edited
let distros = null; // GET /config/distros, or null when the server has none
let distrosAsked = false;
const listeners = new Set();

/** ``fn()`` after the templates changed. */
export function onTemplatesChanged(fn) {
  listeners.add(fn);
}

/** What a template misses, in words: [] when it can be used. */
export function invalidText(inv) {
  if (!inv || typeof inv !== 'object') return [];
  const out = [];
  const list = (v) => (Array.isArray(v) ? v : [v]).map(String);
  for (const [key, v] of Object.entries(inv)) {
    if (key === 'cdrom') out.push(list(v).length > 1 ? _('{n} ISOs missing', { n: list(v).length }) : _('ISO missing'));
    else if (key === 'networks') for (const n of list(v)) out.push(_('network {n} missing', { n }));
    else if (key === 'storagepools') for (const n of list(v)) out.push(_('storage pool {n} missing', { n }));
    else if (key === 'file') out.push(_('file unreadable: {files}', { files: list(v).join(', ') }));
    else out.push(`${key}: ${list(v).join(', ')}`);
  }
  return out;
}

/** "2 GiB · 2 vCPUs · 20 GB disk" */
export function templateSpec(t) {
  const parts = [memText(t.memory && t.memory.current)];
  const n = t.cpu_info && t.cpu_info.vcpus;
  if (n) parts.push(_n('{n} vCPU', '{n} vCPUs', n));
  const disks = Array.isArray(t.disks) ? t.disks : [];
  const size = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
  if (disks.length) parts.push(_('{size} GB disk', { size }));
  return parts.join(' · ');
}

// the listing: answers taken in order (the New VM dialog asks again while a resync may)
const listing = new Listing({
  path: '/templates',
  render: () => {
    if (listing.error) return; // keep what we have
    templates = new Map(listing.items.map((x) => [x.name, x]));
    render();
  },
});

/** GET /templates again (what a template misses may have changed since). */
export async function loadTemplates() {
  await listing.load();
}

// -- the new-template form -----------------------------------------------------------------

function fillIsoSelect() {
  const sel = $('tmpl-iso');
  const want = sel.value || $('tmpl-path').value.trim();
  const isos = isoList().sort((a, b) => collator.compare(a.name || '', b.name || ''));
  const opts = [el('option', null, isos.length ? _('Choose an ISO…') : _('No ISO in the library yet'))];
  opts[0].value = '';
  for (const iso of isos) {
    const o = el('option', null, `${iso.name} — ${distroText(iso)}`);
    o.value = iso.path;
    o.title = iso.path;
    opts.push(o);
  }
  sel.replaceChildren(...opts);
  sel.value = hasIso(want) ? want : '';
}

function prefillTemplate(path) {
  location.hash = '#/templates';
  $('tmpl-src-iso').checked = true; // an ISO of the library: the ISO source
  showSource();
  fillIsoSelect();
  $('tmpl-iso').value = hasIso(path) ? path : '';
  $('tmpl-path').value = path;
  showTmplError('');
  $('tmpl-name').focus();
}

// -- the source: an ISO to install from, a network boot, or a disk image (qcow2, raw) ---------

let tmplCi = null; // the New template form's cloud-init section

/** The New template form's source: 'iso', 'netboot' or 'image'. */
const sourceKind = () => (document.querySelector('input[name="tmpl-source"]:checked') || {}).value || 'iso';

function showSource() {
  const kind = sourceKind();
  $('tmpl-iso-field').hidden = kind !== 'iso';
  $('tmpl-path-field').hidden = kind !== 'iso';
  $('tmpl-image-path-field').hidden = kind !== 'image';
  $('tmpl-image-help').hidden = kind !== 'image';
  $('tmpl-netboot-help').hidden = kind !== 'netboot';
  $('tmpl-name').placeholder = { iso: _('from the ISO'), image: _('from the file name'), netboot: '' }[kind];
  fillImageHost();
}

/** The image's host: asked with several hosts (a storage volume of another host). */
function fillImageHost() {
  const shown = sourceKind() === 'image' && manyHosts();
  $('tmpl-image-host-field').hidden = !shown;
  if (shown) fillHostSelect($('tmpl-image-host'), $('tmpl-image-host').value || localHost());
}

/** The form's error; ``field``: the input it is about (default: the source's path). */
function showTmplError(text, field = null) {
  showError('tmpl-error', text);
  const at = field || $(sourceKind() === 'image' ? 'tmpl-image-path' : 'tmpl-path');
  for (const f of [$('tmpl-path'), $('tmpl-image-path'), ...Object.values(tmplCi.inputs)]) {
    f.setAttribute('aria-invalid', text && f === at ? 'true' : 'false');
  }
}

/** The form's source_media, or null once the error is shown. */
function sourceMedia() {
  const kind = sourceKind();
  if (kind === 'netboot') return { type: 'netboot' };
  if (kind === 'image') {
    const path = $('tmpl-image-path').value.trim();
    if (!path) {
      showTmplError(_('Enter the path of a qcow2 or raw disk image.'));
      $('tmpl-image-path').focus();
      return null;
    }
    const media = { type: 'image', path };
    const host = manyHosts() ? $('tmpl-image-host').value : '';
    if (host && isRemoteHost(host)) media.host = host;
    return media;
  }
  const path = $('tmpl-path').value.trim() || $('tmpl-iso').value;
  if (!path) {
    showTmplError(_('Choose an ISO of the library or enter the path of one.'));
    $('tmpl-iso').focus();
    return null;
  }
  return { type: 'disk', path };
}

async function createTemplate(ev) {
  ev.preventDefault();
  showTmplError('');
  const media = sourceMedia();
  if (!media) return;
  const body = { source_media: media };
  const name = $('tmpl-name').value.trim();
  if (name) body.name = name;
  const mem = $('tmpl-memory').value.trim();
  if (mem) {
    const n = Number(mem);
    if (!Number.isInteger(n) || n < 64) { showTmplError(_('Memory is a whole number of MiB, at least 64.')); return; }
    body.memory = { current: n, maxmemory: n }; // as the OS defaults: no hot-plug room
  }
  const cpus = $('tmpl-vcpus').value.trim();
  if (cpus) {
    const n = Number(cpus);
    if (!Number.isInteger(n) || n < 1) { showTmplError(_('vCPUs is a whole number, at least 1.')); return; }
    body.cpu_info = { vcpus: n, maxvcpus: n };
  }
  Object.assign(body, hardwareChoice());
  const ci = tmplCi.body();
  if (ci.error) {
    tmplCi.node.open = true;
    showTmplError(ci.error, ci.input);
    ci.input.focus();
    return;
  }
  if (ci.value) body.cloud_init = ci.value;
  const btn = $('tmpl-create');
  btn.disabled = true;
  try {
    const r = await api('POST', '/templates', body);
    if (r.status === 202) {
      // made by a task (an image downloaded first): in the panel; the template follows
      upsertTask(r.data);
      announce(_('Making the template: {r}', { r: taskTarget(r.data) }));
    } else {
      templateChanged(r.data, false);
      announce(_('Template {name} created', { name: r.data.name }));
    }
    for (const id of ['tmpl-name', 'tmpl-memory', 'tmpl-vcpus', 'tmpl-path', 'tmpl-machine',
      'tmpl-firmware', 'tmpl-secure', 'tmpl-tpm', 'tmpl-image-path']) $(id).value = '';
    $('tmpl-iso').value = '';
    tmplCi.clear();
  } catch (e) {
    showTmplError(e.message);
    $(sourceKind() === 'image' ? 'tmpl-image-path' : sourceKind() === 'iso' ? 'tmpl-path' : 'tmpl-name').focus();
  } finally {
    btn.disabled = false;
  }
}

// -- the virtual hardware: chipset, firmware, TPM (each defaults to what the OS wants) ----------

const MACHINES = { q35: 'q35', pc: _('pc (i440FX)') };
const FIRMWARES = { bios: _('BIOS'), uefi: _('UEFI') };
let hwEditing = null; // the template the hardware dialog is about

/** The New template form's hardware fields: only those chosen (else the OS's default). */
function hardwareChoice() {
  const out = {};
  if ($('tmpl-machine').value) out.machine = $('tmpl-machine').value;
  if (out.machine === 'q35') out.cdrom_bus = 'sata'; // q35 has no IDE
  if ($('tmpl-firmware').value) out.firmware = $('tmpl-firmware').value;
  if ($('tmpl-secure').value) out.secure_boot = $('tmpl-secure').value === 'on';
  if ($('tmpl-tpm').value) out.tpm = $('tmpl-tpm').value === 'on';
  return out;
}

/** What the host cannot give is not offered (GET /config/capabilities). */
function applyCapabilities() {
  const caps = capabilities();
  if (!caps) return;
  $('tmpl-firmware-field').hidden = !caps.uefi;
  $('tmpl-secure-field').hidden = !caps.secure_boot;
  $('tmpl-tpm-field').hidden = !caps.tpm;
}

/** "q35 · UEFI · Secure Boot · TPM" */
export function hardwareText(t) {
  const parts = [];
  if (t.machine) parts.push(t.machine);
  if (t.firmware) parts.push(FIRMWARES[t.firmware] || t.firmware);
  if (t.secure_boot) parts.push(_('Secure Boot'));
  if (t.tpm) parts.push(_('TPM'));
  return parts.join(' · ');
}

const onOff = (b) => (b ? _('on') : _('off'));

function fillChoice(sel, labels, value, osDefault, offered) {
  const keys = [...Object.keys(labels).filter((k) => offered(k) || k === value)];
  if (value && !keys.includes(value)) keys.push(value); // a versioned name (pc-q35-7.2)
  sel.replaceChildren(...keys.map((k) => {
    const o = el('option', null, k === osDefault ? _('{label} (OS default)', { label: labels[k] || k }) : labels[k] || k);
    o.value = k;
    return o;
  }));
  sel.value = value || osDefault || keys[0];
}

function secureUsable() {
  return $('tmpl-hw-firmware').value === 'uefi' && $('tmpl-hw-machine').value.includes('q35');
}

function openHardware(t) {
  const caps = capabilities() || {};
  const d = t.os_defaults || {};
  hwEditing = t.name;
  $('tmpl-hw-title').textContent = _('Hardware of {name}', { name: t.name });
  const from = d.source === 'osinfo-db' ? 'osinfo-db' : _('kimchi\'s own table');
  $('tmpl-hw-text').textContent = _('Its OS ({os}) wants, says {from}: {hardware}{secure_boot}{tpm}.', {
    os: `${t.os_distro || _('unknown')} ${t.os_version || ''}`.trimEnd(), from,
    hardware: hardwareText(d) || _('nothing particular'),
    secure_boot: d.secure_boot ? '' : _(', no Secure Boot'), tpm: d.tpm ? '' : _(', no TPM') });
  fillChoice($('tmpl-hw-machine'), MACHINES, t.machine, d.machine, () => true);
  fillChoice($('tmpl-hw-firmware'), FIRMWARES, t.firmware, d.firmware,
    (k) => k === 'bios' || !!caps.uefi);
  $('tmpl-hw-firmware-field').hidden = $('tmpl-hw-firmware').options.length < 2;
  $('tmpl-hw-secure').checked = !!t.secure_boot;
  $('tmpl-hw-secure').disabled = !secureUsable();
  $('tmpl-hw-secure-help').textContent = _('OS default: {secure_boot}. UEFI on q35 only.', { secure_boot: onOff(d.secure_boot) });
  $('tmpl-hw-secure-field').hidden = !caps.secure_boot && !t.secure_boot;
  $('tmpl-hw-tpm').checked = !!t.tpm;
  $('tmpl-hw-tpm-help').textContent = _('OS default: {tpm}.', { tpm: onOff(d.tpm) });
  $('tmpl-hw-tpm-field').hidden = !caps.tpm && !t.tpm;
  showError('tmpl-hw-error', '');
  $('tmpl-hw-save').disabled = false;
  openDialog($('tmpl-hw-dialog'), {
    focus: $('tmpl-hw-machine'),
    back: () => document.querySelector(`#tmpl-rows tr[data-name="${CSS.escape(t.name)}"] .tmpl-hw`),
  });
}

async function saveHardware(ev) {
  ev.preventDefault();
  const t = hwEditing && templates.get(hwEditing);
  if (!t) { $('tmpl-hw-dialog').close(); return; }
  const body = {};
  const machine = $('tmpl-hw-machine').value;
  if (machine !== (t.machine || '')) body.machine = machine;
  if (!$('tmpl-hw-firmware-field').hidden && $('tmpl-hw-firmware').value !== (t.firmware || 'bios')) {
    body.firmware = $('tmpl-hw-firmware').value;
  }
  const secure = $('tmpl-hw-secure').checked && secureUsable();
  if (secure !== !!t.secure_boot) body.secure_boot = secure;
  if (!$('tmpl-hw-tpm-field').hidden && $('tmpl-hw-tpm').checked !== !!t.tpm) body.tpm = $('tmpl-hw-tpm').checked;
  // q35 has no IDE: its CD-ROM goes to SATA with it
  if (body.machine && body.machine.includes('q35') && (t.cdrom_bus || 'ide') === 'ide') body.cdrom_bus = 'sata';
  if (!Object.keys(body).length) { $('tmpl-hw-dialog').close(); return; }
  $('tmpl-hw-save').disabled = true;
  try {
    const r = await api('PUT', `/templates/${encodeURIComponent(t.name)}`, body);
    templateChanged(r.data, false);
    $('tmpl-hw-dialog').close('done');
    announce(_('Template {name} saved', { name: t.name }));
  } catch (e) {
    showError('tmpl-hw-error', e.message);
    $('tmpl-hw-save').disabled = false;
  }
}

// -- image templates: the image, and the VMs over it ------------------------------------------

/** "3 VMs (a, b, c)": the VMs over an image template's base. */
const usedByText = (vms) => _n('{n} VM ({names})', '{n} VMs ({names})', vms.length, { n: vms.length, names: vms.join(', ') });

/** What an image template's row says of its image: "Disk image · qcow2 · 20 GiB", and the
 * VMs whose disks are leaves over it ("Used by 3 VMs", their names on hover and expanded). */
function imageInfo(t) {
  const m = t.source_media || {};
  const parts = [_('Disk image')];
  if (m.format) parts.push(m.format);
  if (typeof m.virtual_size === 'number') parts.push(humanSize(m.virtual_size));
  if (m.host) parts.push(_('on {host}', { host: m.host }));
  if (m.owned) parts.push(_('made from a VM'));
  const out = [el('span', 'tmpl-image-text', parts.join(' · '))];
  const vms = Array.isArray(t.vms) ? t.vms : [];
  if (!vms.length) {
    out.push(el('span', 'tmpl-used tmpl-used-none', _('Used by no VM')));
    return out;
  }
  const box = el('details', 'tmpl-used');
  const sum = el('summary', null, _n('Used by {n} VM', 'Used by {n} VMs', vms.length, { n: vms.length }));
  sum.title = vms.join('\n');
  const ul = el('ul', 'tmpl-used-list');
  for (const n of vms) ul.append(el('li', null, n));
  box.append(sum, ul);
  box.open = openUsed.has(t.name);
  box.addEventListener('toggle', () => {
    if (box.open) openUsed.add(t.name); else openUsed.delete(t.name);
  });
  out.push(box);
  return out;
}

const openUsed = new Set(); // templates whose "Used by" list is expanded (kept on re-render)
let vmsTimer = null;

/** A VM came, went or changed: the image templates' "Used by" may have changed (the
 * server knows which VMs stand on a base): list them again, once for a burst. */
function vmsChanged() {
  if (vmsTimer || ![...templates.values()].some((t) => Array.isArray(t.vms))) return;
  vmsTimer = setTimeout(() => { vmsTimer = null; loadTemplates(); }, 400);
}

// -- a template's cloud-init, in its dialog ----------------------------------------------------

let ciDialog = null; // the dialog's cloud-init section
let ciEditing = null; // the template the dialog is about

function openCloudInit(t) {
  ciEditing = t.name;
  $('tmpl-ci-title').textContent = _('cloud-init of {name}', { name: t.name });
  ciDialog.fill(t.cloud_init);
  ciDialog.node.open = true;
  showError('tmpl-ci-error', '');
  $('tmpl-ci-save').disabled = false;
  openDialog($('tmpl-ci-dialog'), {
    focus: ciDialog.inputs.hostname,
    back: () => document.querySelector(`#tmpl-rows tr[data-name="${CSS.escape(t.name)}"] .tmpl-ci`),
  });
}

async function saveCloudInit(ev) {
  ev.preventDefault();
  const t = ciEditing && templates.get(ciEditing);
  if (!t) { $('tmpl-ci-dialog').close(); return; }
  showError('tmpl-ci-error', '');
  const ci = ciDialog.body();
  if (ci.error) {
    showError('tmpl-ci-error', ci.error);
    ci.input.focus();
    return;
  }
  if (!ci.value) { $('tmpl-ci-dialog').close(); return; }
  $('tmpl-ci-save').disabled = true;
  try {
    const r = await api('PUT', `/templates/${encodeURIComponent(t.name)}`, { cloud_init: ci.value });
    templateChanged(r.data, false);
    $('tmpl-ci-dialog').close('done');
    announce(_('cloud-init of {name} saved', { name: t.name }));
  } catch (e) {
    showError('tmpl-ci-error', e.message);
    $('tmpl-ci-save').disabled = false;
  }
}

// -- the list ----------------------------------------------------------------------------

function templateChanged(t, updated) {
  if (!t || typeof t.name !== 'string') return;
  if (updated && t.previous && t.previous !== t.name) templates.delete(t.previous);
  const rec = { ...t };
  delete rec.previous;
  delete rec.by;
  templates.set(rec.name, rec);
  render();
}

async function refreshTemplate(name) {
  try {
    const r = await api('GET', `/templates/${encodeURIComponent(name)}`);
    if (templates.has(name)) templateChanged(r.data, false);
  } catch (e) {
    // deleted meanwhile: its event follows
  }
}

function rowError(name, text) {
  if (text) rowErrors.set(name, text);
  else rowErrors.delete(name);
  render();
}

async function cloneTemplate(name, btn) {
  btn.disabled = true;
  try {
    const r = await api('POST', `/templates/${encodeURIComponent(name)}/clone`);
    rowErrors.delete(name);
    templateChanged(r.data, false);
    announce(_('Template {name} cloned as {name2}', { name, name2: r.data.name }));
  } catch (e) {
    rowError(name, e.message);
  } finally {
    btn.disabled = false;
  }
}

async function renameTemplate(name, input) {
  const to = input.value.trim();
  if (!to || to === name) { renaming = null; rowError(name, ''); return; }
  input.disabled = true;
  try {
    const r = await api('PUT', `/templates/${encodeURIComponent(name)}`, { name: to });
    renaming = null;
    rowErrors.delete(name);
    templates.delete(name);
    if (r.data && r.data.name) templateChanged(r.data, false);
    else render();
    announce(_('Template {name} renamed to {to}', { name, to }));
  } catch (e) {
    input.disabled = false;
    rowError(name, e.message);
  }
}

function askDelete(name) {
  const t = templates.get(name) || {};
  const over = Array.isArray(t.vms) ? t.vms : [];
  const owned = t.source_media && t.source_media.owned;
  askConfirm({
    title: _('Delete template?'),
    text: over.length ? _('The template “{name}” is the base of {over}: it cannot be deleted while they are there.', { name, over: usedByText(over) })
      : owned ? _('The template “{name}” will be deleted, its base image with it. Virtual machines made from it are not affected.', { name })
        : _('The template “{name}” will be deleted. Virtual machines made from it are not affected.', { name }),
    run: async () => {
      await api('DELETE', `/templates/${encodeURIComponent(name)}`);
      templates.delete(name);
      rowErrors.delete(name);
      render();
      announce(_('Template {name} deleted', { name }));
    },
    back: () => document.querySelector(`#tmpl-rows tr[data-name="${CSS.escape(name)}"] .tmpl-delete`),
  });
}

function renameForm(t) {
  const f = el('form', 'rename-form');
  const input = el('input', 'input');
  input.type = 'text';
  input.value = t.name;
  input.setAttribute('aria-label', _('New name for {name}', { name: t.name }));
  input.spellcheck = false;
  const save = el('button', 'btn btn-small btn-primary', _('Save'));
  save.type = 'submit';
  const cancel = el('button', 'btn btn-small btn-plain', _('Cancel'));
  cancel.type = 'button';
  cancel.addEventListener('click', () => { renaming = null; rowError(t.name, ''); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { renaming = null; rowError(t.name, ''); }
  });
  f.addEventListener('submit', (e) => { e.preventDefault(); renameTemplate(t.name, input); });
  f.append(input, save, cancel);
  setTimeout(() => { if (input.isConnected && !input.disabled) { input.focus(); input.select(); } }, 0);
  return f;
}

function templateRow(t) {
  const tr = el('tr');
  tr.dataset.name = t.name;
  const problems = invalidText(t.invalid);
  if (problems.length) tr.classList.add('row-invalid');

  const name = el('td', 'cell-name');
  name.append(renaming === t.name ? renameForm(t) : el('span', 'tmpl-name', t.name));
  const media = t.source_media || {};
  const srcText = t.source_media ? (media.type === 'netboot' ? _('network boot') : media.path || '—') : '—';
  const src = el('span', 'tmpl-src mono');
  const bdi = el('bdi', null, srcText);
  bdi.dir = 'ltr';
  src.append(bdi);
  src.title = _('Source: {source}', { source: srcText });
  name.append(src);
  if (media.type === 'image') name.append(...imageInfo(t));
  const hw = hardwareText(t);
  if (hw) name.append(el('span', 'tmpl-hw-text', hw));
  // its cloud-init, in words; admins change it from there (the actions column is full)
  const ci = cloudInitText(t.cloud_init);
  if (isAdmin()) {
    const b = el('button', 'tmpl-ci', ci ? _('cloud-init: {what}', { what: ci }) : _('+ cloud-init'));
    b.type = 'button';
    b.setAttribute('aria-label', _('cloud-init of {name}', { name: t.name }));
    if (ci) b.title = _('cloud-init: {what}', { what: ci });
    b.addEventListener('click', () => openCloudInit(t));
    name.append(b);
  } else if (ci) {
    name.append(el('span', 'tmpl-ci-text', _('cloud-init: {what}', { what: ci })));
  }
  if (problems.length) {
    const chip = el('span', 'chip-invalid', problems.join(' · '));
    const missing = t.invalid && t.invalid.cdrom ? [].concat(t.invalid.cdrom).map((p) => `\n${_('missing ISO: {path}', { path: p })}`).join('') : '';
    chip.title = _('A VM made from this template now would fail: {problems}', { problems: problems.join('; ') }) + missing;
    name.append(chip);
  }
  const err = rowErrors.get(t.name);
  if (err) name.append(el('p', 'row-error', err));

  const os = el('td', 'tmpl-os');
  const chip = distroChip(t.os_distro, t.os_version);
  if (!t.os_distro || t.os_distro === 'unknown') chip.replaceChildren(el('span', 'distro-name', _('unknown')));
  os.append(chip);
  const mem = el('td', 'num', memText(t.memory && t.memory.current));
  const cpus = el('td', 'num', t.cpu_info && t.cpu_info.vcpus ? t.cpu_info.vcpus : '—');
  const disks = Array.isArray(t.disks) ? t.disks : [];
  const total = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
  const disk = el('td', 'num', disks.length ? _('{size} GB', { size: total }) : '—');
  if (disks.length) disk.title = disks.map((x) => _('{size} GB {format} on {pool}', { size: x.size, format: x.format || '', pool: x.pool && x.pool.name ? x.pool.name : '?' })).join('\n');
  const nets = el('td', null, Array.isArray(t.networks) && t.networks.length ? t.networks.join(', ') : _('none'));
  const act = el('td', 'cell-actions');
  if (isAdmin()) {
    act.append(
      actionButton(_('Clone'), 'btn-plain', _('Clone {name}', { name: t.name }), (b) => cloneTemplate(t.name, b)),
      actionButton(_('Hardware'), 'btn-plain tmpl-hw', _('Hardware of {name}', { name: t.name }), () => openHardware(t)),
      actionButton(_('Rename'), 'btn-plain', _('Rename {name}', { name: t.name }), () => {
        renaming = t.name;
        rowError(t.name, '');
      }),
      actionButton(_('Delete'), 'btn-danger-outline tmpl-delete', _('Delete {name}', { name: t.name }), () => askDelete(t.name)),
    );
  }
  tr.append(name, os, mem, cpus, disk, nets, act);
  return tr;
}

function render() {
  const all = [...templates.values()].sort((a, b) => collator.compare(a.name, b.name));
  const rows = $('tmpl-rows');
  const active = document.activeElement;
  const typing = active && active.closest && active.closest('#tmpl-rows .rename-form');
  if (typing && renaming) {
    // do not rebuild the row being typed in; refresh the others around it
    for (const tr of [...rows.children]) if (tr.dataset.name !== renaming) tr.remove();
    const editing = rows.firstElementChild;
    for (const t of all) {
      if (t.name === renaming) continue;
      const tr = templateRow(t);
      if (editing && collator.compare(t.name, renaming) < 0) rows.insertBefore(tr, editing);
      else rows.append(tr);
    }
  } else {
    replaceRowsKeepingFocus(rows, all.map(templateRow)); // a VM's event may re-render
  }
  $('tmpl-empty').hidden = all.length > 0;
  const n = all.length;
  const bad = all.filter((t) => invalidText(t.invalid).length).length;
  $('tmpl-count').textContent = bad ? _n('{n} template · {bad} invalid', '{n} templates · {bad} invalid', n, { bad })
    : _n('{n} template', '{n} templates', n);
  const badge = $('nav-tmpl-count');
  badge.hidden = n === 0;
  badge.textContent = String(n);
  for (const fn of listeners) fn();
}

// -- templates from a distribution ---------------------------------------------------------

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '')
    .replace(/-{2,}/g, '-') || 'template';
}

async function loadDistros() {
  // ask only a server that has them: a 404 would be logged by the browser as an error
  if (!offers('/config/distros', 'get')) {
    distros = null;
  } else {
    try {
      const r = await api('GET', '/config/distros');
      distros = Array.isArray(r.data) ? r.data : null;
    } catch (e) {
      distros = null;
    }
  }
  renderDistros();
}

function renderDistros() {
  const list = distros;
  $('distro-card').hidden = !list || !list.length;
  if (!list) return;
  const items = [...list].sort((a, b) => collator.compare(a.name || '', b.name || '')).map((d) => {
    const li = el('li', 'distro-item');
    const dd = d.os_distro || 'unknown';
    li.append(
      el('span', `distro distro-${/^[a-z0-9-]+$/.test(dd) ? dd : 'other'}`,
        d.os_version ? `${dd} ${d.os_version}` : dd === 'unknown' ? _('unknown') : dd),
      el('span', 'distro-title', d.name || ''),
      el('span', 'distro-arch mono', d.os_arch || ''),
    );
    li.title = d.path || '';
    li.append(actionButton(_('+ Template'), 'btn-plain', _('Create a template from {name}', { name: d.name }),
      (btn) => templateFromDistro(d, btn)));
    return li;
  });
  $('distro-list').replaceChildren(...items);
}

async function templateFromDistro(d, btn) {
  const err = $('distro-error');
  err.hidden = true;
  btn.disabled = true;
  const body = { name: slug(d.name || d.os_distro || ''), source_media: { type: 'disk', path: d.path } };
  if (d.os_distro) body.os_distro = d.os_distro;
  if (d.os_version) body.os_version = d.os_version;
  try {
    const r = await api('POST', '/templates', body);
    templateChanged(r.data, false);
    announce(_('Template {name} created', { name: r.data.name }));
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    btn.disabled = false;
  }
}

export default {
  name: 'templates',
  page: { id: 'templates', title: _('Templates') },
  events: {
    'template.created template.updated': (d, ev) => {
      templateChanged(d, ev.type === 'template.updated');
      // a hand edit's event does not say what the template misses: ask for the full record
      if (d.by === 'file' && typeof d.name === 'string') refreshTemplate(d.name);
    },
    'template.deleted': (d) => {
      if (templates.delete(d.name)) render();
    },
    'vm.created vm.deleted vm.updated': vmsChanged,
  },
  init() {
    setPrefill(prefillTemplate);
    onIsosChanged(fillIsoSelect);
    onServerKnown(() => {
      // the distributions once the routes are known (they say whether the server has them)
      if (routesKnown() && !distrosAsked) { distrosAsked = true; loadDistros(); }
    });
    $('tmpl-form').addEventListener('submit', createTemplate);
    tmplCi = new CloudInitSection('tmpl');
    $('tmpl-ci-slot').append(tmplCi.node);
    for (const r of document.querySelectorAll('input[name="tmpl-source"]')) {
      r.addEventListener('change', () => { showSource(); showTmplError(''); });
    }
    $('tmpl-image-path').addEventListener('input', () => {
      if (!$('tmpl-error').hidden) showTmplError('');
    });
    onHosts(fillImageHost);
    showSource();
    ciDialog = new CloudInitSection('tmpl-edit', { mode: 'edit', open: true });
    $('tmpl-ci-dialog-slot').append(ciDialog.node);
    $('tmpl-ci-form').addEventListener('submit', saveCloudInit);
    $('tmpl-ci-cancel').addEventListener('click', () => $('tmpl-ci-dialog').close());
    $('tmpl-ci-dialog').addEventListener('close', () => { ciEditing = null; });
    onServerKnown(applyCapabilities);
    $('tmpl-hw-form').addEventListener('submit', saveHardware);
    $('tmpl-hw-cancel').addEventListener('click', () => $('tmpl-hw-dialog').close());
    $('tmpl-hw-dialog').addEventListener('close', () => { hwEditing = null; });
    for (const id of ['tmpl-hw-machine', 'tmpl-hw-firmware']) {
      $(id).addEventListener('change', () => {
        $('tmpl-hw-secure').disabled = !secureUsable();
        if ($('tmpl-hw-secure').disabled) $('tmpl-hw-secure').checked = false;
      });
    }
    $('tmpl-iso').addEventListener('change', (e) => {
      if (e.target.value) $('tmpl-path').value = e.target.value;
      showTmplError('');
    });
    $('tmpl-path').addEventListener('input', () => {
      const v = $('tmpl-path').value.trim();
      $('tmpl-iso').value = hasIso(v) ? v : '';
      if (!$('tmpl-error').hidden) showTmplError('');
    });
  },
  async resync() {
    await loadTemplates(); // best effort: a failure keeps what was shown
  },
  stop() {
    listing.forget();
    templates.clear();
    rowErrors.clear();
    renaming = null;
    distros = null;
    distrosAsked = false;
    openUsed.clear();
    clearTimeout(vmsTimer);
    vmsTimer = null;
    tmplCi.clear(); // nothing typed (a password) outlives the session
    ciDialog.clear();
    $('tmpl-rows').replaceChildren();
    $('tmpl-iso').replaceChildren();
    $('distro-list').replaceChildren();
  },
};
