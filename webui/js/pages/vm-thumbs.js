/* Screens: a thumbnail of each running VM whose row is on screen, refreshed every 5 s
 * while the VMs page is shown and someone uses the page (the only requests the page
 * repeats by itself: without that pause they would keep an unattended session alive).
 * Another host's VM's screen comes from its canonical address
 * (/hosts/<host>/vms/<name>/screenshot); everything here is keyed as the rows are (vmKey). */

import { noteAnswer, capabilities, onServerKnown } from '../core/api.js';
import { signedIn, userPresent, onPresence } from '../core/session.js';
import { isShown } from '../core/router.js';
import { vms, vmKey, addressOf, isBusy, itemOf, onVmItem, updateThumb } from './vms.js';

const THUMB_EVERY = 5000; // ms between two screenshots of one VM (the server keeps one 3 s)
const THUMB_PARALLEL = 4;

const visible = new Set(); // vmKeys of the rows on screen
const inflight = new Map(); // vmKey -> AbortController
const last = new Map(); // vmKey -> when its screen was last asked for (ms)
const shots = new Map(); // vmKey -> its last screen (a data: URL), for a row made again
const keyOf = new WeakMap(); // a row (li) -> its vmKey, for the observer
let timer = null;
let observer = null;

function wanted() {
  const caps = capabilities();
  return signedIn() && !document.hidden && isShown('vms') && caps !== null && !!caps.screenshot
    && userPresent();
}

export function thumbSoon() {
  if (timer) return;
  timer = setTimeout(tick, 50);
}

function tick() {
  timer = null;
  if (!wanted()) return;
  const now = Date.now();
  let next = THUMB_EVERY;
  for (const key of visible) {
    const vm = vms.get(key);
    if (!vm || vm.state !== 'running' || isBusy(vm) || inflight.has(key)) continue;
    const due = (last.get(key) || 0) + THUMB_EVERY - now;
    if (due > 0) { next = Math.min(next, due); continue; }
    if (inflight.size >= THUMB_PARALLEL) { next = Math.min(next, 200); continue; }
    fetchThumb(vm);
  }
  timer = setTimeout(tick, Math.max(next, 100));
}

function abort(key) {
  const ac = inflight.get(key);
  if (ac) ac.abort();
  inflight.delete(key);
}

function asDataUrl(blob) {
  // the page's CSP admits images from 'self' and data:, not blob:
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

async function fetchThumb(vm) {
  const key = vmKey(vm);
  const ac = new AbortController();
  inflight.set(key, ac);
  last.set(key, Date.now());
  try {
    const resp = await fetch(`${addressOf(vm)}/screenshot`, {
      cache: 'no-store',
      credentials: 'same-origin',
      headers: { 'X-Requested-With': 'XMLHttpRequest' },
      signal: ac.signal,
    });
    noteAnswer(resp);
    if (resp.status === 401) return;
    if (!resp.ok) {
      // stopped meanwhile (404: its vm.state event follows), or no screen to take: ask
      // again later rather than every round
      const item = itemOf(vm);
      if (resp.status !== 404 && item) {
        item.noScreen = true;
        updateThumb(item, vms.get(key));
        last.set(key, Date.now() + 6 * THUMB_EVERY);
      }
      return;
    }
    const url = await asDataUrl(await resp.blob());
    const now = vms.get(key);
    if (ac.signal.aborted || !now || now.state !== 'running') return;
    shots.set(key, url);
    const item = itemOf(vm);
    if (!item) return;
    item.noScreen = false;
    item.shot.src = url;
  } catch (e) {
    // aborted, or the server went away: the next round tries again
  } finally {
    if (inflight.get(key) === ac) inflight.delete(key);
  }
}

function onItem(item, what) {
  const { key } = item;
  if (what === 'built') {
    keyOf.set(item.li, key);
    observer.observe(item.li);
    const shot = shots.get(key);
    const vm = vms.get(key);
    if (shot && vm && (vm.state === 'running' || vm.state === 'paused')) item.shot.src = shot;
  } else if (what === 'removed') {
    observer.unobserve(item.li);
    visible.delete(key);
    abort(key);
  } else if (what === 'updated') {
    if (isBusy(item.ref)) abort(key); // its screen may be gone when the answer comes
    const vm = vms.get(key);
    if (!vm || (vm.state !== 'running' && vm.state !== 'paused')) shots.delete(key);
    thumbSoon();
  }
}

function forget(d) {
  if (typeof d.name !== 'string') return;
  shots.delete(vmKey(d));
  last.delete(vmKey(d));
}

export default {
  name: 'vm-thumbs',
  events: {
    'vm.deleted': forget,
  },
  init() {
    observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const key = keyOf.get(e.target);
        if (key === undefined) continue;
        if (e.isIntersecting) visible.add(key);
        else visible.delete(key);
      }
      thumbSoon();
    });
    onVmItem(onItem);
    onServerKnown(thumbSoon);
    onPresence(thumbSoon);
    window.addEventListener('hashchange', thumbSoon);
    document.addEventListener('visibilitychange', thumbSoon);
  },
  stop() {
    clearTimeout(timer);
    timer = null;
    for (const key of [...inflight.keys()]) abort(key);
    visible.clear();
    last.clear();
    shots.clear();
  },
};
