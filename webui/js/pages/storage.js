/* Storage: the host's storage pools (made, started, stopped, forgotten) and the volumes
 * of the pool chosen (made, deleted). A pool or a volume changed elsewhere, or a VM made
 * or deleted (what uses a pool), lists the pools again while the page is shown.
 *
 * With several hosts (see hosts.js) every host's pools are listed, each row saying its
 * host ("on h2") and keyed by host and name (the same name, "default-pool", is on each
 * host), with a filter to show one host's; whatever is done to another host's pool or its
 * volumes goes to its canonical address (/hosts/<host>/storagepools/<name>/...), and the
 * new-pool form offers the host to make it on.
 *
 * Images onto the host (admins, folder pools): "Download from URL" queues a volume.download
 * task (its progress in the task panel); "Upload" sends the file picked in slices with PUT
 * .../content and Content-Range, a bar showing bytes and %, and after a failed request asks
 * HEAD .../content where to go on from; Wipe and Clone on each volume queue tasks. */

import { $, el, announce, humanSize, numberFmt, usedByText, actionButton, pathText } from '../core/dom.js';
import { api, remove, noteAnswer } from '../core/api.js';
import { upsertTask } from '../core/tasks.js';
import { askConfirm } from '../core/dialogs.js';
import { Listing, showListingState } from '../core/listing.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { fillHostSelect, hostCollectionPath, hostObjectPath, localHost, manyHosts,
  onHosts, replaceHostRowsKeepingFocus } from './hosts.js';
import { _, _n } from '../core/i18n.js';

const poolErrors = new Map(); // poolKey -> why its last action failed
let chosen = null; // { host, name }: the pool whose volumes are shown
let hostFilter = ''; // '' for every host's pools, else one host's name
let newHost = ''; // the host the new-pool form makes its pool on ('' until hosts are known)
let uploading = null; // { name, pool, path, total, sent, abort, cancelled }: the upload under way
let cloneSource = null; // the volume the clone form copies
const SLICE = 16 * 1024 * 1024; // bytes of each PUT of an upload (the server takes up to 64 MiB)
const RETRIES = 6; // failed requests in a row before an upload gives up

/** A pool's key: its host and its name (one name may be on several hosts). */
const poolKey = (p) => `${p.host || ''}\n${p.name}`;
const samePool = (a, b) => !!a && !!b && a.name === b.name && (a.host || '') === (b.host || '');
/** The address of a pool: the canonical one for another host's. */
const poolPath = (p) => hostObjectPath(p.host, 'storagepools', p.name);
/** " on h2" with several hosts, to tell the pools of one name apart; else nothing. */
const onHost = (p) => (manyHosts() && p.host ? _(' on {host}', { host: p.host }) : '');

const pools = new Listing({
  path: '/storagepools',
  render: () => {
    renderPools();
    if (chosen) volumes.load();
  },
  active: () => isShown('storage'),
});

const volumes = new Listing({
  path: () => `${poolPath(chosen)}/storagevolumes`,
  render: () => renderVolumes(),
});

// -- the pools -------------------------------------------------------------------------------

