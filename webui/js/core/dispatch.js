/* The event dispatcher: each module declares the event types it handles as patterns
 * ("vm.state", "task.*", "storage*"), and every event goes to the handlers whose pattern
 * takes its type, in the order they were registered. No DOM here: node's test runner
 * tests this module as it is (tests/webui/).
 *
 * Patterns are the server's (GET /events?types=): "*" stands for any run of characters,
 * dots included, "?" for one character; anything else is itself.
 */

/** A predicate for one pattern. */
export function typeMatcher(pattern) {
  if (typeof pattern !== 'string' || !pattern) throw new TypeError('an event pattern is a non-empty string');
  if (!/[*?]/.test(pattern)) return (type) => type === pattern;
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  const re = new RegExp(`^${source}$`);
  return (type) => re.test(type);
}

export class Dispatcher {
  /** ``onError(error, event)``: a handler threw (the others still run). */
  constructor({ onError = (e) => { throw e; } } = {}) {
    this.entries = [];
    this.byType = new Map(); // type -> its handlers, worked out once per type
    this.onError = onError;
  }

  /**
   * Call ``handler(data, event)`` for each event whose type one of ``patterns`` (a
   * string or a list) takes. Returns a function that removes it again.
   */
  on(patterns, handler) {
    if (typeof handler !== 'function') throw new TypeError('a handler is a function');
    const list = Array.isArray(patterns) ? patterns : [patterns];
    const entry = { matchers: list.map(typeMatcher), handler };
    this.entries.push(entry);
    this.byType.clear();
    return () => {
      const i = this.entries.indexOf(entry);
      if (i >= 0) this.entries.splice(i, 1);
      this.byType.clear();
    };
  }

  /** The handlers of one event type, in registration order. */
  handlersFor(type) {
    let found = this.byType.get(type);
    if (!found) {
      found = this.entries.filter((e) => e.matchers.some((m) => m(type))).map((e) => e.handler);
      this.byType.set(type, found);
    }
    return found;
  }

  /** Hand ``event`` ({type, data, id}) to its handlers; how many there were. */
  dispatch(event) {
    if (!event || typeof event.type !== 'string') return 0;
    const handlers = this.handlersFor(event.type);
    const data = event.data && typeof event.data === 'object' ? event.data : {};
    for (const h of handlers) {
      try {
        h(data, event);
      } catch (e) {
        this.onError(e, event);
      }
    }
    return handlers.length;
  }
}

/** Event ids are Redis stream ids "<ms>-<seq>": compare them as numbers. */
export function compareIds(a, b) {
  const [am, as] = String(a).split('-').map((x) => Number(x) || 0);
  const [bm, bs] = String(b).split('-').map((x) => Number(x) || 0);
  return am === bm ? (as || 0) - (bs || 0) : am - bm;
}

/**
 * What the stream lets through: each event once, never one older than the newest applied
 * (a resumed socket may send again what was seen; a listing is as new as its cursor).
 * Notices (``id`` null: figures, a Redis outage) always pass.
 */
export class EventOrder {
  constructor(remember = 5000) {
    this.remember = remember;
    this.lastId = null;
    this.seen = new Set();
    this.order = [];
  }

  /** A listing answered as of ``cursor`` (its Events-Cursor): only newer events apply. */
  resetTo(cursor) {
    this.lastId = cursor;
  }

  accept(event) {
    if (event.id === null || event.id === undefined) return true;
    const id = String(event.id);
    if (this.seen.has(id)) return false;
    if (this.lastId !== null && compareIds(id, this.lastId) <= 0) return false;
    this.seen.add(id);
    this.order.push(id);
    if (this.order.length > this.remember) this.seen.delete(this.order.shift());
    this.lastId = id;
    return true;
  }

  forget() {
    this.lastId = null;
    this.seen.clear();
    this.order = [];
  }
}
