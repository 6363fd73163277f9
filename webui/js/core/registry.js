/* The modules of the app and what they declared: the events they handle (one
 * dispatcher for all), their part of a listing, what they forget at sign-out.
 *
 * A module is a plain object; every member is optional:
 *   name      its name, for errors
 *   events    { 'vm.state': fn, 'task.* iso.found': fn }: handlers of the event types the
 *             key's patterns (separated by spaces) take, called with (data, event)
 *   init()    once, when the page loads: wire the DOM
 *   start()   each time the app starts for a signed-in user
 *   resync()  async: list what it shows again (after a reconnect that lost events, and at
 *             start); events that arrive meanwhile are held and applied after it
 *   stop()    at sign-out: stop timers, forget everything shown
 *   page      { id, title, admin, show(focus), hide() }: a page of the navigation
 */

import { Dispatcher } from './dispatch.js';

export const dispatcher = new Dispatcher({
  onError: (e, ev) => console.error(`kimchi: handling a ${ev.type} event failed:`, e),
});

const modules = [];

export function register(...mods) {
  for (const mod of mods) {
    modules.push(mod);
    for (const [key, handler] of Object.entries(mod.events || {})) {
      dispatcher.on(key.split(/[\s,]+/).filter(Boolean), handler);
    }
  }
}

export const registered = () => modules;

/** Call ``hook`` of every module that has it, in registration order. */
export function each(hook, ...args) {
  return modules.filter((m) => typeof m[hook] === 'function').map((m) => m[hook](...args));
}