function poolRow(p) {
  const tr = el('tr', `pool-row${samePool(chosen, p) ? ' is-chosen' : ''}`);
  tr.dataset.name = p.name;
  const name = el('td', 'cell-name');
  name.append(el('span', 'pool-name', p.name));
  const on = onHost(p);
  if (on) {
    tr.dataset.host = p.host;
    name.append(el('span', 'obj-host', _('on {host}', { host: p.host })));
  }
  name.append(pathText('pool-path mono', p.path || (p.source && p.source.host) || ''));
  const st = el('td');
  st.append(el('span', `state state-${p.state === 'active' ? 'running' : 'shutoff'}`,
    p.state === 'active' ? _('Active') : p.state === 'inactive' ? _('Inactive') : p.state));
  if (p.autostart) st.append(el('span', 'help', ` ${_('autostart')}`));
  const space = el('td');
  if (p.state === 'active' && p.capacity) {
    const box = el('div', 'space');
    const bar = el('progress', 'bar');
    bar.max = p.capacity;
    bar.value = p.allocated;
    bar.setAttribute('aria-label', _('{name}{on}: {allocated} used of {capacity}', { name: p.name, on, allocated: humanSize(p.allocated), capacity: humanSize(p.capacity) }));
    box.append(bar, el('span', 'space-text', _('{available} free of {capacity}', { available: humanSize(p.available), capacity: humanSize(p.capacity) })));
    space.append(box);
  } else {
    space.textContent = '—';
  }
  const vols = el('td', 'num', p.state === 'active' ? String(p.nr_volumes) : '—');
  const used = el('td', null, usedByText(p.used_by));
  const act = el('td', 'cell-actions');
  if (p.state === 'active') {
    act.append(actionButton(_('Volumes'), 'btn-plain pool-volumes', _('Volumes of {name}{on}', { name: p.name, on }),
      () => choosePool(p)));
  }
  if (isAdmin()) {
    if (p.state === 'active') {
      act.append(actionButton(_('Deactivate'), 'btn-plain', _('Deactivate {name}{on}', { name: p.name, on }),
        (b) => poolAction(p, 'deactivate', b)));
    } else {
      act.append(actionButton(_('Activate'), 'btn-plain', _('Activate {name}{on}', { name: p.name, on }),
        (b) => poolAction(p, 'activate', b)));
      act.append(actionButton(_('Delete'), 'btn-danger-outline pool-delete', _('Delete {name}{on}', { name: p.name, on }),
        () => askDeletePool(p)));
    }
  }
  const err = poolErrors.get(poolKey(p)) || p.error; // its last action's, or libvirt's
  if (err) name.append(el('p', 'row-error', err));
  tr.append(name, st, space, vols, used, act);
  return tr;
}

/** The pools shown: with several hosts, those of the host the filter names (if any). */
function shownPools() {
  const list = pools.items || [];
  return manyHosts() && hostFilter ? list.filter((p) => p.host === hostFilter) : list;
}

function renderPools() {
  const all = pools.items || [];
  const list = shownPools();
  replaceHostRowsKeepingFocus($('pool-rows'), list.map(poolRow));
  const activeN = list.filter((p) => p.state === 'active').length;
  showListingState(pools, { prefix: 'pool', noun: (n) => _n('{n} pool', '{n} pools', n), what: _('pools'),
    emptyText: _('No storage pools.'), extra: _(' · {activeN} active', { activeN }) });
  if (list.length !== all.length) { // filtered: "1 of 4 pools · 1 active", or none of them
    $('pool-count').textContent = _n('{shown} of {n} pool · {active} active', '{shown} of {n} pools · {active} active',
      all.length, { shown: numberFmt.format(list.length), active: activeN });
    if (!list.length && !pools.error) {
      $('pool-empty-text').textContent = _('No storage pools on {hostFilter}.', { hostFilter });
      $('pool-empty').hidden = false;
    }
  }
  if (chosen && !list.some((p) => samePool(p, chosen) && p.state === 'active')) {
    unchoose(); // gone, stopped or filtered out: no volumes to show
  } else if (chosen) {
    $('volumes-title').textContent = _('Volumes of {name}{chosen}', { name: chosen.name, chosen: onHost(chosen) }); // hosts came or went
  }
}

async function poolAction(p, action, button) {
  button.disabled = true;
  poolErrors.delete(poolKey(p));
  try {
    await api('POST', `${poolPath(p)}/${action}`);
    announce(action === 'activate' ? _('{name}{on} activated', { name: p.name, on: onHost(p) })
      : _('{name}{on} deactivated', { name: p.name, on: onHost(p) }));
  } catch (e) {
    poolErrors.set(poolKey(p), e.message);
  }
  await pools.load();
}

/** The host filter and the new-pool form's host chooser: shown with several hosts. */
function fillHosts() {
  const many = manyHosts();
  $('pool-filter-host-field').hidden = !many;
  $('pool-new-host-field').hidden = !many;
  if (!many) return;
  hostFilter = fillHostSelect($('pool-filter-host'), hostFilter, _('All hosts'));
  newHost = fillHostSelect($('pool-new-host'), newHost || localHost());
}

function showPoolError(text, field) {
  const e = $('pool-error');
  e.textContent = text;
  e.hidden = !text;
  for (const id of ['pool-name', 'pool-path']) {
    $(id).setAttribute('aria-invalid', text && id === field ? 'true' : 'false');
  }
}

