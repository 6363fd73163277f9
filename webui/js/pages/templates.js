/* Templates: how VMs are made (an ISO with memory, processors, disk and network). Made
 * from an ISO of the library, a path, or a distribution's published media; cloned,
 * renamed in place, deleted. What a template misses (an ISO gone, a pool) is shown. */

import { $, el, announce, collator, numberFmt, memText, distroChip, actionButton, showError } from '../core/dom.js';
import { api, offers, onServerKnown, routesKnown } from '../core/api.js';
import { askConfirm } from '../core/dialogs.js';
import { Listing } from '../core/listing.js';
import { isAdmin } from '../core/session.js';
import { isoList, hasIso, onIsosChanged, setPrefill, distroText } from './isos.js';

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
    if (key === 'cdrom') out.push(list(v).length > 1 ? `${list(v).length} ISOs missing` : 'ISO missing');
    else if (key === 'networks') for (const n of list(v)) out.push(`network ${n} missing`);
    else if (key === 'storagepools') for (const n of list(v)) out.push(`storage pool ${n} missing`);
    else if (key === 'file') out.push(`file unreadable: ${list(v).join(', ')}`);
    else out.push(`${key}: ${list(v).join(', ')}`);
  }
  return out;
}

/** "2 GiB · 2 vCPUs · 20 GB disk" */
export function templateSpec(t) {
  const parts = [memText(t.memory && t.memory.current)];
  const n = t.cpu_info && t.cpu_info.vcpus;
  if (n) parts.push(`${n} ${n === 1 ? 'vCPU' : 'vCPUs'}`);
  const disks = Array.isArray(t.disks) ? t.disks : [];
  const size = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
  if (disks.length) parts.push(`${size} GB disk`);
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
  const opts = [el('option', null, isos.length ? 'Choose an ISO…' : 'No ISO in the library yet')];
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
  fillIsoSelect();
  $('tmpl-iso').value = hasIso(path) ? path : '';
  $('tmpl-path').value = path;
  showTmplError('');
  $('tmpl-name').focus();
}

const showTmplError = (text) => showError('tmpl-error', text, ['tmpl-path']);

async function createTemplate(ev) {
  ev.preventDefault();
  showTmplError('');
  const path = $('tmpl-path').value.trim() || $('tmpl-iso').value;
  if (!path) {
    showTmplError('Choose an ISO of the library or enter the path of one.');
    $('tmpl-iso').focus();
    return;
  }
  const body = { source_media: { type: 'disk', path } };
  const name = $('tmpl-name').value.trim();
  if (name) body.name = name;
  const mem = $('tmpl-memory').value.trim();
  if (mem) {
    const n = Number(mem);
    if (!Number.isInteger(n) || n < 64) { showTmplError('Memory is a whole number of MiB, at least 64.'); return; }
    body.memory = { current: n, maxmemory: n }; // as the OS defaults: no hot-plug room
  }
  const cpus = $('tmpl-vcpus').value.trim();
  if (cpus) {
    const n = Number(cpus);
    if (!Number.isInteger(n) || n < 1) { showTmplError('vCPUs is a whole number, at least 1.'); return; }
    body.cpu_info = { vcpus: n, maxvcpus: n };
  }
  const btn = $('tmpl-create');
  btn.disabled = true;
  try {
    const r = await api('POST', '/templates', body);
    templateChanged(r.data, false);
    announce(`Template ${r.data.name} created`);
    for (const id of ['tmpl-name', 'tmpl-memory', 'tmpl-vcpus', 'tmpl-path']) $(id).value = '';
    $('tmpl-iso').value = '';
  } catch (e) {
    showTmplError(e.message);
    $('tmpl-path').focus();
  } finally {
    btn.disabled = false;
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
    announce(`Template ${name} cloned as ${r.data.name}`);
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
    announce(`Template ${name} renamed to ${to}`);
  } catch (e) {
    input.disabled = false;
    rowError(name, e.message);
  }
}

function askDelete(name) {
  askConfirm({
    title: 'Delete template?',
    text: `The template “${name}” will be deleted. Virtual machines made from it are not affected.`,
    run: async () => {
      await api('DELETE', `/templates/${encodeURIComponent(name)}`);
      templates.delete(name);
      rowErrors.delete(name);
      render();
      announce(`Template ${name} deleted`);
    },
    back: () => document.querySelector(`#tmpl-rows tr[data-name="${CSS.escape(name)}"] .tmpl-delete`),
  });
}

