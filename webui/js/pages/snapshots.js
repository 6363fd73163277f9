/* A VM's snapshots (admins): the dialog listing them oldest first, taking one (a
 * vm.snapshot task, shown while it is taken), reverting to one and deleting one. The VM
 * is one row's, {host, name}: another host's VM's snapshots are at its canonical address
 * (/hosts/<host>/vms/<name>/snapshots), and its tasks and events say its host. */

import { $, el, announce, whenText, showNameError, clearOnInput } from '../core/dom.js';
import { api, offers, remove } from '../core/api.js';
import { askConfirm } from '../core/dialogs.js';
import { isAdmin } from '../core/session.js';
import { tasks, TERMINAL, upsertTask, watchTasks } from '../core/tasks.js';
import { addVmControl, addressOf, hostOf, openVmDialog, STATE_TEXT, vmKey, vmTitle } from './vms.js';
import { _ } from '../core/i18n.js';

export const SNAP_KIND = 'vm.snapshot';

let snapVm = null; // the VM whose snapshots the dialog shows, {host, name}
let snaps = null;

/** Whether ``ref`` names the VM the open dialog is about. */
const isShownVm = (ref) => !!snapVm && $('snap-dialog').open && vmKey(ref) === vmKey(snapVm);

/** The VM a snapshot task is about: its params' (vm, host), else the task's host. */
const vmOfTask = (rec) => ({ host: hostOf(rec.params.host ? rec.params : rec), name: rec.params.vm });

function openSnapshots(ref) {
  snapVm = ref;
  snaps = null;
  $('snap-title').textContent = _('Snapshots of {ref}', { ref: vmTitle(ref) });
  $('snap-name').value = '';
  showNameError('snap', '');
  render();
  openVmDialog($('snap-dialog'), ref, 'snapshots', $('snap-name'));
  load();
}

async function load() {
  const vm = snapVm;
  if (!vm) return;
  try {
    const r = await api('GET', `${addressOf(vm)}/snapshots`);
    if (snapVm !== vm) return;
    snaps = Array.isArray(r.data) ? r.data : [];
  } catch (e) {
    if (snapVm !== vm) return;
    snaps = [];
    showNameError('snap', e.message);
  }
  render();
}

/** Snapshots of the open dialog's VM being taken: their tasks. */
function beingTaken() {
  if (!snapVm) return [];
  const shown = vmKey(snapVm);
  return [...tasks.values()].filter((t) => !t.stub && t.rec.kind === SNAP_KIND
    && !TERMINAL.has(t.rec.status) && t.rec.params && vmKey(vmOfTask(t.rec)) === shown)
    .map((t) => t.rec);
}

function render() {
  const items = (snaps || []).map((sn) => {
    const li = el('li', sn.current ? 'is-current' : null);
    li.dataset.name = sn.name;
    const what = el('div', 'snap-what');
    what.append(el('span', 'snap-name', sn.name));
    const meta = [whenText(sn.created), _('the VM {state}', { state: STATE_TEXT[sn.state] ? STATE_TEXT[sn.state].toLowerCase() : sn.state })];
    if (sn.current) meta.push('current');
    what.append(el('span', 'snap-meta', meta.join(' · ')));
    if (sn.description) what.append(el('span', 'snap-meta', sn.description));
    const revert = el('button', 'btn btn-small btn-plain snap-revert', _('Revert'));
    revert.type = 'button';
    revert.setAttribute('aria-label', _('Revert {name} to {name2}', { name: snapVm.name, name2: sn.name }));
    revert.addEventListener('click', () => askRevert(sn));
    const del = el('button', 'btn btn-small btn-danger-outline snap-delete', _('Delete'));
    del.type = 'button';
    del.setAttribute('aria-label', _('Delete snapshot {name}', { name: sn.name }));
    del.addEventListener('click', () => askDelete(sn));
    li.append(what, revert, del);
    return li;
  });
  const listed = new Set((snaps || []).map((sn) => sn.name));
  // a snapshot listed already is taken, even if its task has not said it ended yet
  for (const rec of beingTaken().filter((r) => !listed.has(r.params.name))) {
    const li = el('li', 'is-taking');
    li.dataset.name = rec.params.name;
    li.setAttribute('aria-busy', 'true');
    const what = el('div', 'snap-what');
    what.append(el('span', 'snap-name', rec.params.name), el('span', 'snap-meta', rec.message || _('Being taken…')));
    li.append(what);
    items.push(li);
  }
  $('snap-list').replaceChildren(...items);
  $('snap-empty').hidden = snaps === null || !!items.length;
}