async function makePool(ev) {
  ev.preventDefault();
  showPoolError('');
  const name = $('pool-name').value.trim();
  const path = $('pool-path').value.trim();
  if (!name) { showPoolError(_('Give the pool a name.'), 'pool-name'); $('pool-name').focus(); return; }
  if (!path.startsWith('/')) {
    showPoolError(_('The folder must be an absolute path, like /srv/vm-disks.'), 'pool-path');
    $('pool-path').focus();
    return;
  }
  // with several hosts, on the host chosen (the root collection is the local host's)
  const host = manyHosts() ? $('pool-new-host').value : '';
  const btn = $('pool-create');
  btn.disabled = true;
  try {
    await api('POST', hostCollectionPath(host, 'storagepools'), { name, type: 'dir', path });
    $('pool-name').value = '';
    $('pool-path').value = '';
    announce(host ? _('Storage pool {name} made on {host}', { name, host }) : _('Storage pool {name} made', { name }));
    await pools.load();
  } catch (e) {
    const code = e.body && e.body.errcode;
    showPoolError(e.message, code === 'KCHPOOL0001E' ? 'pool-name' : 'pool-path');
  } finally {
    btn.disabled = false;
  }
}

function askDeletePool(p) {
  askConfirm({
    title: _('Forget storage pool?'),
    text: p.path ? _('kimchi and libvirt forget the pool “{name}”{on}. Its files stay in {path}.', { name: p.name, on: onHost(p), path: p.path })
      : _('kimchi and libvirt forget the pool “{name}”{on}. Its files stay in place.', { name: p.name, on: onHost(p) }),
    ok: _('Forget'),
    run: async () => {
      await remove(poolPath(p));
      announce(_('Storage pool {name}{p} forgotten', { name: p.name, p: onHost(p) }));
      await pools.load();
    },
    back: () => document.querySelector('#pool-rows button') || $('pool-name'),
  });
}

// -- the volumes of the chosen pool ------------------------------------------------------------

function choosePool(p) {
  chosen = { host: p.host, name: p.name };
  volumes.forget(); // an answer for the pool shown before is not this one's
  $('volumes').hidden = false;
  $('volumes-title').textContent = _('Volumes of {name}{p}', { name: p.name, p: onHost(p) });
  showVolumeError('');
  renderPools();
  renderVolumes();
  volumes.load();
  $('volumes').scrollIntoView({ block: 'nearest' });
}

function unchoose() {
  chosen = null;
  volumes.forget();
  $('volumes').hidden = true;
}

function volumeRow(v) {
  const tr = el('tr');
  tr.dataset.name = v.name;
  const name = el('td', 'cell-name', v.name);
  name.title = v.path;
  const act = el('td', 'cell-actions');
  if (isAdmin()) {
    const wipe = actionButton(_('Wipe'), 'btn-plain volume-wipe', _('Wipe {name}', { name: v.name }),
      () => askWipeVolume(v));
    const clone = actionButton(_('Clone'), 'btn-plain volume-clone', _('Clone {name}', { name: v.name }),
      () => openClone(v));
    const del = actionButton(_('Delete'), 'btn-danger-outline volume-delete', _('Delete {name}', { name: v.name }),
      () => askDeleteVolume(v));
    if (v.used_by && v.used_by.length) {
      del.disabled = true;
      del.title = _('A disk of {vms}', { vms: v.used_by.join(', ') });
      wipe.title = _('A disk of {vms}: refused while it runs', { vms: v.used_by.join(', ') });
    }
    act.append(wipe, clone, del);
  }
  tr.append(name, el('td', null, v.format || '—'), el('td', 'num', humanSize(v.capacity)),
    el('td', 'num', humanSize(v.allocation)),
    el('td', null, v.used_by && v.used_by.length ? v.used_by.join(', ') : '—'), act);
  return tr;
}

function renderVolumes() {
  const list = volumes.items || [];
  $('volume-rows').replaceChildren(...list.map(volumeRow));
  showListingState(volumes, { prefix: 'volume', noun: (n) => _n('{n} volume', '{n} volumes', n), what: _('volumes'),
    emptyText: _('No volumes in this pool.') });
}

function showVolumeError(text) {
  const e = $('volume-error');
  e.textContent = text;
  e.hidden = !text;
  $('volume-name').setAttribute('aria-invalid', text ? 'true' : 'false');
}

