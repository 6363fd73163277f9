/* DOM helpers and the formats every page shares. Server data reaches the page only
 * through textContent (el's text, never innerHTML). */

import { _, _n } from './i18n.js';

export const $ = (id) => document.getElementById(id);

export const numberFmt = new Intl.NumberFormat();
export const timeFmt = new Intl.DateTimeFormat(undefined,
  { hour: '2-digit', minute: '2-digit', second: '2-digit' });
export const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** A small button whose accessible name says what it acts on ("Delete vm1"). */
export function actionButton(text, cls, label, fn) {
  const b = el('button', `btn btn-small ${cls}`, text);
  b.type = 'button';
  b.setAttribute('aria-label', label);
  b.addEventListener('click', () => fn(b));
  return b;
}

/** A path shown left to right whatever the page's direction, its whole text on hover. */
export function pathText(cls, text) {
  const span = el('span', cls);
  const bdi = el('bdi', null, text);
  bdi.dir = 'ltr';
  span.append(bdi);
  span.title = text;
  return span;
}

/** The distribution chip: "fedora 39", coloured by a known distribution's name. */
export function distroChip(distro, version) {
  const d = distro || 'unknown';
  const chip = el('span', `distro distro-${/^[a-z0-9-]+$/.test(d) ? d : 'other'}`);
  if (d === 'unknown') {
    chip.textContent = _('unknown');
    return chip;
  }
  chip.append(el('span', 'distro-name', d));
  if (version && version !== 'unknown') {
    chip.append(document.createTextNode(' '), el('span', 'distro-ver', version));
  }
  return chip;
}

let announceTimer = null;
/** Say something to screen readers (the polite live region). */
export function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { a.textContent = text; }, 50);
}

/** Show (or clear, with '') a form's error; mark ``fields`` (ids) invalid while it shows. */
export function showError(id, text, fields = []) {
  const e = $(id);
  e.textContent = text;
  e.hidden = !text;
  for (const f of fields) $(f).setAttribute('aria-invalid', text ? 'true' : 'false');
}

/** A dialog's error, marking the name field it is about: ``<prefix>-error``, ``<prefix>-name``. */
export function showNameError(prefix, text) {
  showError(`${prefix}-error`, text, [`${prefix}-name`]);
}

/** Clear a form's error as soon as the user types again in one of ``inputs``. */
export function clearOnInput(errorId, inputs, clear) {
  for (const id of inputs) {
    $(id).addEventListener('input', () => { if (!$(errorId).hidden) clear(); });
  }
}

/** "1.5 GiB": a size in its unit (IEC symbols; a translation may write them its own way). */
export const SIZE_UNITS = [(p) => _('{size} B', p), (p) => _('{size} KiB', p), (p) => _('{size} MiB', p),
  (p) => _('{size} GiB', p), (p) => _('{size} TiB', p), (p) => _('{size} PiB', p)];

export function humanSize(bytes) {
  if (typeof bytes !== 'number' || !isFinite(bytes) || bytes < 0) return '—';
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < SIZE_UNITS.length - 1) { v /= 1024; i += 1; }
  return SIZE_UNITS[i]({ size: i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0) });
}

export function memText(mib) {
  if (typeof mib !== 'number' || !isFinite(mib)) return '—';
  return mib >= 1024 && mib % 1024 === 0 ? _('{size} GiB', { size: mib / 1024 })
    : _('{size} MiB', { size: numberFmt.format(mib) });
}

export function whenText(iso) {
  const t = Date.parse(iso);
  return isFinite(t) ? dateTimeFmt.format(t) : '—';
}

export function durationText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return _n('{n} day, {h} h', '{n} days, {h} h', d, { h });
  if (h) return _('{h} h {m} min', { h, m });
  return _('{m} min', { m });
}

/** "templates: a, b · VMs: c": what uses a pool or a network. */
export function usedByText(u) {
  const parts = [];
  if (u && u.templates && u.templates.length) parts.push(_('templates: {names}', { names: u.templates.join(', ') }));
  if (u && u.vms && u.vms.length) parts.push(_('VMs: {names}', { names: u.vms.join(', ') }));
  return parts.join(' · ') || '—';
}

/** Every word of the query ``q`` (lower case) is somewhere in ``hay``. */
export function matchesWords(hay, q) {
  if (!q) return true;
  return q.split(/\s+/).every((w) => hay.includes(w));
}

/** Rebuild a table's rows keeping the keyboard where it was: the same control of the
 * same row (by its label), else that row's first button or link. */
export function replaceRowsKeepingFocus(tbody, rows) {
  const active = document.activeElement;
  const row = active && active.closest && active.closest(`#${tbody.id} tr`);
  const again = row ? [row.dataset.name, active.getAttribute('aria-label')] : null;
  tbody.replaceChildren(...rows);
  if (!again) return;
  const tr = [...tbody.children].find((x) => x.dataset.name === again[0]);
  const controls = tr ? [...tr.querySelectorAll('button, a')] : [];
  const same = controls.find((b) => b.getAttribute('aria-label') === again[1]);
  const c = same || controls[0];
  if (c) c.focus();
}
