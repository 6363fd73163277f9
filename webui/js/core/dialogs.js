/* Dialogs: modal <dialog>s that keep the keyboard inside while open and give it back
 * where it was (or where the opener says) once closed; and the one confirmation dialog. */

import { $ } from './dom.js';
import { _ } from './i18n.js';

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), '
  + 'textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusables(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((e) => !e.hidden && e.offsetParent !== null);
}

/** Tab and Shift+Tab cycle inside the open modal dialog, never out to the page behind it. */
function trapTab(ev) {
  if (ev.key !== 'Tab') return;
  const dialog = [...document.querySelectorAll('dialog[open]')].pop();
  if (!dialog) return;
  const items = focusables(dialog);
  if (!items.length) { ev.preventDefault(); return; }
  const first = items[0];
  const last = items[items.length - 1];
  const active = document.activeElement;
  if (!dialog.contains(active)) {
    ev.preventDefault();
    (ev.shiftKey ? last : first).focus();
  } else if (ev.shiftKey && active === first) {
    ev.preventDefault();
    last.focus();
  } else if (!ev.shiftKey && active === last) {
    ev.preventDefault();
    first.focus();
  }
}

/**
 * Open ``dialog`` modally, focus ``focus`` (an element, or its first control), and on
 * close give the keyboard to ``back()`` (an element, or null: where it was before).
 */
export function openDialog(dialog, { focus = null, back = null } = {}) {
  const before = document.activeElement;
  dialog.addEventListener('close', () => {
    const usable = (e) => e && e.isConnected && !e.disabled && !e.hidden;
    const wanted = back ? back() : null;
    const target = usable(wanted) ? wanted : before;
    if (usable(target) && target !== document.body) target.focus();
  }, { once: true });
  dialog.showModal();
  const first = focus || focusables(dialog)[0];
  if (first) first.focus();
}

export function closeAllDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

// -- the confirmation dialog ------------------------------------------------------------

let confirming = null; // {run}

/**
 * Ask before something that cannot be undone: ``run`` does the work (its error is shown
 * in the dialog, which stays open); ``back`` gives the element to focus once closed.
 */
export function askConfirm({ title, text, extra = null, ok = _('Delete'), run, back }) {
  confirming = { run };
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-extra').replaceChildren(...(extra ? [extra] : []));
  $('confirm-error').hidden = true;
  $('confirm-ok').textContent = ok;
  $('confirm-ok').disabled = false;
  openDialog($('confirm-dialog'), { focus: $('confirm-cancel'), back });
}

async function runConfirm() {
  const c = confirming;
  if (!c) return;
  const ok = $('confirm-ok');
  ok.disabled = true;
  try {
    await c.run();
    $('confirm-dialog').close('done');
  } catch (e) {
    $('confirm-error').textContent = e.message;
    $('confirm-error').hidden = false;
    ok.disabled = false;
  }
}

export default {
  name: 'dialogs',
  init() {
    document.addEventListener('keydown', trapTab);
    $('confirm-dialog').addEventListener('close', () => { confirming = null; });
    $('confirm-ok').addEventListener('click', (e) => {
      e.preventDefault();
      runConfirm();
    });
  },
  stop: closeAllDialogs,
};
