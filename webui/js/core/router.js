/* Hash routing: #/<page> shows one page of the navigation; a page may also take a
 * parameter from the hash (#/console/<name>). Admin pages fall back to the first page for
 * users. */

import { $ } from './dom.js';
import { registered } from './registry.js';
import { _ } from './i18n.js';

let current = null; // the page shown: {page, arg}
let allowed = () => true; // (page) => may the signed-in user see it

export function setAccess(fn) {
  allowed = fn;
}

function pages() {
  return registered().map((m) => m.page).filter(Boolean);
}

function pick() {
  const hash = location.hash || '';
  for (const page of pages()) {
    if (!page.match) continue;
    const m = page.match.exec(hash);
    if (m && allowed(page)) {
      let arg = m[1];
      try { arg = decodeURIComponent(arg); } catch (e) { /* as it is */ }
      return { page, arg };
    }
  }
  const m = /^#\/?([a-z]+)/.exec(hash);
  const navPages = pages().filter((p) => !p.match);
  const page = (m && navPages.find((p) => p.id === m[1] && allowed(p))) || navPages[0];
  return { page, arg: null };
}

export const currentPage = () => (current ? current.page.id : null);

/** Show the page the hash names; ``focus``: move the keyboard to the content. */
export function route(focus) {
  const next = pick();
  const same = current && current.page === next.page && current.arg === next.arg;
  if (current && !same && current.page.hide) current.page.hide();
  for (const p of pages()) {
    $(p.id).hidden = p !== next.page;
    const link = $(`nav-${p.id}`);
    if (!link) continue;
    if (p === next.page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  current = next;
  document.title = _('{page} · kimchi', { page: typeof next.page.title === 'function' ? next.page.title(next.arg)
    : next.page.title });
  if (focus) {
    $('main').focus({ preventScroll: true });
    window.scrollTo({ top: 0 });
  }
  if (next.page.show) next.page.show(next.arg);
}

/** Leave the page shown (sign-out): its hide() runs, nothing is shown. */
export function leave() {
  if (current && current.page.hide) current.page.hide();
  current = null;
}

export function isShown(id) {
  return !!current && current.page.id === id;
}
