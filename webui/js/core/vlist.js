/* A windowed list: of a long list (10,000 VMs, a scan's ISOs) only the items on screen,
 * and a screenful either side, are in the document; spacers stand for the rest, so the
 * page scrolls as if all were there. Items may differ in height: each is measured once
 * shown, and an estimate stands for those never shown. Nodes are moved as little as
 * possible, so a focused control keeps its focus while the list changes around it.
 * Screen readers hear each item's place in the whole list (aria-setsize/posinset, or
 * aria-rowcount/rowindex in a table).
 */

export class WindowedList {
  /**
   * ``container``: the <ul>/<ol> or <tbody> holding the items; ``key(item)``: its id;
   * ``render(item)``: its node (the caller keeps nodes it wants to reuse);
   * ``removed(key, node)``: a node left the document; ``estimate``: px of an unseen item;
   * ``columns``: for a <tbody>, the table's column count (the spacers span them).
   */
  constructor({ container, key, render, removed = () => {}, estimate = 48, overscan = 600,
    columns = 1, rowIndexBase = 1 }) {
    this.container = container;
    this.key = key;
    this.renderItem = render;
    this.removed = removed;
    this.estimate = estimate;
    this.overscan = overscan;
    this.table = container.tagName === 'TBODY';
    this.rowIndexBase = rowIndexBase; // the header rows before the first item
    this.items = [];
    this.heights = new Map(); // key -> measured px
    this.shown = new Map(); // key -> node in the document
    this.queued = false;
    if (this.table) {
      this.top = this.spacer(columns);
      this.bottom = this.spacer(columns);
      container.before(this.top);
      container.after(this.bottom);
    }
    container.replaceChildren();
    this.onScroll = () => this.queue();
    window.addEventListener('scroll', this.onScroll, { passive: true });
    window.addEventListener('resize', this.onScroll, { passive: true });
  }

  spacer(columns) {
    const body = document.createElement('tbody');
    body.className = 'vlist-spacer';
    body.setAttribute('aria-hidden', 'true');
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = columns;
    tr.append(td);
    body.append(tr);
    return body;
  }

  /** Show these items, in this order (rendered at the next frame, or now with ``now``). */
  setItems(items, { now = false } = {}) {
    this.items = items;
    if (now) this.render();
    else this.queue();
  }

  queue() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => { if (this.queued) this.render(); });
  }

  heightOf(k) {
    const h = this.heights.get(k);
    return h === undefined ? this.estimate : h;
  }

  /** The items in (or near) the viewport: [first, end). */
  range() {
    const rect = (this.table ? this.top : this.container).getBoundingClientRect();
    const from = Math.max(0, -rect.top - this.overscan);
    const to = -rect.top + window.innerHeight + this.overscan;
    const n = this.items.length;
    let y = 0;
    let first = 0;
    while (first < n) {
      const h = this.heightOf(this.key(this.items[first]));
      if (y + h > from) break;
      y += h;
      first += 1;
    }
    let end = first;
    let bottom = y;
    while (end < n && bottom < to) {
      bottom += this.heightOf(this.key(this.items[end]));
      end += 1;
    }
    return { first, end, above: y };
  }

  render() {
    this.queued = false;
    const { first, end, above } = this.range();
    const n = this.items.length;
    const wanted = new Map();
    const nodes = [];
    for (let i = first; i < end; i += 1) {
      const item = this.items[i];
      const k = this.key(item);
      const node = this.renderItem(item);
      if (this.table) {
        node.setAttribute('aria-rowindex', String(i + 1 + this.rowIndexBase));
      } else {
        node.setAttribute('aria-setsize', String(n));
        node.setAttribute('aria-posinset', String(i + 1));
      }
      wanted.set(k, node);
      nodes.push(node);
    }
    for (const [k, node] of this.shown) {
      if (wanted.get(k) !== node) {
        if (node.parentNode === this.container) node.remove();
        this.removed(k, node);
      }
    }
    this.shown = wanted;
    // in order, moving as few nodes as possible (a focused control keeps its focus)
    let at = this.container.firstChild;
    for (const node of nodes) {
      if (at === node) at = at.nextSibling;
      else this.container.insertBefore(node, at);
    }
    while (at) {
      const next = at.nextSibling;
      at.remove();
      at = next;
    }
    for (const [k, node] of wanted) {
      const h = node.offsetHeight;
      if (h) this.heights.set(k, h);
    }
    let below = 0;
    for (let i = end; i < n; i += 1) below += this.heightOf(this.key(this.items[i]));
    this.setHeight('top', above);
    this.setHeight('bottom', below);
    if (this.table) this.container.closest('table').setAttribute('aria-rowcount', String(n + this.rowIndexBase));
  }

  setHeight(which, px) {
    if (this.table) {
      const spacer = which === 'top' ? this.top : this.bottom;
      spacer.firstChild.firstChild.style.height = `${px}px`;
    } else if (which === 'top') {
      this.container.style.paddingTop = px ? `${px}px` : '';
    } else {
      this.container.style.paddingBottom = px ? `${px}px` : '';
    }
  }

  /** The node of an item now in the document, if it is. */
  nodeOf(k) {
    return this.shown.get(k) || null;
  }

  /** Bring item ``k`` into the document and the viewport. */
  reveal(k) {
    const i = this.items.findIndex((x) => this.key(x) === k);
    if (i < 0) return null;
    let y = 0;
    for (let j = 0; j < i; j += 1) y += this.heightOf(this.key(this.items[j]));
    const rect = (this.table ? this.top : this.container).getBoundingClientRect();
    window.scrollTo({ top: window.scrollY + rect.top + y - 100 });
    this.render();
    return this.nodeOf(k);
  }

  /** Forget the measurements (the items' layout changed) and every node shown. */
  clear() {
    for (const [k, node] of this.shown) {
      node.remove();
      this.removed(k, node);
    }
    this.shown.clear();
    this.heights.clear();
    this.items = [];
    this.setHeight('top', 0);
    this.setHeight('bottom', 0);
  }
}