function renameForm(t) {
  const f = el('form', 'rename-form');
  const input = el('input', 'input');
  input.type = 'text';
  input.value = t.name;
  input.setAttribute('aria-label', `New name for ${t.name}`);
  input.spellcheck = false;
  const save = el('button', 'btn btn-small btn-primary', 'Save');
  save.type = 'submit';
  const cancel = el('button', 'btn btn-small btn-plain', 'Cancel');
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
  const srcText = t.source_media ? (t.source_media.type === 'netboot' ? 'network boot' : t.source_media.path || '—') : '—';
  const src = el('span', 'tmpl-src mono');
  const bdi = el('bdi', null, srcText);
  bdi.dir = 'ltr';
  src.append(bdi);
  src.title = `Source: ${srcText}`;
  name.append(src);
  if (problems.length) {
    const chip = el('span', 'chip-invalid', problems.join(' · '));
    const missing = t.invalid && t.invalid.cdrom ? [].concat(t.invalid.cdrom).map((p) => `\nmissing ISO: ${p}`).join('') : '';
    chip.title = `A VM made from this template now would fail: ${problems.join('; ')}${missing}`;
    name.append(chip);
  }
  const err = rowErrors.get(t.name);
  if (err) name.append(el('p', 'row-error', err));

  const os = el('td', 'tmpl-os');
  const chip = distroChip(t.os_distro, t.os_version);
  if (!t.os_distro || t.os_distro === 'unknown') chip.replaceChildren(el('span', 'distro-name', 'unknown'));
  os.append(chip);
  const mem = el('td', 'num', memText(t.memory && t.memory.current));
  const cpus = el('td', 'num', t.cpu_info && t.cpu_info.vcpus ? t.cpu_info.vcpus : '—');
  const disks = Array.isArray(t.disks) ? t.disks : [];
  const total = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
  const disk = el('td', 'num', disks.length ? `${total} GB` : '—');
  if (disks.length) disk.title = disks.map((x) => `${x.size} GB ${x.format || ''} on ${x.pool && x.pool.name ? x.pool.name : '?'}`).join('\n');
  const nets = el('td', null, Array.isArray(t.networks) && t.networks.length ? t.networks.join(', ') : 'none');
  const act = el('td', 'cell-actions');
  if (isAdmin()) {
    act.append(
      actionButton('Clone', 'btn-plain', `Clone ${t.name}`, (b) => cloneTemplate(t.name, b)),
      actionButton('Rename', 'btn-plain', `Rename ${t.name}`, () => {
        renaming = t.name;
        rowError(t.name, '');
      }),
      actionButton('Delete', 'btn-danger-outline tmpl-delete', `Delete ${t.name}`, () => askDelete(t.name)),
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
    rows.replaceChildren(...all.map(templateRow));
  }
  $('tmpl-empty').hidden = all.length > 0;
  const n = all.length;
  const bad = all.filter((t) => invalidText(t.invalid).length).length;
  $('tmpl-count').textContent = `${numberFmt.format(n)} ${n === 1 ? 'template' : 'templates'}${bad ? ` · ${bad} invalid` : ''}`;
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
        d.os_version ? `${dd} ${d.os_version}` : dd),
      el('span', 'distro-title', d.name || ''),
      el('span', 'distro-arch mono', d.os_arch || ''),
    );
    li.title = d.path || '';
    li.append(actionButton('+ Template', 'btn-plain', `Create a template from ${d.name}`,
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
    announce(`Template ${r.data.name} created`);
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    btn.disabled = false;
  }
}

export default {
  name: 'templates',
  page: { id: 'templates', title: 'Templates' },
  events: {
    'template.created template.updated': (d, ev) => {
      templateChanged(d, ev.type === 'template.updated');
      // a hand edit's event does not say what the template misses: ask for the full record
      if (d.by === 'file' && typeof d.name === 'string') refreshTemplate(d.name);
    },
    'template.deleted': (d) => {
      if (templates.delete(d.name)) render();
    },
  },
  init() {
    setPrefill(prefillTemplate);
    onIsosChanged(fillIsoSelect);
    onServerKnown(() => {
      // the distributions once the routes are known (they say whether the server has them)
      if (routesKnown() && !distrosAsked) { distrosAsked = true; loadDistros(); }
    });
    $('tmpl-form').addEventListener('submit', createTemplate);
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
    $('tmpl-rows').replaceChildren();
    $('tmpl-iso').replaceChildren();
    $('distro-list').replaceChildren();
  },
};
