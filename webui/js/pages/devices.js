/* A VM's devices (admins): its disks and CD-ROMs (attach an image or a volume, change or
 * eject a disc, detach) and its network interfaces (add, remove); hot-plugged while it
 * runs. The VM is one row's, {host, name}: another host's VM's devices are at its
 * canonical address (/hosts/<host>/vms/<name>/...), it joins that host's networks, and a
 * disk it is given is a volume of that host's pools. */

import { $, el, announce, actionButton, showError } from '../core/dom.js';
import { api, offers } from '../core/api.js';
import { isAdmin } from '../core/session.js';
import { hostCollectionPath, isRemoteHost } from './hosts.js';
import { isoList } from './isos.js';
import { addVmControl, addressOf, hostOf, openVmDialog, vmTitle } from './vms.js';
import { _ } from '../core/i18n.js';

let devVm = null; // the VM whose devices the dialog shows, {host, name}

const showDevError = (text) => showError('dev-error', text);

function openDevices(ref) {
  devVm = ref;
  const host = hostOf(ref);
  const remote = isRemoteHost(host);
  $('dev-title').textContent = _('Devices of {ref}', { ref: vmTitle(ref) });
  showDevError('');
  $('dev-path').value = '';
  $('dev-storages').replaceChildren();
  $('dev-ifaces').replaceChildren();
  $('dev-network').replaceChildren();
  // the ISOs of the library, to pick from: the VM's host's (another host's in its pools)
  offerIsos(remote ? [] : isoList());
  if (remote) loadIsos(ref);
  const hint = $('dev-path-hint');
  hint.textContent = remote ? _('A volume of a storage pool of {host}.', { host }) : '';
  hint.hidden = !remote;
  openVmDialog($('dev-dialog'), ref, 'devices', $('dev-kind'));
  load();
}

function offerIsos(isos) {
  $('dev-isos').replaceChildren(...isos.map((i) => {
    const o = el('option');
    o.value = i.path;
    o.label = i.name;
    return o;
  }));
}

/** Another host's ISOs that a VM of its may be given: those in its storage pools. */
async function loadIsos(ref) {
  try {
    const q = new URLSearchParams({ host: hostOf(ref), found_by: 'pool' });
    const r = await api('GET', `/isos?${q}`);
    if (devVm === ref && Array.isArray(r.data)) offerIsos(r.data);
  } catch (e) {
    // none to offer: a path can still be typed
  }
}

async function load() {
  const vm = devVm;
  if (!vm) return;
  const host = hostOf(vm);
  try {
    const [st, ifs, nets] = await Promise.all([api('GET', `${addressOf(vm)}/storages`),
      api('GET', `${addressOf(vm)}/ifaces`), api('GET', hostCollectionPath(host, 'networks'))]);
    if (devVm !== vm) return;
    // the root list is every host's: the VM joins its own host's networks only
    const own = (nets.data || []).filter((n) => !n.host || n.host === host);
    render(st.data || [], ifs.data || [], own);
  } catch (e) {
    if (devVm === vm) showDevError(e.message);
  }
}

function render(storages, ifaces, nets) {
  const vm = devVm;
  $('dev-storages').replaceChildren(...storages.map((s) => {
    const li = el('li');
    li.dataset.dev = s.dev;
    const what = el('div', 'snap-what');
    what.append(el('span', 'snap-name', s.type === 'cdrom' ? _('{dev} · CD-ROM', { dev: s.dev }) : _('{dev} · disk', { dev: s.dev })),
      el('span', 'snap-meta mono', s.path || _('no disc')));
    li.append(what);
    const at = `${addressOf(vm)}/storages/${encodeURIComponent(s.dev)}`;
    if (s.type === 'cdrom' && s.path) {
      li.append(actionButton(_('Eject'), 'btn-plain dev-eject', _('Eject the disc of {dev}', { dev: s.dev }),
        (b) => call(b, 'PUT', at, { path: '' })));
    }
    li.append(actionButton(_('Detach'), 'btn-danger-outline dev-detach', _('Detach {dev}', { dev: s.dev }),
      (b) => call(b, 'DELETE', at)));
    return li;
  }));
  $('dev-ifaces').replaceChildren(...ifaces.map((i) => {
    const li = el('li');
    li.dataset.mac = i.mac;
    const what = el('div', 'snap-what');
    what.append(el('span', 'snap-name', i.network || i.type),
      el('span', 'snap-meta mono', i.model ? `${i.mac} · ${i.model}` : _('{mac} · default model', { mac: i.mac })));
    li.append(what, actionButton(_('Remove'), 'btn-danger-outline dev-remove', _('Remove interface {mac}', { mac: i.mac }),
      (b) => call(b, 'DELETE', `${addressOf(vm)}/ifaces/${encodeURIComponent(i.mac)}`)));
    return li;
  }));
  const sel = $('dev-network');
  const keep = sel.value;
  sel.replaceChildren(...nets.map((n) => {
    const o = el('option', null, n.state === 'active' ? n.name : _('{name} (inactive)', { name: n.name }));
    o.value = n.name;
    return o;
  }));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function call(button, method, path, body) {
  showDevError('');
  if (button) button.disabled = true;
  try {
    await api(method, path, body);
    announce(_('Done'));
  } catch (e) {
    showDevError(e.message);
    if (button) button.disabled = false;
    return false;
  }
  await load();
  return true;
}

async function attachStorage(ev) {
  ev.preventDefault();
  const type = $('dev-kind').value;
  const path = $('dev-path').value.trim();
  if (type === 'disk' && !path) {
    showDevError(_('Give the path of the disk image to attach.'));
    $('dev-path').focus();
    return;
  }
  const body = { type };
  if (path) body.path = path;
  if (await call($('dev-attach'), 'POST', `${addressOf(devVm)}/storages`, body)) $('dev-path').value = '';
  $('dev-attach').disabled = false;
}

async function addIface(ev) {
  ev.preventDefault();
  const network = $('dev-network').value;
  if (!network) { showDevError(_('There is no network to join.')); return; }
  await call($('dev-add-iface'), 'POST', `${addressOf(devVm)}/ifaces`,
    { network, model: $('dev-model').value });
  $('dev-add-iface').disabled = false;
}

export default {
  name: 'devices',
  init() {
    addVmControl({ key: 'devices', text: _('Devices'), cls: 'btn-plain btn-devices', place: 'access',
      order: 120, free: true, label: (ref) => _('Devices of {ref}', { ref: vmTitle(ref) }),
      shown: () => isAdmin() && offers('/vms/{name}/storages', 'post'), run: openDevices });
    $('dev-storage-form').addEventListener('submit', attachStorage);
    $('dev-iface-form').addEventListener('submit', addIface);
    $('dev-close').addEventListener('click', () => $('dev-dialog').close());
    $('dev-dialog').addEventListener('close', () => { devVm = null; });
  },
  stop() {
    devVm = null;
  },
};
