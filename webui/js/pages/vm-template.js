/* "Make template" of the VMs page (admins; a shut-off VM): its disks become the read-only
 * base of a new image template and the VM goes on over leaves of it. The dialog asks the
 * template's name and posts to the VM's address (the canonical one for another host's VM);
 * the vm.template task then shows in the task panel, the template on its page once made. */

import { $, announce, showNameError, clearOnInput } from '../core/dom.js';
import { api, offers } from '../core/api.js';
import { isAdmin } from '../core/session.js';
import { upsertTask, watchTasks } from '../core/tasks.js';
import { vmOf, vmGone, addVmControl, openVmDialog, addressOf, vmTitle, refreshAll } from './vms.js';
import { _, _n } from '../core/i18n.js';

let making = null; // the VM the dialog is about, {host, name}

const showError = (text) => showNameError('vm-mktmpl', text);

function openMakeTemplate(ref) {
  const vm = vmOf(ref);
  if (!vm) return;
  making = ref;
  $('vm-mktmpl-title').textContent = _('Make a template of {ref}', { ref: vmTitle(ref) });
  const disks = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'disk');
  $('vm-mktmpl-text').textContent = _n('Its disk is copied to a read-only base image of the new template; {name} then runs on a leaf over it, as the template\'s new VMs will. It cannot be started until the copy is made.',
    'Its {n} disks are copied to a read-only base image of the new template; {name} then runs on a leaf over it, as the template\'s new VMs will. It cannot be started until the copy is made.',
    disks.length, { n: disks.length, name: ref.name });
  $('vm-mktmpl-name').value = `${ref.name}-template`;
  showError('');
  $('vm-mktmpl-submit').disabled = false;
  openVmDialog($('vm-mktmpl-dialog'), ref, 'template', $('vm-mktmpl-name'));
  $('vm-mktmpl-name').select();
}

async function submitMakeTemplate(ev) {
  ev.preventDefault();
  const ref = making;
  if (!ref || !vmOf(ref)) { $('vm-mktmpl-dialog').close(); return; }
  showError('');
  const name = $('vm-mktmpl-name').value.trim();
  if (!name) {
    showError(_('A template needs a name.'));
    $('vm-mktmpl-name').focus();
    return;
  }
  const btn = $('vm-mktmpl-submit');
  btn.disabled = true;
  try {
    const r = await api('POST', `${addressOf(ref)}/template`, { name });
    upsertTask(r.data); // in the task panel; its events follow
    $('vm-mktmpl-dialog').close('done');
    announce(_('Making the template {name} of {ref}', { name, ref: vmTitle(ref) }));
  } catch (e) {
    showError(e.message);
    if (e.status === 404) vmGone(ref);
    $('vm-mktmpl-name').focus();
  } finally {
    btn.disabled = false;
  }
}

export default {
  name: 'vm-template',
  init() {
    addVmControl({ key: 'template', text: _('Make template'), cls: 'btn-plain', place: 'actions', order: 35,
      label: (ref) => _('Make a template of {ref}', { ref: vmTitle(ref) }),
      shown: (vm) => isAdmin() && vm.state === 'shutoff' && offers('/vms/{name}/template', 'post'),
      run: openMakeTemplate });
    $('vm-mktmpl-form').addEventListener('submit', submitMakeTemplate);
    $('vm-mktmpl-cancel').addEventListener('click', () => $('vm-mktmpl-dialog').close());
    $('vm-mktmpl-dialog').addEventListener('close', () => { making = null; });
    clearOnInput('vm-mktmpl-error', ['vm-mktmpl-name'], () => showError(''));
    // while its disks are copied the VM cannot start: its row says so (vms.js cloneOf)
    watchTasks(['vm.template'], () => refreshAll());
  },
  stop() {
    making = null;
  },
};