async function makeVolume(ev) {
  ev.preventDefault();
  const pool = chosen;
  if (!pool) return;
  showVolumeError('');
  const name = $('volume-name').value.trim();
  const gib = Number($('volume-size').value);
  if (!name) { showVolumeError(_('Give the volume a name.')); $('volume-name').focus(); return; }
  if (!Number.isInteger(gib) || gib < 1) {
    showVolumeError(_('The size is a whole number of GiB, 1 or more.'));
    $('volume-size').focus();
    return;
  }
  const btn = $('volume-create');
  btn.disabled = true;
  try {
    await api('POST', `${poolPath(pool)}/storagevolumes`,
      { name, capacity: gib * 1024 ** 3, format: $('volume-format').value });
    $('volume-name').value = '';
    announce(_('Volume {name} made in {name2}{pool}', { name, name2: pool.name, pool: onHost(pool) }));
    await pools.load();
  } catch (e) {
    showVolumeError(e.message);
    $('volume-name').focus();
  } finally {
    btn.disabled = false;
  }
}

function askDeleteVolume(v) {
  const pool = chosen;
  askConfirm({
    title: _('Delete volume?'),
    text: _('The volume “{name}” ({capacity}) in {name2}{pool} is deleted with its data. This cannot be undone.', { name: v.name, capacity: humanSize(v.capacity), name2: pool.name, pool: onHost(pool) }),
    run: async () => {
      await remove(`${poolPath(pool)}/storagevolumes/${encodeURIComponent(v.name)}`);
      announce(_('Volume {name} deleted', { name: v.name }));
      await pools.load();
    },
    back: () => document.querySelector('#volume-rows button:not([disabled])') || $('volume-name'),
  });
}

// -- images onto the host: download, upload, wipe, clone --------------------------------------

function showFormError(id, text) {
  const e = $(id);
  e.textContent = text;
  e.hidden = !text;
}

const volumesPath = (pool) => `${poolPath(pool)}/storagevolumes`;

async function startDownload(ev) {
  ev.preventDefault();
  const pool = chosen;
  if (!pool) return;
  showFormError('download-error', '');
  const url = $('download-url').value.trim();
  const name = $('download-name').value.trim() || decodeURIComponent(url.split('?')[0].split('/').pop() || '');
  const checksum = $('download-checksum').value.trim();
  if (!/^https?:\/\/\S+$/i.test(url)) {
    showFormError('download-error', _('The URL must begin with http:// or https://.'));
    $('download-url').focus();
    return;
  }
  if (!name) { showFormError('download-error', _('Give the volume a name.')); $('download-name').focus(); return; }
  if (checksum && !/^sha256:[0-9a-f]{64}$/i.test(checksum)) {
    showFormError('download-error', _('The checksum is sha256: followed by 64 hexadecimal digits.'));
    $('download-checksum').focus();
    return;
  }
  const btn = $('download-start');
  btn.disabled = true;
  try {
    const r = await api('POST', volumesPath(pool), { name, url, ...(checksum ? { checksum } : {}) });
    upsertTask(r.data); // its progress shows in the task panel
    $('download-name').value = '';
    $('download-url').value = '';
    $('download-checksum').value = '';
    announce(_('Downloading {name} into {name2}{pool}', { name, name2: pool.name, pool: onHost(pool) }));
  } catch (e) {
    showFormError('download-error', e.message);
  } finally {
    btn.disabled = false;
  }
}

/** The upload's bar and text: bytes and %. */
function showUpload(u) {
  const pct = u.total ? Math.floor((100 * u.sent) / u.total) : 100;
  $('upload-progress').hidden = false;
  $('upload-bar').max = 100;
  $('upload-bar').value = pct;
  $('upload-bar').setAttribute('aria-valuetext', `${pct} %`);
  $('upload-text').textContent = _('{name}: {sent} of {total} ({pct} %)', { name: u.name, sent: humanSize(u.sent), total: humanSize(u.total), pct });
}

