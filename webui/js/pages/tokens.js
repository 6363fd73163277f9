/* API tokens (admins): issued for a user, for a while or until revoked; the secret is
 * shown once, in the answer that made it, and forgotten when dismissed. The list never
 * holds a secret. */

import { $, el, announce, collator, whenText, actionButton, clearOnInput } from '../core/dom.js';
import { api, remove } from '../core/api.js';
import { askConfirm } from '../core/dialogs.js';
import { Listing, showListingState } from '../core/listing.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { _, _n } from '../core/i18n.js';

const tokens = new Listing({
  path: '/tokens',
  render: () => renderTokens(),
  active: () => isShown('tokens'),
});

function loadTokens() {
  if (isAdmin()) tokens.load();
}

function tokenRow(t) {
  const tr = el('tr');
  tr.dataset.id = t.id;
  const cells = [el('td', 'cell-name', t.name), el('td', null, t.username),
    el('td', null, t.created_by)];
  for (const c of cells) c.title = c.textContent; // the whole text, where it is cut short
  tr.append(...cells, el('td', null, whenText(t.created)));
  const exp = t.expires ? Date.parse(t.expires) : null;
  const expires = el('td', exp !== null && exp <= Date.now() ? 'token-expired' : null,
    t.expires ? whenText(t.expires) : _('Never'));
  if (t.expires) expires.title = t.expires;
  tr.append(expires);
  const actions = el('td', 'actions');
  actions.append(actionButton(_('Revoke'), 'btn-danger-outline token-revoke',
    _('Revoke token {name} of {username}', { name: t.name, username: t.username }), () => askRevoke(t)));
  tr.append(actions);
  return tr;
}

function renderTokens() {
  const list = tokens.items || [];
  const sorted = [...list].sort((a, b) => collator.compare(a.created || '', b.created || '')
    || collator.compare(a.id, b.id));
  $('token-rows').replaceChildren(...sorted.map(tokenRow));
  showListingState(tokens, { prefix: 'token', noun: (n) => _n('{n} token', '{n} tokens', n), what: _('tokens'),
    emptyText: _('No API tokens. Issue one above for a script.') });
}

function showTokenError(text) {
  const e = $('token-error');
  e.textContent = text;
  e.hidden = !text;
}

async function issueToken(ev) {
  ev.preventDefault();
  showTokenError('');
  const nameInput = $('token-name');
  const userInput = $('token-user');
  for (const input of [nameInput, userInput]) input.setAttribute('aria-invalid', 'false');
  const name = nameInput.value.trim();
  if (!name) {
    showTokenError(_('Give the token a name, to know later what uses it.'));
    nameInput.setAttribute('aria-invalid', 'true');
    nameInput.focus();
    return;
  }
  const body = { name };
  const username = userInput.value.trim();
  if (username) body.username = username;
  const expiry = $('token-expiry').value;
  if (expiry) body.expires_in = Number(expiry);
  const btn = $('token-create');
  btn.disabled = true;
  try {
    const r = await api('POST', '/tokens', body);
    const t = r.data || {};
    showSecret(t);
    nameInput.value = '';
    userInput.value = '';
    const { token, ...record } = t; // the list never holds the secret
    tokens.patch((items) => (items.some((x) => x.id === record.id) ? items : [...items, record]));
    loadTokens();
  } catch (e) {
    showTokenError(e.message);
    const code = e.body && e.body.errcode;
    const bad = code === 'KCHAUTH0012E' ? userInput : nameInput;
    bad.setAttribute('aria-invalid', 'true');
    bad.focus();
  } finally {
    btn.disabled = false;
  }
}

/** The secret, this once: it is in this answer only, and is forgotten when dismissed. */
function showSecret(t) {
  $('token-secret-text').textContent = t.expires
    ? _('Token “{name}” for {username}, valid until {expires}:', { name: t.name, username: t.username, expires: whenText(t.expires) })
    : _('Token “{name}” for {username}, valid until revoked:', { name: t.name, username: t.username });
  $('token-value').value = t.token || '';
  $('token-copied').textContent = '';
  $('token-secret').hidden = false;
  $('token-value').focus();
  $('token-value').select();
  announce(_('Token issued: copy it now, it will not be shown again'));
}

function hideSecret() {
  $('token-value').value = '';
  $('token-copied').textContent = '';
  $('token-secret').hidden = true;
}

async function copySecret() {
  const input = $('token-value');
  const note = $('token-copied');
  try {
    if (!navigator.clipboard) throw new Error('no clipboard');
    await navigator.clipboard.writeText(input.value);
    note.textContent = _('Copied to the clipboard.');
  } catch (e) {
    // no clipboard access (an insecure origin, a refusal): copying the selection still works
    input.focus();
    input.select();
    note.textContent = document.execCommand('copy') ? _('Copied to the clipboard.')
      : _('The browser does not let the page copy: the token is selected, copy it with Ctrl+C.');
  }
}

function askRevoke(t) {
  askConfirm({
    title: _('Revoke token?'),
    text: _('The token “{name}” of {username} stops working at once. Scripts using it will be refused. This cannot be undone.', { name: t.name, username: t.username }),
    ok: _('Revoke'),
    run: async () => {
      await remove(`/tokens/${encodeURIComponent(t.id)}`); // gone already: revoked elsewhere, expired
      tokens.patch((items) => items.filter((x) => x.id !== t.id));
      announce(_('Token {name} revoked', { name: t.name }));
    },
    back: () => document.querySelector('#token-rows .token-revoke') || $('token-name'),
  });
}

export default {
  name: 'tokens',
  page: {
    id: 'tokens',
    title: _('API tokens'),
    admin: true,
    show() {
      if (signedIn()) loadTokens();
    },
  },
  init() {
    $('token-form').addEventListener('submit', issueToken);
    clearOnInput('token-error', ['token-name', 'token-user'], () => showTokenError(''));
    $('token-copy').addEventListener('click', copySecret);
    $('token-done').addEventListener('click', () => {
      hideSecret();
      $('token-name').focus();
    });
  },
  async resync() {
    await tokens.relist(); // tokens have no events; shown only to admins
  },
  stop() {
    hideSecret();
    showTokenError('');
    tokens.forget();
    $('token-rows').replaceChildren();
    $('token-count').textContent = _('Loading…');
    $('token-empty').hidden = true;
  },
};