async function take(ev) {
  ev.preventDefault();
  const vm = snapVm;
  if (!vm) return;
  showNameError('snap', '');
  const name = $('snap-name').value.trim();
  if (name && (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name) || name === 'current')) {
    showNameError('snap', _('Use letters, digits, “.”, “-” and “_” (starting with a letter or digit).'));
    $('snap-name').focus();
    return;
  }
  const btn = $('snap-take');
  btn.disabled = true;
  try {
    const r = await api('POST', `${addressOf(vm)}/snapshots`, name ? { name } : {});
    upsertTask(r.data);
    $('snap-name').value = '';
    announce(_('Taking snapshot {name} of {vm}', { name: (r.data.params || {}).name || name, vm: vmTitle(vm) }));
  } catch (e) {
    showNameError('snap', e.message);
    $('snap-name').focus();
  } finally {
    btn.disabled = false;
  }
}

function askRevert(sn) {
  const vm = snapVm;
  askConfirm({
    title: _('Revert to this snapshot?'),
    text: _('{vm} goes back to “{name}” ({created}). What changed on its disks since then is lost.', { vm: vmTitle(vm), name: sn.name, created: whenText(sn.created) }),
    ok: _('Revert'),
    run: async () => {
      await api('POST', `${addressOf(vm)}/snapshots/${encodeURIComponent(sn.name)}/revert`);
      announce(_('{vm} reverted to {name}', { vm: vmTitle(vm), name: sn.name }));
      await load();
    },
    back: () => document.querySelector('#snap-list .snap-revert') || $('snap-name'),
  });
}

function askDelete(sn) {
  const vm = snapVm;
  askConfirm({
    title: _('Delete snapshot?'),
    text: _('The snapshot “{name}” of {vm} is deleted. The VM and the other snapshots stay.', { name: sn.name, vm: vmTitle(vm) }),
    run: async () => {
      await remove(`${addressOf(vm)}/snapshots/${encodeURIComponent(sn.name)}`);
      announce(_('Snapshot {name} deleted', { name: sn.name }));
      await load();
    },
    back: () => document.querySelector('#snap-list .snap-delete') || $('snap-name'),
  });
}

/** A snapshot task or event about the open dialog's VM (``ref``): show it. */
function news(ref) {
  if (!isShownVm(ref)) return;
  render();
  load();
}

export default {
  name: 'snapshots',
  events: {
    'snapshot.created snapshot.reverted snapshot.deleted': (d) => {
      if (typeof d.vm === 'string') news({ host: d.host, name: d.vm });
    },
  },
  init() {
    addVmControl({ key: 'snapshots', text: _('Snapshots'), cls: 'btn-plain btn-snapshots', place: 'access',
      order: 110, free: true, label: (ref) => _('Snapshots of {ref}', { ref: vmTitle(ref) }),
      shown: () => isAdmin() && offers('/vms/{name}/snapshots', 'post'), run: openSnapshots });
    watchTasks([SNAP_KIND], (rec, why) => {
      if (!rec.params || typeof rec.params.vm !== 'string') return;
      const ref = vmOfTask(rec);
      if (why === 'task.progress') {
        if (isShownVm(ref)) render();
        return;
      }
      news(ref);
      if (rec.status === 'failed' && isShownVm(ref)) {
        showNameError('snap', rec.message || _('The snapshot could not be taken.'));
      }
    });
    $('snap-form').addEventListener('submit', take);
    $('snap-close').addEventListener('click', () => $('snap-dialog').close());
    $('snap-dialog').addEventListener('close', () => { snapVm = null; });
    clearOnInput('snap-error', ['snap-name'], () => showNameError('snap', ''));
  },
  stop() {
    snapVm = null;
    snaps = null;
  },
};