function uploadHeaders(extra) {
  return { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json', ...extra };
}

/** Where the server's copy ends (HEAD .../content), to go on from there. */
async function uploadOffset(u) {
  const resp = await fetch(u.path, { method: 'HEAD', credentials: 'same-origin',
    headers: uploadHeaders({}), signal: u.abort.signal });
  noteAnswer(resp);
  if (!resp.ok) throw Object.assign(new Error(`${resp.status} ${resp.statusText}`), { status: resp.status });
  return Number(resp.headers.get('Upload-Offset'));
}

async function answerError(resp) {
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  const err = new Error(data && data.reason ? data.reason : `${resp.status} ${resp.statusText}`);
  err.status = resp.status;
  err.body = data;
  return err;
}

/** Send ``file`` to ``u.path`` slice by slice, going on from where the server is after a
 * failed request (HEAD), until the last byte is there. */
async function sendSlices(u, file) {
  let failures = 0;
  while (u.sent < u.total) {
    const end = Math.min(u.sent + SLICE, u.total);
    try {
      const resp = await fetch(u.path, {
        method: 'PUT', credentials: 'same-origin', signal: u.abort.signal,
        headers: uploadHeaders({ 'Content-Type': 'application/octet-stream',
          'Content-Range': `bytes ${u.sent}-${end - 1}/${u.total}` }),
        body: file.slice(u.sent, end),
      });
      noteAnswer(resp);
      if (resp.status === 409) { // not where the server is: go on from its offset
        u.sent = Number(resp.headers.get('Upload-Offset')) || 0;
      } else if (!resp.ok) {
        throw await answerError(resp);
      } else {
        u.sent = end;
        failures = 0;
      }
      showUpload(u);
    } catch (e) {
      if (u.cancelled) return;
      if (e.status && e.status < 500 && e.status !== 408) throw e; // refused: trying again won't help
      failures += 1;
      if (failures > RETRIES) throw new Error(_('The upload failed {n} times in a row: {reason}', { n: RETRIES, reason: e.message }));
      $('upload-text').textContent = _('{name}: connection lost, going on in {failures} s…', { name: u.name, failures });
      await new Promise((ok) => { setTimeout(ok, 1000 * failures); });
      if (u.cancelled) return;
      try { u.sent = await uploadOffset(u); showUpload(u); } catch (e2) { /* next turn tries again */ }
    }
  }
}

async function startUpload(ev) {
  ev.preventDefault();
  const pool = chosen;
  if (!pool || uploading) return;
  showFormError('upload-error', '');
  const file = $('upload-file').files[0];
  if (!file) { showFormError('upload-error', _('Pick a file to upload.')); $('upload-file').focus(); return; }
  const name = $('upload-name').value.trim() || file.name;
  const format = $('upload-format').value;
  const btn = $('upload-start');
  btn.disabled = true;
  const u = { name, pool, path: '', total: file.size, sent: 0, abort: new AbortController(), cancelled: false };
  try {
    try {
      const r = await api('POST', volumesPath(pool), { name, capacity: file.size, format, upload: true });
      u.path = r.headers.get('Location');
      u.sent = r.data.received || 0; // a .part kept from before goes on
    } catch (e) {
      // the same upload begun before (a page reloaded): go on from where the server is
      if (!e.body || e.body.errcode !== 'KCHVOL0018E') throw e;
      const path = `${volumesPath(pool)}/${encodeURIComponent(name)}/content`;
      const was = (await api('GET', path)).data;
      if (!was || was.capacity !== file.size || was.format !== format) throw e;
      u.path = path;
      u.sent = was.received;
    }
    uploading = u;
    showUpload(u);
    await sendSlices(u, file);
    if (u.cancelled) return;
    showUpload(u);
    announce(_('Volume {name} uploaded to {name2}{pool}', { name, name2: pool.name, pool: onHost(pool) }));
    $('upload-file').value = '';
    $('upload-name').value = '';
    await pools.load();
  } catch (e) {
    if (!u.cancelled) showFormError('upload-error', e.message);
  } finally {
    if (uploading === u) uploading = null;
    $('upload-cancel').disabled = false;
    btn.disabled = false;
  }
}

async function cancelUpload() {
  const u = uploading;
  if (!u) return;
  u.cancelled = true;
  u.abort.abort();
  $('upload-cancel').disabled = true;
  try {
    await remove(u.path);
    $('upload-text').textContent = _('{name}: upload cancelled', { name: u.name });
    announce(_('Upload of {name} cancelled', { name: u.name }));
  } catch (e) {
    showFormError('upload-error', e.message);
  }
}

function pickedFile() {
  const file = $('upload-file').files[0];
  if (!file) return;
  if (!$('upload-name').value.trim()) $('upload-name').value = file.name;
  const ext = file.name.toLowerCase().split('.').pop();
  if (['qcow2', 'iso', 'raw'].includes(ext)) $('upload-format').value = ext;
}

function askWipeVolume(v) {
  const pool = chosen;
  askConfirm({
    title: _('Wipe volume?'),
    text: _('Every byte of “{name}” ({capacity}) in {name2}{pool} is overwritten with zeros. This cannot be undone.', { name: v.name, capacity: humanSize(v.capacity), name2: pool.name, pool: onHost(pool) }),
    ok: _('Wipe'),
    run: async () => {
      const r = await api('POST', `${volumesPath(pool)}/${encodeURIComponent(v.name)}/wipe`);
      upsertTask(r.data);
      announce(_('Wiping {name}', { name: v.name }));
    },
    back: () => document.querySelector('#volume-rows button:not([disabled])') || $('volume-name'),
  });
}

function openClone(v) {
  cloneSource = v;
  $('clone-form').hidden = false;
  $('clone-label').textContent = _('Name of the clone of {name}', { name: v.name });
  const dot = v.name.lastIndexOf('.');
  $('clone-name').value = dot > 0 ? `${v.name.slice(0, dot)}-clone${v.name.slice(dot)}` : `${v.name}-clone`;
  showFormError('clone-error', '');
  $('clone-name').focus();
}

function closeClone() {
  cloneSource = null;
  $('clone-form').hidden = true;
}

async function startClone(ev) {
  ev.preventDefault();
  const pool = chosen;
  const v = cloneSource;
  if (!pool || !v) return;
  const name = $('clone-name').value.trim();
  if (!name) { showFormError('clone-error', _('Give the clone a name.')); return; }
  const btn = $('clone-start');
  btn.disabled = true;
  try {
    const r = await api('POST', `${volumesPath(pool)}/${encodeURIComponent(v.name)}/clone`, { name });
    upsertTask(r.data);
    announce(_('Cloning {name} to {name2}', { name: v.name, name2: name }));
    closeClone();
  } catch (e) {
    showFormError('clone-error', e.message);
  } finally {
    btn.disabled = false;
  }
}

const poolsSoon = () => pools.soon();

/** A host came, went or changed state: its pools come or go with it (no storagepool.*
 * event says so). */
const hostsChanged = () => pools.soon(300);

export default {
  name: 'storage',
  page: {
    id: 'storage',
    title: _('Storage'),
    show() {
      if (signedIn()) pools.load();
    },
  },
  events: {
    // a pool or a volume changed elsewhere; a VM made or deleted changes what uses a pool;
    // a download or a clone that ended refreshed its pool (storagevolume.created)
    'storagepool.created storagepool.updated storagepool.deleted': poolsSoon,
    'storagevolume.created storagevolume.updated storagevolume.deleted': poolsSoon,
    'vm.created vm.deleted': poolsSoon,
    'host.created host.deleted host.state': hostsChanged,
  },
  init() {
    $('pool-form').addEventListener('submit', makePool);
    $('volume-form').addEventListener('submit', makeVolume);
    $('download-form').addEventListener('submit', startDownload);
    $('upload-form').addEventListener('submit', startUpload);
    $('upload-file').addEventListener('change', pickedFile);
    $('upload-cancel').addEventListener('click', cancelUpload);
    $('clone-form').addEventListener('submit', startClone);
    $('clone-close').addEventListener('click', closeClone);
    onHosts(() => {
      fillHosts();
      if (pools.items) renderPools(); // the rows' "on <host>" labels
    });
    $('pool-filter-host').addEventListener('change', (e) => {
      hostFilter = e.target.value;
      renderPools();
    });
    $('pool-new-host').addEventListener('change', (e) => {
      newHost = e.target.value;
    });
  },
  async resync() {
    await pools.relist();
  },
  stop() {
    pools.forget();
    poolErrors.clear();
    unchoose();
    hostFilter = '';
    newHost = '';
    $('pool-filter-host-field').hidden = true;
    $('pool-new-host-field').hidden = true;
    $('pool-filter-host').replaceChildren();
    $('pool-new-host').replaceChildren();
    $('pool-rows').replaceChildren();
    $('volume-rows').replaceChildren();
    $('pool-count').textContent = _('Loading…');
    $('pool-empty').hidden = true;
    $('volume-empty').hidden = true;
    showPoolError('');
    showVolumeError('');
    if (uploading) { uploading.cancelled = true; uploading.abort.abort(); uploading = null; }
    closeClone();
    $('upload-progress').hidden = true;
    for (const id of ['download-error', 'upload-error', 'clone-error']) showFormError(id, '');
  },
};
