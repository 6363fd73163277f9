/* The one listing helper of every page that lists objects: GET a collection, never let
 * an answer asked for earlier overwrite a later one, list again shortly after a burst of
 * events, and show the empty, error and loading states the same way everywhere. */

import { $, numberFmt } from './dom.js';
import { api } from './api.js';
import { _ } from './i18n.js';

export class Listing {
  /**
   * ``path``: the collection (or a function giving it); ``render``: called after each
   * answer taken; ``active``: whether live updates should list again (the page is shown).
   */
  constructor({ path, render, active = () => true }) {
    this.path = path;
    this.render = render;
    this.active = active;
    this.items = null; // null until the first answer
    this.error = '';
    this.asked = 0;
    this.shown = 0;
    this.timer = null;
  }

  /** GET the collection; whether this answer was taken (and rendered). */
  async load() {
    const seq = ++this.asked;
    const path = typeof this.path === 'function' ? this.path() : this.path;
    const stale = () => seq < this.shown;
    try {
      const r = await api('GET', path);
      if (stale()) return false;
      this.items = Array.isArray(r.data) ? r.data : [];
      this.error = '';
    } catch (e) {
      if (stale() || e.status === 401) return false;
      this.error = e.message;
    }
    this.shown = seq;
    this.render();
    return true;
  }

  /** After a reconnect (events may have been lost): list again what is shown and was
   * listed before (a page not shown lists when it is). */
  async relist() {
    if (this.items !== null && this.active()) await this.load();
  }

  /** List again in a moment: a burst of events (a VM made, a pool changed) is one GET. */
  soon(delay = 150) {
    if (this.timer || !this.active()) return;
    this.timer = setTimeout(() => { this.timer = null; this.load(); }, delay);
  }

  /** Keep the list shown in step with an event: ``fn(items)`` answers the new items. */
  patch(fn) {
    if (this.items === null) return;
    this.items = fn(this.items);
    this.render();
  }

  forget() {
    clearTimeout(this.timer);
    this.timer = null;
    this.items = null;
    this.error = '';
    this.shown = this.asked + 1; // answers in flight are dropped
  }
}

/**
 * The count, the empty note and the error of a listing, the same on every page:
 * ``prefix`` names the elements (<prefix>-count, <prefix>-empty, <prefix>-empty-text);
 * ``noun`` is [one, many], or a function of the count ("3 pools", translated with _n);
 * ``what`` the plural in "The pools cannot be listed".
 */
export function showListingState(listing, { prefix, noun, what, emptyText, extra = '', busy = 0 }) {
  const list = listing.items || [];
  const empty = $(`${prefix}-empty`);
  const text = $(`${prefix}-empty-text`);
  if (listing.error && !list.length) {
    text.textContent = _('The {what} cannot be listed: {error}', { what, error: listing.error });
    empty.hidden = false;
  } else {
    text.textContent = emptyText;
    empty.hidden = !!list.length || !!busy || listing.items === null;
  }
  const n = typeof noun === 'function' ? noun(list.length)
    : `${numberFmt.format(list.length)} ${list.length === 1 ? noun[0] : noun[1]}`;
  $(`${prefix}-count`).textContent = listing.items === null ? _('Loading…') : `${n}${extra}`;
}
