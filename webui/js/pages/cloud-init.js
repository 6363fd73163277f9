/* The cloud-init section: what a new VM is told on its first boot (a NoCloud seed): its
 * host name, a user (with sudo) and that user's password, SSH public keys, raw user-data.
 * One builder for the three places that ask: the New template form, a template's
 * cloud-init dialog (an edit sends only what changed) and the New VM dialog (overrides of
 * the template's, field by field). A password is write-only: a template only says that it
 * has one. */

import { el } from '../core/dom.js';
import { _, _n } from '../core/i18n.js';

/** "alice · 2 SSH keys · password set": a template's cloud-init in words ('' for none). */
export function cloudInitText(ci) {
  if (!ci || typeof ci !== 'object') return '';
  const parts = [];
  if (ci.hostname) parts.push(_('host {name}', { name: ci.hostname }));
  if (ci.user) parts.push(_('user {name}', { name: ci.user }));
  if (ci.password_set) parts.push(_('password set'));
  const keys = Array.isArray(ci.ssh_authorized_keys) ? ci.ssh_authorized_keys.length : 0;
  if (keys) parts.push(_n('{n} SSH key', '{n} SSH keys', keys));
  if (ci.user_data) parts.push('user-data');
  return parts.join(' · ');
}

const lines = (text) => text.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * A collapsible cloud-init section, ids ``<prefix>-ci-<field>``. ``mode``: 'new' (what is
 * filled is sent), 'edit' (what changed from ``fill()``'s is sent) or 'override' (what is
 * filled is sent over the template's, shown as placeholders by ``showInherited()``).
 */
export class CloudInitSection {
  constructor(prefix, { mode = 'new', open = false, summary = 'cloud-init' } = {}) {
    this.prefix = prefix;
    this.mode = mode;
    this.was = {}; // edit: the template's settings; override: the template's, inherited
    this.node = el('details', 'ci-section');
    this.node.id = `${prefix}-ci`;
    this.node.open = open;
    const sum = el('summary', 'ci-summary', summary);
    this.status = el('span', 'ci-status');
    sum.append(this.status);
    const grid = el('div', 'ci-grid');
    const help = el('p', 'help ci-help', mode === 'override'
      ? _('What the new VMs are told on their first boot, over the template\'s settings: an empty field keeps the template\'s.')
      : _('What each new VM is told on its first boot (images with cloud-init: most cloud images). The host name defaults to the VM\'s name.'));
    help.id = `${prefix}-ci-help`;
    this.inputs = {
      hostname: this.field(grid, 'hostname', _('Guest host name'), 'input', { placeholder: _('the VM\'s name') }),
      user: this.field(grid, 'user', _('User'), 'input', { placeholder: _('none'), help: _('An account with sudo rights.') }),
      password: this.field(grid, 'password', _('User\'s password'), 'password', { wide: true }),
      ssh_authorized_keys: this.field(grid, 'keys', _('SSH public keys'), 'textarea',
        { wide: true, help: _('One per line (ssh-ed25519 AAAA… user@host).') }),
      user_data: this.field(grid, 'userdata', _('User-data'), 'textarea',
        { wide: true, help: _('Optional: a #cloud-config document or a #! script, run besides the fields above.') }),
    };
    this.passwordHelp = grid.querySelector(`#${prefix}-ci-password-help`);
    this.node.append(sum, help, grid);
    this.clear();
  }

  field(grid, key, text, kind, { placeholder = '', help = '', wide = false } = {}) {
    const id = `${this.prefix}-ci-${key}`;
    const box = el('div', `field${wide ? ' field-wide' : ''}`);
    const label = el('label', null, text);
    label.htmlFor = id;
    const input = kind === 'textarea' ? el('textarea', `input textarea${key === 'keys' || key === 'userdata' ? ' mono' : ''}`)
      : el('input', 'input');
    input.id = id;
    if (kind === 'textarea') {
      input.rows = key === 'userdata' ? 4 : 3;
      input.spellcheck = false;
    } else {
      input.type = kind === 'password' ? 'password' : 'text';
      input.autocomplete = kind === 'password' ? 'new-password' : 'off';
      input.spellcheck = false;
    }
    if (placeholder) input.placeholder = placeholder;
    box.append(label, input);
    const note = el('p', 'help', help);
    note.id = `${id}-help`;
    note.hidden = !help && kind !== 'password';
    input.setAttribute('aria-describedby', note.id);
    box.append(note);
    grid.append(box);
    return input;
  }

  /** Empty fields (a new template, a new VM). */
  clear() {
    this.was = {};
    for (const input of Object.values(this.inputs)) input.value = '';
    this.showInherited(null);
  }

  /** Edit: the template's settings in the fields (the password only said to be set). */
  fill(ci) {
    const c = ci && typeof ci === 'object' ? ci : {};
    this.was = c;
    const f = this.inputs;
    f.hostname.value = c.hostname || '';
    f.user.value = c.user || '';
    f.password.value = '';
    f.ssh_authorized_keys.value = (Array.isArray(c.ssh_authorized_keys) ? c.ssh_authorized_keys : []).join('\n');
    f.user_data.value = c.user_data || '';
    this.sayPassword(!!c.password_set, _('Leave empty to keep it; changing the user removes it.'));
    this.status.textContent = cloudInitText(c) ? ` (${cloudInitText(c)})` : '';
  }

  /** Override: the template's settings as the fields' placeholders (null: none). */
  showInherited(ci) {
    const c = ci && typeof ci === 'object' ? ci : {};
    if (this.mode === 'override') this.was = c;
    const f = this.inputs;
    if (this.mode === 'override') {
      f.hostname.placeholder = c.hostname || _('the VM\'s name');
      f.user.placeholder = c.user || _('none');
      const keys = Array.isArray(c.ssh_authorized_keys) ? c.ssh_authorized_keys.length : 0;
      f.ssh_authorized_keys.placeholder = keys ? _n('the template\'s key', 'the template\'s {n} keys', keys) : '';
      f.user_data.placeholder = c.user_data ? _('the template\'s') : '';
      this.sayPassword(!!c.password_set, _('The template\'s is used unless one is typed.'));
      this.status.textContent = cloudInitText(c) ? _(' (the template\'s: {c})', { c: cloudInitText(c) }) : '';
    } else {
      this.sayPassword(false, '');
      this.status.textContent = '';
    }
  }

  sayPassword(set, then) {
    const f = this.inputs.password;
    f.placeholder = set ? _('password set') : '';
    this.passwordHelp.textContent = set ? _('A password is set (kept hashed). {then}', { then })
      : _('Needs a user. Kept only hashed.');
    this.passwordHelp.hidden = false;
  }

  /** What to send: ``{value}`` (null: nothing), or ``{error, input}`` to show. */
  body() {
    const f = this.inputs;
    const now = {
      hostname: f.hostname.value.trim(),
      user: f.user.value.trim(),
      password: f.password.value,
      ssh_authorized_keys: lines(f.ssh_authorized_keys.value),
      user_data: f.user_data.value,
    };
    const was = this.was || {};
    const out = {};
    if (this.mode === 'edit') {
      for (const key of ['hostname', 'user']) {
        if (now[key] === (was[key] || '')) continue;
        if (!now[key]) {
          return { error: key === 'user' ? _('The user of a template\'s cloud-init can be changed, not removed.')
            : _('The host name of a template\'s cloud-init can be changed, not removed.'), input: f[key] };
        }
        out[key] = now[key];
      }
      const keys = Array.isArray(was.ssh_authorized_keys) ? was.ssh_authorized_keys : [];
      if (!sameList(now.ssh_authorized_keys, keys)) out.ssh_authorized_keys = now.ssh_authorized_keys;
      if (now.user_data !== (was.user_data || '')) out.user_data = now.user_data;
    } else {
      for (const key of ['hostname', 'user', 'user_data']) if (now[key]) out[key] = now[key];
      if (now.ssh_authorized_keys.length) out.ssh_authorized_keys = now.ssh_authorized_keys;
    }
    if (now.password) {
      // the server wants the user beside the password: the one typed, else the one kept
      const user = now.user || was.user || '';
      if (!user) return { error: _('A cloud-init password needs a user.'), input: f.user };
      out.password = now.password;
      out.user = user;
    }
    return { value: Object.keys(out).length ? out : null };
  }
}
