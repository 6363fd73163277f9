/* A VM's devices (admins): its disks and CD-ROMs (attach an image or a volume, change or
 * eject a disc, detach) and its network interfaces (add, remove); hot-plugged while it
 * runs. */

import { $, el, announce, actionButton, showError } from '../core/dom.js';
import { api, offers, vmPath } from '../core/api.js';
import { isAdmin } from '../core/session.js';
import { isoList } from './isos.js';
import { addVmControl, openVmDialog } from './vms.js';

let devVm = null; // the VM whose devices the dialog shows

const showDevError = (text) => showError('dev-error', text);

function openDevices(name) {
  devVm = name;
  $('dev-title').textContent = `Devices of ${name}`;
  showDevError('');
  $('dev-path').value = '';
  $('dev-storages').replaceChildren();
  $('dev-ifaces').replaceChildren();
  // the ISOs of the library, to pick from
  $('dev-isos').replaceChildren(...isoList().map((i) => {
    const o = el('option');
    o.value = i.path;
    o.label = i.name;
    return o;
  }));
  openVmDialog($('dev-dialog'), name, 'devices', $('dev-kind'));
  load();
}

async function load() {
  const vm = devVm;
  if (!vm) return;
  try {
    const [st, ifs, nets] = await Promise.all([api('GET', `${vmPath(vm)}/storages`),
      api('GET', `${vmPath(vm)}/ifaces`), api('GET', '/networks')]);
    if (devVm !== vm) return;
    render(st.data || [], ifs.data || [], nets.data || []);
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
    what.append(el('span', 'snap-name', `${s.dev} · ${s.type === 'cdrom' ? 'CD-ROM' : 'disk'}`),
      el('span', 'snap-meta mono', s.path || 'no disc'));
    li.append(what);
    const at = `${vmPath(vm)}/storages/${encodeURIComponent(s.dev)}`;
    if (s.type === 'cdrom' && s.path) {
      li.append(actionButton('Eject', 'btn-plain dev-eject', `Eject the disc of ${s.dev}`,
        (b) => call(b, 'PUT', at, { path: '' })));
    }
    li.append(actionButton('Detach', 'btn-danger-outline dev-detach', `Detach ${s.dev}`,
      (b) => call(b, 'DELETE', at)));
    return li;
  }));
  $('dev-ifaces').replaceChildren(...ifaces.map((i) => {
    const li = el('li');
    li.dataset.mac = i.mac;
    const what = el('div', 'snap-what');
    what.append(el('span', 'snap-name', i.network || i.type),
      el('span', 'snap-meta mono', `${i.mac} · ${i.model || 'default model'}`));
    li.append(what, actionButton('Remove', 'btn-danger-outline dev-remove', `Remove interface ${i.mac}`,
      (b) => call(b, 'DELETE', `${vmPath(vm)}/ifaces/${encodeURIComponent(i.mac)}`)));
    return li;
  }));
  const sel = $('dev-network');
  const keep = sel.value;
  sel.replaceChildren(...nets.map((n) => {
    const o = el('option', null, `${n.name}${n.state === 'active' ? '' : ' (inactive)'}`);
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
    announce('Done');
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
    showDevError('Give the path of the disk image to attach.');
    $('dev-path').focus();
    return;
  }
  const body = { type };
  if (path) body.path = path;
  if (await call($('dev-attach'), 'POST', `${vmPath(devVm)}/storages`, body)) $('dev-path').value = '';
  $('dev-attach').disabled = false;
}

async function addIface(ev) {
  ev.preventDefault();
  const network = $('dev-network').value;
  if (!network) { showDevError('There is no network to join.'); return; }
  await call($('dev-add-iface'), 'POST', `${vmPath(devVm)}/ifaces`, { network, model: $('dev-model').value });
  $('dev-add-iface').disabled = false;
}

export default {
  name: 'devices',
  init() {
    addVmControl({ key: 'devices', text: 'Devices', cls: 'btn-plain btn-devices', place: 'access',
      order: 120, free: true, label: (name) => `Devices of ${name}`,
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
