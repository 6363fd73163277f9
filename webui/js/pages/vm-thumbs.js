/* Screens: a thumbnail of each running VM whose row is on screen, refreshed every 5 s
 * while the VMs page is shown and someone uses the page (the only requests the page
 * repeats by itself: without that pause they would keep an unattended session alive). */

import { noteAnswer, vmPath, capabilities, onServerKnown } from '../core/api.js';
import { signedIn, userPresent, onPresence } from '../core/session.js';
import { isShown } from '../core/router.js';
import { vms, isBusy, isRemoteVm, itemOf, onVmItem, updateThumb } from './vms.js';

const THUMB_EVERY = 5000; // ms between two screenshots of one VM (the server keeps one 3 s)
const THUMB_PARALLEL = 4;

const visible = new Set(); // names whose row is on screen
const inflight = new Map(); // name -> AbortController
const last = new Map(); // name -> when its screen was last asked for (ms)
const shots = new Map(); // name -> its last screen (a data: URL), for a row made again
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
  for (const name of visible) {
    const vm = vms.get(name);
    // another host's screen is not served yet (GET /vms/<name>/screenshot is the local's)
    if (!vm || vm.state !== 'running' || isBusy(name) || isRemoteVm(name)
        || inflight.has(name)) continue;
    const due = (last.get(name) || 0) + THUMB_EVERY - now;
    if (due > 0) { next = Math.min(next, due); continue; }
    if (inflight.size >= THUMB_PARALLEL) { next = Math.min(next, 200); continue; }
    fetchThumb(name);
  }
  timer = setTimeout(tick, Math.max(next, 100));
}

function abort(name) {
  const ac = inflight.get(name);
  if (ac) ac.abort();
  inflight.delete(name);
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

async function fetchThumb(name) {
  const ac = new AbortController();
  inflight.set(name, ac);
  last.set(name, Date.now());
  try {
    const resp = await fetch(`${vmPath(name)}/screenshot`, {
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
      const item = itemOf(name);
      if (resp.status !== 404 && item) {
        item.noScreen = true;
        updateThumb(item, vms.get(name));
        last.set(name, Date.now() + 6 * THUMB_EVERY);
      }
      return;
    }
    const url = await asDataUrl(await resp.blob());
    const vm = vms.get(name);
    if (ac.signal.aborted || !vm || vm.state !== 'running') return;
    shots.set(name, url);
    const item = itemOf(name);
    if (!item) return;
    item.noScreen = false;
    item.shot.src = url;
  } catch (e) {
    // aborted, or the server went away: the next round tries again
  } finally {
    if (inflight.get(name) === ac) inflight.delete(name);
  }
}

function onItem(item, what) {
  const name = item.name;
  if (what === 'built') {
    observer.observe(item.li);
    const shot = shots.get(name);
    const vm = vms.get(name);
    if (shot && vm && (vm.state === 'running' || vm.state === 'paused')) item.shot.src = shot;
  } else if (what === 'removed') {
    observer.unobserve(item.li);
    visible.delete(name);
    abort(name);
  } else if (what === 'updated') {
    if (isBusy(name)) abort(name); // its screen may be gone when the answer comes
    const vm = vms.get(name);
    if (!vm || (vm.state !== 'running' && vm.state !== 'paused')) shots.delete(name);
    thumbSoon();
  }
}

export default {
  name: 'vm-thumbs',
  events: {
    'vm.deleted': (d) => { shots.delete(d.name); last.delete(d.name); },
  },
  init() {
    observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const name = e.target.dataset.name;
        if (e.isIntersecting) visible.add(name);
        else visible.delete(name);
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
    for (const name of [...inflight.keys()]) abort(name);
    visible.clear();
    last.clear();
    shots.clear();
  },
};
