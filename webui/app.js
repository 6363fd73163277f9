/* kimchi web UI: the ISO library, templates, virtual machines and live tasks.
 *
 * Nothing of the app shows, and no socket opens, before GET /session says who is signed in;
 * else the login page. Every answer's Session-Expires-On is tracked to warn before the
 * session ends, and any 401 goes back to the login page. Users (not admins) are not offered
 * what only admins may do.
 *
 * No framework, no build step. State lives in maps (ISOs by path, tasks by id, templates and
 * VMs by name) that the REST listings fill and the event stream keeps current. One WebSocket
 * to /events; on close it reconnects with back-off and resumes with ?since=<last event id>, so
 * nothing is missed, and events are de-duplicated by id. Server data only ever reaches the
 * page through textContent. What the server does not offer (its /openapi.json) or the host
 * cannot do (/config/capabilities) is not shown.
 */
(() => {
  'use strict';

  const TERMINAL = new Set(['finished', 'failed', 'cancelled']);
  const KIND_LABELS = { 'iso.scan': 'ISO scan', 'vm.create': 'New VM', 'vm.clone': 'Clone VM',
    'vm.clone.disks': 'Disk copy', 'debugreport.collect': 'Debug report', 'vm.snapshot': 'Snapshot' };
  // the tasks whose end is a new VM: each has a row of its own in the list until it appears
  const MAKES_VM = new Set(['vm.create', 'vm.clone']);
  const COMPONENTS = { redis: 'Redis', libvirt: 'libvirt', workers: 'the workers' };
  const COUNTERS = [['files', 'Files'], ['dirs', 'Folders'], ['isos', 'ISOs'],
    ['skipped', 'Skipped']];
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 5000;
  const MAX_TASKS = 100;
  const SEEN_MAX = 5000;
  // The warning shows when a fifth of the idle time is left, 2 minutes at most, but at least
  // 15 s before the end (or half the idle time, if even that is shorter): time to react.
  const WARN_SHARE = 0.2;
  const WARN_MAX = 120000; // ms
  const WARN_MIN = 15000; // ms
  const EXPIRY_GRACE = 600; // ms after the end before asking whether it really ended

  const $ = (id) => document.getElementById(id);
  const numberFmt = new Intl.NumberFormat();
  const timeFmt = new Intl.DateTimeFormat(undefined,
    { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

  const state = {
    isos: new Map(), // path -> ISO record
    tasks: new Map(), // id -> { rec, cancelling, el, fetched }
    sort: { key: 'name', dir: 1 },
    filter: '',
    fresh: new Set(), // paths that arrived live, highlighted for a moment
    rows: new Map(), // path -> { rec, tr }: rows are rebuilt only when their record changes
    lastId: null, // newest event id applied (or the listing's Events-Cursor)
    seen: new Set(),
    seenOrder: [],
    ws: null,
    open: false,
    everOpen: false,
    backoff: BACKOFF_MIN,
    resyncing: false,
    pending: [],
    degraded: null, // {reason, fix} while a component is down
    scanTaskId: null, // the scan the Stop button stops
    renderQueued: false,
    templates: new Map(), // name -> template
    vms: new Map(), // name -> VM
    vmItems: new Map(), // name -> { li, buttons, ... }: the list's items, changed in place
    vmPending: new Map(), // name -> item of a VM a vm.create or vm.clone task is still making
    vmArriving: new Map(), // name -> its finished task (MAKES_VM), until vm.created comes
    vmBusy: new Map(), // name -> the action in flight
    vmErrors: new Map(), // name -> the reason the last action was refused
    vmFilter: '',
    vmRenderQueued: false,
    vmsError: null, // why GET /vms failed (libvirt away)
    vmVisible: new Set(), // names whose item is on screen (their thumbnails refresh)
    thumbInflight: new Map(), // name -> AbortController
    thumbLast: new Map(), // name -> when its screen was last asked for (ms)
    thumbTimer: null,
    caps: null, // GET /config/capabilities
    libvirtDown: false,
    myCreates: new Set(), // ids of the vm.create and vm.clone tasks this page started
    editing: null, // the VM the edit dialog is about
    cloning: null, // the VM the clone dialog is about
    accessing: null, // the VM the access dialog is about
    tokens: null, // GET /tokens (never their secrets), once the tokens page has asked
    tokensError: '', // why GET /tokens failed
    reports: null, // GET /debugreports, once the reports page has asked
    reportsError: '', // why GET /debugreports failed
    reportMaking: new Map(), // task id -> its row, for the reports being made
    reportRenaming: null, // the report the rename dialog is about
    pools: null, // GET /storagepools, once the storage page has asked
    poolsError: '',
    poolsTimer: null,
    volumesAsked: 0,
    nets: null, // GET /networks, once the networks page has asked
    netsError: '',
    netsTimer: null,
    netErrors: new Map(), // network name -> why its last action failed
    ifaces: null, // GET /interfaces: what a bridged or macvtap network may use
    volumesShown: 0,
    poolErrors: new Map(), // pool name -> why its last action failed
    poolChosen: null, // the pool whose volumes are shown
    volumes: null,
    volumesError: '',
    console: null, // {name, rfb}: the VM console open on #/console/<name>
    snapVm: null, // the VM whose snapshots the dialog shows
    devVm: null, // the VM whose devices the dialog shows
    principals: null, // {users, groups} of the host, for the access dialog
    snaps: null,
    hostInfo: null, // GET /host, once the host page has asked
    hostInfoAt: 0, // when it answered (the uptime moves on from there)
    hostError: '',
    hostSamples: [], // the host's figures, oldest first: the history, then host.stats notices
    hostCap: 150, // samples the charts hold (the server's history, at least)
    hostInterval: 2, // seconds between two samples
    hostRenderQueued: false,
    distros: null, // GET /config/distros, or null when the server has none
    routes: null, // the paths of GET /openapi.json
    renaming: null, // the template whose name is being edited
    rowErrors: new Map(), // template name -> error text shown in its row
    confirm: null, // {run, back}: what the confirmation dialog does, where focus returns
    who: null, // GET /session: {username, groups, role}
    signedIn: false,
    started: false, // the app ran in this page (a later login reloads it, to start clean)
    expiresAt: 0, // when the session ends (ms, this browser's clock) unless it is used
    idleMs: 0, // the longest span a Session-Expires-On gave: about the idle timeout
    expiryTimer: null,
    atLimit: false, // using the session no longer extends it (its absolute limit)
    reconnectTimer: null,
    bootTimer: null,
    lastActivity: Date.now(), // the user's last key or pointer press (thumbnails pause after)
    loginWaitTimer: null, // the countdown after a 429
    signingIn: false,
    signingOut: false, // the 401s of requests crossing POST /logout are no news
    checkingEnd: false,
    renewError: '', // why "Stay signed in" failed
  };

  // -- small helpers ------------------------------------------------------------------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function humanSize(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes) || bytes < 0) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = bytes;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  function distroText(iso) {
    const d = iso.os_distro || 'unknown';
    const v = iso.os_version || 'unknown';
    if (d === 'unknown') return 'unknown';
    return v === 'unknown' ? d : `${d} ${v}`;
  }

  /** Event ids are Redis stream ids "<ms>-<seq>"; compare them as numbers. */
  function parseId(id) {
    const [ms, seq] = String(id).split('-');
    return [Number(ms) || 0, Number(seq) || 0];
  }

  function cmpId(a, b) {
    const [am, as] = parseId(a);
    const [bm, bs] = parseId(b);
    return am === bm ? as - bs : am - bm;
  }

  function remember(id) {
    state.seen.add(id);
    state.seenOrder.push(id);
    if (state.seenOrder.length > SEEN_MAX) state.seen.delete(state.seenOrder.shift());
  }

  const isAdmin = () => !!state.who && state.who.role === 'admin';

  /**
   * Call the API. Every call says it is the app's (X-Requested-With: no browser login
   * dialog on a 401); the answer's Session-Expires-On is noted, and a 401 ends the app's
   * session (``auth: false`` for the login itself, whose 401 is a wrong password).
   */
  async function api(method, path, body, { auth = true } = {}) {
    const opts = {
      method,
      headers: { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
      credentials: 'same-origin',
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      const err = new Error('The server cannot be reached. Check that kimchid is running.');
      err.status = 0;
      throw err;
    }
    noteExpiry(resp.headers);
    if (resp.status === 401 && auth) sessionEnded();
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const reason = data && typeof data.reason === 'string' ? data.reason
        : `${resp.status} ${resp.statusText}`;
      const code = data && typeof data.errcode === 'string' ? data.errcode : '';
      const err = new Error(code && !reason.includes(code) ? `${reason} (${code})` : reason);
      err.status = resp.status;
      err.body = data;
      const wait = Number(resp.headers.get('Retry-After'));
      if (isFinite(wait) && wait > 0) err.retryAfter = wait;
      throw err;
    }
    return { data, headers: resp.headers, status: resp.status };
  }

  let announceTimer = null;
  function announce(text) {
    const a = $('announcer');
    a.textContent = '';
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { a.textContent = text; }, 50);
  }

  // -- connection indicator and banner -------------------------------------------------

  function updateConn() {
    let st;
    let text;
    if (!state.open) {
      st = state.everOpen ? 'reconnecting' : 'connecting';
      text = state.everOpen ? 'Reconnecting…' : 'Connecting…';
    } else if (state.degraded) {
      st = 'degraded';
      text = 'Degraded';
    } else {
      st = 'live';
      text = 'Live';
    }
    const c = $('conn');
    if (c.dataset.state !== st) {
      c.dataset.state = st;
      $('conn-text').textContent = text;
      c.title = st === 'live' ? 'Receiving live updates'
        : st === 'degraded' ? 'Connected, but a service is degraded'
          : 'Live updates are interrupted; retrying';
    }
  }

  function showDegraded(info) {
    state.degraded = info;
    $('banner-title').textContent = info.title || 'Service degraded';
    $('banner-reason').textContent = info.reason || '';
    $('banner-fix').textContent = info.fix || '';
    $('banner-fix').hidden = !info.fix;
    $('banner').hidden = false;
    updateConn();
  }

  function clearDegraded() {
    state.degraded = null;
    $('banner').hidden = true;
    updateConn();
  }

  async function checkHealth() {
    try {
      const r = await fetch('/health', { headers: { Accept: 'application/json' } });
      const h = await r.json();
      if (h && (h.libvirt === 'down' || h.libvirt === 'up')) libvirtDown(h.libvirt === 'down');
      if (h && h.status === 'degraded') {
        const down = ['redis', 'libvirt'].filter((k) => h[k] === 'down').map((k) => COMPONENTS[k]);
        showDegraded({
          title: 'Service degraded',
          reason: down.length ? `Not answering: ${down.join(', ')}.` : 'A component is not answering.',
          fix: 'kimchid reconnects by itself once it answers again.',
          fromHealth: true,
        });
      } else if (state.degraded && state.degraded.fromHealth) {
        clearDegraded();
      }
    } catch (e) {
      // the socket's state already tells the user
    }
  }

  // -- ISO library ----------------------------------------------------------------------

  const SORT_KEYS = {
    name: (i) => i.name || '',
    distro: (i) => distroText(i),
    size: (i) => (typeof i.size === 'number' ? i.size : -1),
    bootable: (i) => (i.bootable ? 1 : 0),
    path: (i) => i.path || '',
    found_by: (i) => `${i.found_by || ''} ${i.pool || ''}`,
  };

  function compareIsos(a, b) {
    const key = SORT_KEYS[state.sort.key];
    const x = key(a);
    const y = key(b);
    let c = typeof x === 'number' && typeof y === 'number' ? x - y : collator.compare(x, y);
    if (c === 0) c = collator.compare(a.path || '', b.path || '');
    return c * state.sort.dir;
  }

  function matches(iso, q) {
    if (!q) return true;
    const hay = [iso.name, distroText(iso), iso.path, iso.found_by, iso.pool,
      iso.bootable ? 'bootable' : ''].join(' ').toLowerCase();
    return q.split(/\s+/).every((w) => hay.includes(w));
  }

  function isoRow(iso) {
    const tr = el('tr');
    tr.dataset.path = iso.path;
    const name = el('td', 'cell-name');
    name.append(el('span', 'iso-name', iso.name));
    name.title = iso.path;
    const distro = el('td', 'cell-distro');
    const d = iso.os_distro || 'unknown';
    const chip = el('span', `distro distro-${/^[a-z0-9-]+$/.test(d) ? d : 'other'}`);
    if (d === 'unknown') {
      chip.textContent = 'unknown';
    } else {
      chip.append(el('span', 'distro-name', d));
      if (iso.os_version && iso.os_version !== 'unknown') {
        chip.append(document.createTextNode(' '), el('span', 'distro-ver', iso.os_version));
      }
    }
    distro.append(chip);
    const size = el('td', 'num', humanSize(iso.size));
    if (typeof iso.size === 'number') size.title = `${numberFmt.format(iso.size)} bytes`;
    const boot = el('td', 'cell-boot');
    boot.append(el('span', iso.bootable ? 'yes' : 'no', iso.bootable ? 'Yes' : 'No'));
    // long paths lose their start, not their end: the folder and file are what tell them apart
    const path = el('td', 'cell-path mono');
    const bdi = el('bdi', null, iso.path);
    bdi.dir = 'ltr';
    path.append(bdi);
    path.title = iso.path;
    const by = el('td', 'cell-by');
    by.append(el('span', `tag tag-${iso.found_by === 'pool' ? 'pool' : 'scan'}`,
      iso.found_by === 'pool' && iso.pool ? `pool ${iso.pool}` : iso.found_by || '—'));
    const act = el('td', 'cell-actions');
    if (isAdmin()) {
      const mk = el('button', 'btn btn-small btn-plain iso-make-template', '+ Template');
      mk.type = 'button';
      mk.setAttribute('aria-label', `Create a template from ${iso.name}`);
      mk.title = `Create a template from ${iso.name}`;
      mk.addEventListener('click', () => prefillTemplate(iso.path));
      act.append(mk);
    }
    tr.append(name, distro, size, boot, path, by, act);
    if (state.fresh.has(iso.path)) tr.classList.add('is-new');
    return tr;
  }

  function renderIsos() {
    state.renderQueued = false;
    const q = state.filter.trim().toLowerCase();
    const all = [...state.isos.values()];
    const shown = all.filter((i) => matches(i, q)).sort(compareIsos);
    const tbody = $('iso-rows');
    const rows = shown.map((iso) => {
      let cached = state.rows.get(iso.path);
      if (!cached || cached.rec !== iso) {
        cached = { rec: iso, tr: isoRow(iso) };
        state.rows.set(iso.path, cached);
      }
      return cached.tr;
    });
    for (const path of state.rows.keys()) {
      if (!state.isos.has(path)) state.rows.delete(path);
    }
    const current = tbody.children;
    if (current.length !== rows.length || rows.some((tr, i) => current[i] !== tr)) {
      tbody.replaceChildren(...rows);
    }
    const empty = $('iso-empty');
    if (!all.length) {
      $('iso-empty-text').textContent = isAdmin() ? 'No ISO images yet. Scan a folder to find some.'
        : 'No ISO images yet.';
      empty.hidden = false;
    } else if (!shown.length) {
      $('iso-empty-text').textContent = `No image matches “${state.filter.trim()}”.`;
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
    const n = all.length;
    const word = n === 1 ? 'image' : 'images';
    $('iso-count').textContent = shown.length === n ? `${numberFmt.format(n)} ${word}`
      : `${numberFmt.format(shown.length)} of ${numberFmt.format(n)} ${word}`;
    fillIsoSelect();
    for (const th of document.querySelectorAll('#iso-table th[data-key]')) {
      th.setAttribute('aria-sort', th.dataset.key !== state.sort.key ? 'none'
        : state.sort.dir > 0 ? 'ascending' : 'descending');
    }
  }

  function queueIsoRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(renderIsos);
  }

  function isoFound(data) {
    if (!data || typeof data.path !== 'string') return;
    const rec = { ...data };
    delete rec.task;
    const known = state.isos.has(rec.path);
    state.isos.set(rec.path, rec);
    if (!known) {
      state.fresh.add(rec.path);
      setTimeout(() => {
        state.fresh.delete(rec.path);
        const row = state.rows.get(rec.path);
        if (row) row.tr.classList.remove('is-new');
      }, 2500);
    }
    queueIsoRender();
  }

  function isoRemoved(data) {
    if (data && state.isos.delete(data.path)) queueIsoRender();
  }

  // -- tasks ----------------------------------------------------------------------------

  function taskStatus(t) {
    const s = t.rec.status;
    if (s !== 'running') return s;
    if (t.cancelling) return 'cancelling';
    return t.rec.attempt ? 'running' : 'queued';
  }

  const STATUS_TEXT = {
    queued: 'Queued', running: 'Running', cancelling: 'Cancelling…', finished: 'Finished',
    failed: 'Failed', cancelled: 'Cancelled',
  };

  function taskTarget(rec) {
    if (rec.kind === 'vm.create') {
      const name = vmNameOf(rec);
      const from = rec.params && rec.params.template;
      return from ? `${name || 'a VM'} from ${from}` : name || rec.target_uri || '';
    }
    if (rec.kind === 'vm.clone') {
      const name = vmNameOf(rec);
      const from = rec.params && rec.params.source;
      return from ? `${name || 'a VM'}, a copy of ${from}` : name || rec.target_uri || '';
    }
    if (rec.params && typeof rec.params.path === 'string') return rec.params.path;
    return rec.target_uri || '';
  }

  function duration(rec) {
    const a = Date.parse(rec.created);
    const b = Date.parse(rec.updated);
    if (!isFinite(a) || !isFinite(b) || b < a) return '';
    const s = (b - a) / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    return `${m} min ${Math.round(s - m * 60)} s`;
  }

  function buildTaskEl(t) {
    const node = $('task-template').content.firstElementChild.cloneNode(true);
    node.dataset.taskId = t.rec.id;
    const cancel = node.querySelector('.task-cancel');
    cancel.addEventListener('click', () => cancelTask(t.rec.id, cancel));
    const bar = node.querySelector('.bar');
    bar.id = `task-bar-${t.rec.id}`;
    return node;
  }

  function renderTask(t) {
    const rec = t.rec;
    if (!t.el) t.el = buildTaskEl(t);
    const node = t.el;
    const status = taskStatus(t);
    const kind = KIND_LABELS[rec.kind] || rec.kind;
    node.dataset.status = status;
    node.querySelector('.task-kind').textContent = kind;
    node.querySelector('.task-status').textContent = STATUS_TEXT[status] || status;
    const target = node.querySelector('.task-target');
    target.textContent = taskTarget(rec);
    target.title = taskTarget(rec);

    const bar = node.querySelector('.bar');
    bar.setAttribute('aria-label', `${kind} progress`);
    let pct = typeof rec.progress === 'number' ? rec.progress : null;
    if (TERMINAL.has(rec.status) && pct === null) pct = rec.status === 'finished' ? 100 : 0;
    if (pct === null) {
      bar.removeAttribute('value'); // indeterminate
      bar.setAttribute('aria-valuetext', 'In progress');
      bar.dataset.value = '';
    } else {
      bar.value = Math.max(0, Math.min(100, pct));
      bar.removeAttribute('aria-valuetext');
      bar.dataset.value = String(bar.value);
    }

    const msg = node.querySelector('.task-message');
    msg.replaceChildren();
    if (rec.status === 'failed') {
      msg.append(el('strong', null, 'Reason: '), document.createTextNode(rec.message || 'unknown'));
    } else {
      msg.textContent = rec.message || '';
    }

    const dl = node.querySelector('.task-counters');
    const details = rec.details || rec.result || null;
    dl.replaceChildren();
    if (details && typeof details === 'object') {
      for (const [key, label] of COUNTERS) {
        if (typeof details[key] !== 'number') continue;
        const item = el('div', `counter counter-${key}`);
        item.append(el('dt', null, label), el('dd', null, numberFmt.format(details[key])));
        dl.append(item);
      }
    }
    dl.hidden = !dl.children.length;

    const time = node.querySelector('.task-time');
    const created = Date.parse(rec.created);
    time.dateTime = rec.created || '';
    let when = isFinite(created) ? timeFmt.format(new Date(created)) : '';
    if (TERMINAL.has(rec.status)) {
      const d = duration(rec);
      if (d) when += ` · took ${d}`;
    }
    time.textContent = when;

    const cancel = node.querySelector('.task-cancel');
    cancel.hidden = status !== 'running' && status !== 'queued';
    cancel.setAttribute('aria-label', `Cancel ${kind} ${taskTarget(rec)}`);
  }

  /**
   * A task run on behalf of another one that is shown (a clone's disk copy, whose progress
   * its clone task passes on): no card of its own, the parent's says it all.
   */
  function shownInParent(rec) {
    const parent = rec.params && rec.params.parent;
    const p = typeof parent === 'string' ? state.tasks.get(parent) : null;
    return !!(p && !p.stub);
  }

  function placeTask(t) {
    const list = $('task-list');
    if (t.el && t.el.parentNode === list) return;
    // newest first, by creation time
    const after = [...list.children].find((c) => {
      const other = state.tasks.get(c.dataset.taskId);
      return other && other.rec.created < t.rec.created;
    });
    list.insertBefore(t.el, after || null);
  }

  function trimTasks() {
    if (state.tasks.size <= MAX_TASKS) return;
    const ended = [...state.tasks.values()].filter((t) => TERMINAL.has(t.rec.status))
      .sort((a, b) => (a.rec.created < b.rec.created ? -1 : 1));
    while (state.tasks.size > MAX_TASKS && ended.length) {
      const t = ended.shift();
      state.tasks.delete(t.rec.id);
      if (t.el) t.el.remove();
    }
  }

  function updateTaskSummary() {
    for (const t of state.tasks.values()) if (t.el) t.el.hidden = shownInParent(t.rec);
    const all = [...state.tasks.values()].filter((t) => !t.stub && !shownInParent(t.rec));
    const running = all.filter((t) => !TERMINAL.has(t.rec.status)).length;
    $('task-summary').textContent = running ? `${running} running · ${all.length} shown`
      : all.length ? `None running · ${all.length} shown` : 'None';
    $('task-empty').hidden = all.length > 0;
    const badge = $('nav-running');
    badge.hidden = running === 0;
    badge.replaceChildren(String(running), el('span', 'visually-hidden', ' running'));
    updateScanControls();
  }

  /** Apply a full task record, unless it is older than what is shown. */
  function upsertTask(rec, { announceIt = true } = {}) {
    if (!rec || typeof rec.id !== 'string') return;
    let t = state.tasks.get(rec.id);
    if (t && t.stub) {
      state.tasks.delete(rec.id);
      t = null;
    }
    if (t) {
      const was = t.rec;
      if (TERMINAL.has(was.status) && !TERMINAL.has(rec.status)) return; // never goes back
      const newerEnd = TERMINAL.has(rec.status) && !TERMINAL.has(was.status);
      if (!newerEnd && rec.updated && was.updated && rec.updated < was.updated) return;
      if ((rec.attempt || 0) < (was.attempt || 0) && !newerEnd) return;
      const wasTerminal = TERMINAL.has(was.status);
      t.rec = { ...was, ...rec };
      if (TERMINAL.has(rec.status)) t.cancelling = false;
      if (announceIt && !wasTerminal && TERMINAL.has(rec.status)) {
        announce(`${KIND_LABELS[rec.kind] || rec.kind} ${taskTarget(rec)} ${rec.status}: ${rec.message || ''}`);
      }
    } else {
      t = { rec: { ...rec }, cancelling: false, el: null };
      state.tasks.set(rec.id, t);
      if (announceIt) {
        announce(`${KIND_LABELS[rec.kind] || rec.kind} ${taskTarget(rec)}: ${rec.status}`);
      }
    }
    renderTask(t);
    placeTask(t);
    trimTasks();
    updateTaskSummary();
    if (MAKES_VM.has(t.rec.kind)) queueVmRender();
    if (t.rec.kind === REPORT_KIND) {
      if (TERMINAL.has(t.rec.status)) reportTaskEnded(t.rec);
      else renderReportTasks();
    }
    if (t.rec.kind === SNAP_KIND && t.rec.params) {
      snapshotNews(t.rec.params.vm);
      if (t.rec.status === 'failed' && $('snap-dialog').open && t.rec.params.vm === state.snapVm) {
        showNameError('snap', t.rec.message || 'The snapshot could not be taken.');
      }
    }
  }

  /** A task we do not show yet (older than the listing's window): fetch it once. */
  async function fetchTask(id) {
    if (!/^[0-9a-f]{32}$/.test(id)) return;
    if (state.tasks.has(id)) return;
    const stub = { rec: { id, status: 'running', kind: '', created: '' }, stub: true, el: null };
    state.tasks.set(id, stub);
    let rec = null;
    try {
      rec = (await api('GET', `/tasks/${id}`)).data;
    } catch (e) {
      rec = null;
    }
    if (state.tasks.get(id) === stub) state.tasks.delete(id);
    if (rec) upsertTask(rec);
  }

  function taskProgress(data) {
    const t = state.tasks.get(data.id);
    if (!t) { fetchTask(data.id); return; }
    if (t.stub || TERMINAL.has(t.rec.status)) return;
    if (typeof data.attempt === 'number' && data.attempt < (t.rec.attempt || 0)) return;
    const before = t.rec.progress;
    t.rec.progress = typeof data.progress === 'number' ? data.progress : null;
    t.rec.message = data.message;
    if (data.details) t.rec.details = data.details;
    if (typeof data.attempt === 'number') t.rec.attempt = data.attempt;
    renderTask(t);
    if (MAKES_VM.has(t.rec.kind)) queueVmRender();
    if (t.rec.kind === REPORT_KIND) renderReportTasks();
    const p = t.rec.progress;
    if (typeof p === 'number' && typeof before === 'number' &&
        Math.floor(p / 25) > Math.floor(before / 25) && p < 100) {
      announce(`${KIND_LABELS[t.rec.kind] || t.rec.kind}: ${Math.round(p)}%`);
    }
  }

  function taskStarted(data) {
    const t = state.tasks.get(data.id);
    if (!t) { fetchTask(data.id); return; }
    if (t.stub || TERMINAL.has(t.rec.status)) return;
    if (typeof data.attempt === 'number' && data.attempt >= (t.rec.attempt || 0)) {
      if (data.attempt > (t.rec.attempt || 0)) t.rec.progress = null; // a new attempt
      t.rec.attempt = data.attempt;
      t.rec.worker = data.worker;
    }
    renderTask(t);
    updateTaskSummary();
  }

  // DELETE /tasks/<id> and show the answer; errors are the caller's to show.
  async function requestCancel(t, id) {
    const r = await api('DELETE', `/tasks/${id}`);
    t.cancelling = !TERMINAL.has(r.data.status);
    upsertTask(r.data, { announceIt: false });
    renderTask(t);
    updateTaskSummary();
  }

  async function cancelTask(id, button) {
    const t = state.tasks.get(id);
    if (!t || !t.el) return;
    const errEl = t.el.querySelector('.task-error');
    errEl.hidden = true;
    if (button) button.disabled = true;
    try {
      await requestCancel(t, id);
    } catch (e) {
      errEl.textContent = e.message;
      errEl.hidden = false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // -- the scan form --------------------------------------------------------------------

  function showScanError(text) {
    const e = $('scan-error');
    e.textContent = text;
    e.hidden = !text;
    $('scan-path').setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  function currentScan() {
    let t = state.scanTaskId ? state.tasks.get(state.scanTaskId) : null;
    if (!t || TERMINAL.has(t.rec.status)) {
      // adopt the newest running scan (e.g. started before a reload, or elsewhere)
      const running = [...state.tasks.values()]
        .filter((x) => !x.stub && x.rec.kind === 'iso.scan' && !TERMINAL.has(x.rec.status))
        .sort((a, b) => (a.rec.created < b.rec.created ? 1 : -1));
      if (running.length) {
        t = running[0];
        state.scanTaskId = t.rec.id;
      }
    }
    return t;
  }

  function updateScanControls() {
    const t = currentScan();
    const stop = $('stop-btn');
    const status = $('scan-status');
    const running = t && !TERMINAL.has(t.rec.status);
    stop.hidden = !running;
    if (running) {
      stop.disabled = !!t.cancelling;
      stop.lastChild.textContent = t.cancelling ? 'Stopping…' : 'Stop';
      stop.setAttribute('aria-label', `Stop the scan of ${taskTarget(t.rec)}`);
      stop.dataset.taskId = t.rec.id;
    }
    if (t) {
      status.hidden = false;
      status.dataset.status = taskStatus(t);
      const where = taskTarget(t.rec);
      if (running) {
        status.textContent = t.cancelling ? `Stopping the scan of ${where}…` : `Scanning ${where}…`;
      } else {
        const msg = t.rec.message || '';
        const said = msg && msg.toLowerCase().replace(/\.$/, '') !== t.rec.status;
        status.textContent = `Scan of ${where} ${t.rec.status}${said ? `: ${msg}` : '.'}`;
      }
    } else {
      status.hidden = true;
    }
  }

  async function startScan(ev) {
    ev.preventDefault();
    const input = $('scan-path');
    const path = input.value.trim();
    showScanError('');
    if (!path) {
      showScanError('Enter the absolute path of a folder, for example /srv/isos.');
      input.focus();
      return;
    }
    const btn = $('scan-btn');
    btn.disabled = true;
    try {
      const r = await api('POST', '/isos/scan', { path });
      state.scanTaskId = r.data.id;
      upsertTask(r.data);
    } catch (e) {
      showScanError(e.message);
      input.focus();
    } finally {
      btn.disabled = false;
    }
  }

  async function stopScan() {
    const stop = $('stop-btn');
    const id = stop.dataset.taskId;
    const t = id && state.tasks.get(id);
    if (!t) return;
    stop.disabled = true;
    try {
      await requestCancel(t, id);
    } catch (e) {
      showScanError(e.message);
      stop.disabled = false;
    }
  }

  // -- listings and the event stream -----------------------------------------------------

  /** List tasks then ISOs; the task listing's Events-Cursor is where to watch from. */
  async function list() {
    const t = await api('GET', '/tasks?limit=50');
    const cursor = t.headers.get('Events-Cursor') || '0';
    const i = await api('GET', '/isos');
    // templates and VMs are best effort: a failure there must not hide the library
    const tp = await api('GET', '/templates').then((r) => r.data, () => null);
    let vmsError = null;
    const vm = await api('GET', '/vms').then((r) => r.data, (e) => { vmsError = e.message; return null; });
    return { tasks: Array.isArray(t.data) ? t.data : [], isos: Array.isArray(i.data) ? i.data : [],
      templates: Array.isArray(tp) ? tp : null, vms: Array.isArray(vm) ? vm : null, vmsError, cursor };
  }

  function applyListing(l) {
    const listed = new Set(l.tasks.map((r) => r.id));
    for (const [id, t] of state.tasks) {
      // keep live tasks the listing window left out; drop ended ones it no longer has
      if (!listed.has(id) && (t.stub || TERMINAL.has(t.rec.status))) {
        if (t.el) t.el.remove();
        state.tasks.delete(id);
      }
    }
    for (const rec of l.tasks) upsertTask(rec, { announceIt: false });
    state.isos = new Map(l.isos.map((i) => [i.path, i]));
    state.lastId = l.cursor;
    if (l.templates) state.templates = new Map(l.templates.map((x) => [x.name, x]));
    if (l.vms) state.vms = new Map(l.vms.map((x) => [x.name, x]));
    state.vmsError = l.vms ? null : l.vmsError;
    renderTemplates();
    renderVms();
    renderIsos();
    updateTaskSummary();
  }

  async function resync() {
    state.resyncing = true;
    state.pending = [];
    try {
      applyListing(await list());
    } catch (e) {
      state.resyncing = false;
      state.pending = [];
      if (state.ws) state.ws.close(); // reconnect, which resets again, then lists again
      return;
    }
    state.resyncing = false;
    const pending = state.pending;
    state.pending = [];
    for (const ev of pending) onEvent(ev);
  }

  function onEvent(ev) {
    if (!ev || typeof ev.type !== 'string') return;
    if (ev.type === 'reset') { resync(); return; }
    if (ev.id !== null && ev.id !== undefined) {
      if (state.resyncing) { state.pending.push(ev); return; }
      const id = String(ev.id);
      if (state.seen.has(id)) return;
      if (state.lastId !== null && cmpId(id, state.lastId) <= 0) return;
      remember(id);
      state.lastId = id;
    }
    const d = ev.data || {};
    switch (ev.type) {
      case 'task.created':
      case 'task.cancelled':
        upsertTask(d);
        break;
      case 'task.finished':
        if (MAKES_VM.has(d.kind)) vmArriving(d);
        upsertTask(d);
        break;
      case 'task.failed':
        upsertTask(d);
        if (MAKES_VM.has(d.kind) && state.myCreates.has(d.id)) vmCreateFailed(d);
        break;
      case 'task.cancelling': {
        upsertTask(d, { announceIt: false });
        const t = state.tasks.get(d.id);
        if (t && !TERMINAL.has(t.rec.status)) {
          t.cancelling = true;
          renderTask(t);
          updateTaskSummary();
        }
        break;
      }
      case 'task.started':
        taskStarted(d);
        break;
      case 'task.progress':
        taskProgress(d);
        break;
      case 'iso.found':
        isoFound(d);
        break;
      case 'iso.removed':
        isoRemoved(d);
        break;
      case 'template.created':
      case 'template.updated':
        templateChanged(d, ev.type === 'template.updated');
        // a hand edit's event does not say what the template misses: ask for the full record
        if (d && d.by === 'file' && typeof d.name === 'string') refreshTemplate(d.name);
        break;
      case 'template.deleted':
        if (d && state.templates.delete(d.name)) renderTemplates();
        break;
      case 'vm.updated':
        vmUpsert(d);
        break;
      case 'vm.state':
        vmState(d);
        break;
      case 'vm.stats':
        vmStats(d);
        break;
      case 'storagepool.created':
      case 'storagepool.updated':
      case 'storagepool.deleted':
      case 'storagevolume.created':
      case 'storagevolume.updated':
      case 'storagevolume.deleted':
      case 'network.created':
      case 'network.updated':
      case 'network.deleted':
        networksSoon();
        break;
      case 'vm.created':
      case 'vm.deleted':
        poolsSoon();
        networksSoon();
        if (ev.type === 'vm.created') vmUpsert(d);
        if (ev.type === 'vm.deleted') vmGone(d);
        break;
      case 'snapshot.created':
      case 'snapshot.reverted':
      case 'snapshot.deleted':
        if (d && typeof d.vm === 'string') snapshotNews(d.vm);
        break;
      case 'host.stats':
        hostSample(d);
        break;
      case 'debugreport.updated':
      case 'debugreport.deleted':
        reportChanged(ev.type, d);
        break;
      case 'service.degraded':
        if (d.component === 'libvirt' && d.status === 'down') libvirtDown(true);
        showDegraded({
          title: `Service degraded: ${COMPONENTS[d.component] || d.component || 'a component'} is ${
            d.status || 'down'}`,
          reason: d.reason || '',
          fix: d.fix || '',
        });
        break;
      case 'service.recovered':
        if (d.component === 'libvirt') libvirtDown(false);
        clearDegraded();
        break;
      default:
        break; // not shown by this UI yet
    }
  }

  function connect() {
    if (!state.signedIn) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const since = state.lastId !== null ? `?since=${encodeURIComponent(state.lastId)}` : '';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/events${since}`);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', () => {
      if (state.ws !== ws) return;
      state.open = true;
      state.everOpen = true;
      state.backoff = BACKOFF_MIN;
      updateConn();
      checkHealth();
    });
    ws.addEventListener('message', (m) => {
      if (state.ws !== ws) return;
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      onEvent(ev);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws || !state.signedIn) return;
      state.ws = null;
      state.open = false;
      state.everOpen = true;
      updateConn();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!state.signedIn) return;
    const delay = state.backoff * (0.8 + Math.random() * 0.2);
    state.backoff = Math.min(BACKOFF_MAX, state.backoff * 2);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(reconnect, delay);
  }

  /**
   * GET /session once signed in: a 401 shows the login page; if another tab of this browser
   * signed in as someone else meanwhile (the cookie is shared), start again as them.
   */
  async function askSession() {
    const r = await api('GET', '/session');
    const who = r.data || {};
    const was = state.who;
    if (state.signedIn && was && (who.username !== was.username || who.role !== was.role)) {
      location.reload();
    }
    return who;
  }

  /**
   * Ask whether the session still holds before opening the socket again: a refused
   * handshake does not say why, and a socket outlives the session it was opened with.
   */
  async function reconnect() {
    if (!state.signedIn) return;
    try {
      await askSession();
    } catch (e) {
      if (!state.signedIn) return; // a 401: the login page is up
      if (e.status === 0) { scheduleReconnect(); return; } // kimchid is away
    }
    connect();
  }

  async function boot() {
    if (!state.signedIn) return;
    try {
      applyListing(await list());
    } catch (e) {
      if (!state.signedIn) return; // the session ended: the login page is up
      // kimchid is away: say so and retry with the same back-off as the socket
      state.everOpen = true;
      updateConn();
      $('iso-count').textContent = 'Waiting for the server…';
      const delay = state.backoff;
      state.backoff = Math.min(BACKOFF_MAX, state.backoff * 2);
      clearTimeout(state.bootTimer);
      state.bootTimer = setTimeout(boot, delay);
      return;
    }
    state.backoff = BACKOFF_MIN;
    connect();
    loadCapabilities();
    loadRoutes().then(loadDistros);
  }

  // -- pages (hash routing) ---------------------------------------------------------------

  const PAGES = ['isos', 'templates', 'vms', 'storage', 'networks', 'host', 'reports', 'tokens'];
  const ADMIN_PAGES = new Set(['reports', 'tokens']);
  const PAGE_TITLES = { isos: 'ISO library', templates: 'Templates', vms: 'Virtual machines', storage: 'Storage', networks: 'Networks', host: 'Host', reports: 'Debug reports',
    tokens: 'API tokens' };

  function route(focus) {
    const c = /^#\/console\/(.+)$/.exec(location.hash || '');
    if (c && state.signedIn) {
      let name = c[1];
      try { name = decodeURIComponent(name); } catch (e) { /* as it is */ }
      showConsole(name);
      return;
    }
    closeConsole();
    const m = /^#\/?([a-z]+)/.exec(location.hash || '');
    const page = m && PAGES.includes(m[1]) && (isAdmin() || !ADMIN_PAGES.has(m[1])) ? m[1] : 'isos';
    for (const p of PAGES) {
      $(p).hidden = p !== page;
      const link = $(`nav-${p}`);
      if (p === page) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = `${PAGE_TITLES[page]} · kimchi`;
    if (focus) {
      $('main').focus({ preventScroll: true });
      window.scrollTo({ top: 0 });
    }
    if (page === 'vms') thumbSoon();
    if (page === 'tokens' && state.signedIn) loadTokens();
    if (page === 'reports' && state.signedIn) loadReports();
    if (page === 'host' && state.signedIn) loadHost();
    if (page === 'storage' && state.signedIn) loadPools();
    if (page === 'networks' && state.signedIn) { loadNetworks(); if (isAdmin()) loadInterfaces(); }
  }

  // -- templates -------------------------------------------------------------------------

  function memText(mib) {
    if (typeof mib !== 'number' || !isFinite(mib)) return '—';
    return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${numberFmt.format(mib)} MiB`;
  }

  function invalidText(inv) {
    if (!inv || typeof inv !== 'object') return [];
    const out = [];
    const list = (v) => (Array.isArray(v) ? v : [v]).map(String);
    for (const [key, v] of Object.entries(inv)) {
      if (key === 'cdrom') out.push(list(v).length > 1 ? `${list(v).length} ISOs missing` : 'ISO missing');
      else if (key === 'networks') for (const n of list(v)) out.push(`network ${n} missing`);
      else if (key === 'storagepools') for (const n of list(v)) out.push(`storage pool ${n} missing`);
      else if (key === 'file') out.push(`file unreadable: ${list(v).join(', ')}`);
      else out.push(`${key}: ${list(v).join(', ')}`);
    }
    return out;
  }

  function fillIsoSelect() {
    const sel = $('tmpl-iso');
    const want = sel.value || $('tmpl-path').value.trim();
    const isos = [...state.isos.values()].sort((a, b) => collator.compare(a.name || '', b.name || ''));
    const opts = [el('option', null, isos.length ? 'Choose an ISO…' : 'No ISO in the library yet')];
    opts[0].value = '';
    for (const iso of isos) {
      const o = el('option', null, `${iso.name} — ${distroText(iso)}`);
      o.value = iso.path;
      o.title = iso.path;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = state.isos.has(want) ? want : '';
  }

  function prefillTemplate(path) {
    location.hash = '#/templates';
    fillIsoSelect();
    $('tmpl-iso').value = state.isos.has(path) ? path : '';
    $('tmpl-path').value = path;
    showTmplError('');
    $('tmpl-name').focus();
  }

  function showTmplError(text) {
    const e = $('tmpl-error');
    e.textContent = text;
    e.hidden = !text;
    $('tmpl-path').setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async function createTemplate(ev) {
    ev.preventDefault();
    showTmplError('');
    const path = $('tmpl-path').value.trim() || $('tmpl-iso').value;
    if (!path) {
      showTmplError('Choose an ISO of the library or enter the path of one.');
      $('tmpl-iso').focus();
      return;
    }
    const body = { source_media: { type: 'disk', path } };
    const name = $('tmpl-name').value.trim();
    if (name) body.name = name;
    const mem = $('tmpl-memory').value.trim();
    if (mem) {
      const n = Number(mem);
      if (!Number.isInteger(n) || n < 64) { showTmplError('Memory is a whole number of MiB, at least 64.'); return; }
      body.memory = { current: n, maxmemory: n }; // as the OS defaults: no hot-plug room
    }
    const cpus = $('tmpl-vcpus').value.trim();
    if (cpus) {
      const n = Number(cpus);
      if (!Number.isInteger(n) || n < 1) { showTmplError('vCPUs is a whole number, at least 1.'); return; }
      body.cpu_info = { vcpus: n, maxvcpus: n };
    }
    const btn = $('tmpl-create');
    btn.disabled = true;
    try {
      const r = await api('POST', '/templates', body);
      templateChanged(r.data, false);
      announce(`Template ${r.data.name} created`);
      for (const id of ['tmpl-name', 'tmpl-memory', 'tmpl-vcpus', 'tmpl-path']) $(id).value = '';
      $('tmpl-iso').value = '';
    } catch (e) {
      showTmplError(e.message);
      $('tmpl-path').focus();
    } finally {
      btn.disabled = false;
    }
  }

  function templateChanged(t, updated) {
    if (!t || typeof t.name !== 'string') return;
    if (updated && t.previous && t.previous !== t.name) state.templates.delete(t.previous);
    const rec = { ...t };
    delete rec.previous;
    delete rec.by;
    state.templates.set(rec.name, rec);
    renderTemplates();
  }

  async function refreshTemplate(name) {
    try {
      const r = await api('GET', `/templates/${encodeURIComponent(name)}`);
      if (state.templates.has(name)) templateChanged(r.data, false);
    } catch (e) {
      // deleted meanwhile: its event follows
    }
  }

  function rowError(name, text) {
    if (text) state.rowErrors.set(name, text);
    else state.rowErrors.delete(name);
    renderTemplates();
  }

  async function cloneTemplate(name, btn) {
    btn.disabled = true;
    try {
      const r = await api('POST', `/templates/${encodeURIComponent(name)}/clone`);
      state.rowErrors.delete(name);
      templateChanged(r.data, false);
      announce(`Template ${name} cloned as ${r.data.name}`);
    } catch (e) {
      rowError(name, e.message);
    } finally {
      btn.disabled = false;
    }
  }

  async function renameTemplate(name, input) {
    const to = input.value.trim();
    if (!to || to === name) { state.renaming = null; rowError(name, ''); return; }
    input.disabled = true;
    try {
      const r = await api('PUT', `/templates/${encodeURIComponent(name)}`, { name: to });
      state.renaming = null;
      state.rowErrors.delete(name);
      state.templates.delete(name);
      if (r.data && r.data.name) templateChanged(r.data, false);
      else renderTemplates();
      announce(`Template ${name} renamed to ${to}`);
    } catch (e) {
      input.disabled = false;
      rowError(name, e.message);
    }
  }

  /**
   * The one confirmation dialog: ``run`` does the work (its error is shown in the dialog,
   * which stays open); ``back`` gives the element to focus once the dialog has closed.
   */
  function askConfirm({ title, text, extra = null, ok = 'Delete', run, back }) {
    state.confirm = { run, back };
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-extra').replaceChildren(...(extra ? [extra] : []));
    $('confirm-error').hidden = true;
    $('confirm-ok').textContent = ok;
    $('confirm-ok').disabled = false;
    $('confirm-dialog').showModal();
    $('confirm-cancel').focus();
  }

  async function runConfirm() {
    const c = state.confirm;
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

  function onConfirmClose() {
    const c = state.confirm;
    state.confirm = null;
    const target = c && c.back ? c.back() : null;
    if (target) target.focus();
  }

  function askDelete(name) {
    askConfirm({
      title: 'Delete template?',
      text: `The template “${name}” will be deleted. Virtual machines made from it are not affected.`,
      run: async () => {
        await api('DELETE', `/templates/${encodeURIComponent(name)}`);
        state.templates.delete(name);
        state.rowErrors.delete(name);
        renderTemplates();
        announce(`Template ${name} deleted`);
      },
      back: () => document.querySelector(`#tmpl-rows tr[data-name="${CSS.escape(name)}"] .tmpl-delete`),
    });
  }

  function actionButton(text, cls, label, fn) {
    const b = el('button', `btn btn-small ${cls}`, text);
    b.type = 'button';
    b.setAttribute('aria-label', label);
    b.addEventListener('click', () => fn(b));
    return b;
  }

  function templateRow(t) {
    const tr = el('tr');
    tr.dataset.name = t.name;
    const problems = invalidText(t.invalid);
    if (problems.length) tr.classList.add('row-invalid');

    const name = el('td', 'cell-name');
    if (state.renaming === t.name) {
      const f = el('form', 'rename-form');
      const input = el('input', 'input');
      input.type = 'text';
      input.value = t.name;
      input.setAttribute('aria-label', `New name for ${t.name}`);
      input.spellcheck = false;
      const save = el('button', 'btn btn-small btn-primary', 'Save');
      save.type = 'submit';
      const cancel = el('button', 'btn btn-small btn-plain', 'Cancel');
      cancel.type = 'button';
      cancel.addEventListener('click', () => { state.renaming = null; rowError(t.name, ''); });
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Escape') { state.renaming = null; rowError(t.name, ''); }
      });
      f.addEventListener('submit', (e) => { e.preventDefault(); renameTemplate(t.name, input); });
      f.append(input, save, cancel);
      name.append(f);
      setTimeout(() => { if (input.isConnected && !input.disabled) { input.focus(); input.select(); } }, 0);
    } else {
      name.append(el('span', 'tmpl-name', t.name));
    }
    const srcText = t.source_media ? (t.source_media.type === 'netboot' ? 'network boot' : t.source_media.path || '—') : '—';
    const src = el('span', 'tmpl-src mono');
    const bdi = el('bdi', null, srcText);
    bdi.dir = 'ltr';
    src.append(bdi);
    src.title = `Source: ${srcText}`;
    name.append(src);
    if (problems.length) {
      const chip = el('span', 'chip-invalid', problems.join(' · '));
      const missing = t.invalid && t.invalid.cdrom ? [].concat(t.invalid.cdrom).map((p) => `\nmissing ISO: ${p}`).join('') : '';
      chip.title = `A VM made from this template now would fail: ${problems.join('; ')}${missing}`;
      name.append(chip);
    }
    const err = state.rowErrors.get(t.name);
    if (err) name.append(el('p', 'row-error', err));

    const os = el('td', 'tmpl-os');
    const d = t.os_distro || 'unknown';
    const chip = el('span', `distro distro-${/^[a-z0-9-]+$/.test(d) ? d : 'other'}`);
    chip.append(el('span', 'distro-name', d));
    if (t.os_version && t.os_version !== 'unknown') {
      chip.append(document.createTextNode(' '), el('span', 'distro-ver', t.os_version));
    }
    os.append(chip);
    const mem = el('td', 'num', memText(t.memory && t.memory.current));
    const cpus = el('td', 'num', t.cpu_info && t.cpu_info.vcpus ? t.cpu_info.vcpus : '—');
    const disks = Array.isArray(t.disks) ? t.disks : [];
    const total = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
    const disk = el('td', 'num', disks.length ? `${total} GB` : '—');
    if (disks.length) disk.title = disks.map((x) => `${x.size} GB ${x.format || ''} on ${x.pool && x.pool.name ? x.pool.name : '?'}`).join('\n');
    const nets = el('td', null, Array.isArray(t.networks) && t.networks.length ? t.networks.join(', ') : 'none');
    const act = el('td', 'cell-actions');
    if (isAdmin()) {
      act.append(
        actionButton('Clone', 'btn-plain', `Clone ${t.name}`, (b) => cloneTemplate(t.name, b)),
        actionButton('Rename', 'btn-plain', `Rename ${t.name}`, () => {
          state.renaming = t.name;
          rowError(t.name, '');
        }),
        actionButton('Delete', 'btn-danger-outline tmpl-delete', `Delete ${t.name}`, () => askDelete(t.name)),
      );
    }
    tr.append(name, os, mem, cpus, disk, nets, act);
    return tr;
  }

  function renderTemplates() {
    const all = [...state.templates.values()].sort((a, b) => collator.compare(a.name, b.name));
    const active = document.activeElement;
    const keep = active && active.closest && active.closest('#tmpl-rows .rename-form') ? active : null;
    if (keep && state.renaming) {
      // do not rebuild the row being typed in; refresh the others around it
      const rows = $('tmpl-rows');
      for (const tr of [...rows.children]) if (tr.dataset.name !== state.renaming) tr.remove();
      const editing = rows.firstElementChild;
      for (const t of all) {
        if (t.name === state.renaming) continue;
        const tr = templateRow(t);
        if (editing && collator.compare(t.name, state.renaming) < 0) rows.insertBefore(tr, editing);
        else rows.append(tr);
      }
    } else {
      $('tmpl-rows').replaceChildren(...all.map(templateRow));
    }
    $('tmpl-empty').hidden = all.length > 0;
    const n = all.length;
    const bad = all.filter((t) => invalidText(t.invalid).length).length;
    $('tmpl-count').textContent = `${numberFmt.format(n)} ${n === 1 ? 'template' : 'templates'}${bad ? ` · ${bad} invalid` : ''}`;
    const badge = $('nav-tmpl-count');
    badge.hidden = n === 0;
    badge.textContent = String(n);
    refreshPicks();
  }

  // -- virtual machines --------------------------------------------------------------------
  //
  // One <li> per VM, made once and then changed in place (state, actions, stats, screen),
  // so a refresh never loses the focus or the thumbnail. Running vm.create and vm.clone
  // tasks show as rows of their own until their VM appears.

  const STATE_TEXT = { running: 'Running', paused: 'Paused', shutoff: 'Shut off', shutdown: 'Shutting down',
    crashed: 'Crashed', blocked: 'Blocked', pmsuspended: 'Suspended', nostate: 'No state' };

  // action -> [button text, the states that offer it, what the row says while it runs]
  const VM_ACTIONS = [
    ['start', 'Start', ['shutoff', 'crashed'], 'Starting…'],
    ['shutdown', 'Shut down', ['running'], 'Shutting down…'],
    ['poweroff', 'Power off', ['running', 'paused', 'blocked', 'pmsuspended', 'shutdown'], 'Powering off…'],
    ['reset', 'Reset', ['running'], 'Resetting…'],
    ['suspend', 'Pause', ['running'], 'Pausing…'],
    ['resume', 'Resume', ['paused'], 'Resuming…'],
  ];
  const BUSY_TEXT = { ...Object.fromEntries(VM_ACTIONS.map((a) => [a[0], a[3]])), delete: 'Deleting…' };
  const THUMB_EVERY = 5000; // ms between two screenshots of one VM (the server keeps one 3 s)
  const THUMB_PARALLEL = 4;

  const vmPath = (name) => `/vms/${encodeURIComponent(name)}`;

  function kibRate(kib) {
    return typeof kib === 'number' && isFinite(kib) ? `${humanSize(Math.round(kib * 1024))}/s` : '—';
  }

  function pct(v) {
    return typeof v === 'number' && isFinite(v) ? `${Math.round(v)} %` : '—';
  }

  function vmMatches(vm, q) {
    if (!q) return true;
    const hay = [vm.name, vm.state, STATE_TEXT[vm.state] || '', vm.uuid,
      ...(isAdmin() ? [...namesOf(vm.users), ...namesOf(vm.groups)] : [])].join(' ').toLowerCase();
    return q.split(/\s+/).every((w) => hay.includes(w));
  }

  function buildVmItem(name) {
    const li = $('vm-template').content.firstElementChild.cloneNode(true);
    const item = {
      li,
      name,
      shot: li.querySelector('.vm-shot'),
      off: li.querySelector('.vm-shot-off'),
      chip: li.querySelector('.state'),
      error: li.querySelector('.vm-error'),
      stats: li.querySelector('.vm-stats'),
      buttons: new Map(),
      hasShot: false,
    };
    li.dataset.name = name;
    li.querySelector('.vm-name').textContent = name;
    item.shot.alt = `Screen of ${name}`;
    const bar = li.querySelector('.vm-actions');
    const add = (key, text, cls, fn) => {
      const b = actionButton(text, cls, `${text} ${name}`, fn);
      b.dataset.action = key;
      item.buttons.set(key, b);
      bar.append(b);
    };
    add('console', 'Console', 'btn-plain', () => { location.hash = `#/console/${encodeURIComponent(name)}`; });
    for (const [key, text] of VM_ACTIONS) add(key, text, 'btn-plain', (b) => vmAction(name, key, b));
    add('edit', 'Edit', 'btn-plain', () => openEdit(name));
    add('clone', 'Clone', 'btn-plain', () => openClone(name));
    add('delete', 'Delete', 'btn-danger-outline', () => askDeleteVm(name));
    // who may use the VM: beside its assignment, apart from the power actions
    item.access = actionButton('Access', 'btn-plain btn-access', `Access to ${name}`, () => openAccess(name));
    item.snapshots = actionButton('Snapshots', 'btn-plain btn-snapshots', `Snapshots of ${name}`,
      () => openSnapshots(name));
    item.devices = actionButton('Devices', 'btn-plain btn-devices', `Devices of ${name}`,
      () => openDevices(name));
    item.accessText = li.querySelector('.vm-access-text');
    li.querySelector('.vm-access').append(item.access, item.snapshots, item.devices);
    item.shot.addEventListener('load', () => {
      item.hasShot = true;
      updateThumb(item, state.vms.get(name));
    });
    thumbObserver.observe(li);
    return item;
  }

  function updateThumb(item, vm) {
    const running = vm && vm.state === 'running';
    const shown = running && item.hasShot;
    // a paused VM keeps its last screen, dimmed; a stopped one has none
    if (vm && !running && vm.state !== 'paused' && item.hasShot) {
      item.hasShot = false;
      item.shot.removeAttribute('src');
    }
    item.shot.hidden = !(shown || (vm && vm.state === 'paused' && item.hasShot));
    item.li.classList.toggle('vm-frozen', !!(vm && vm.state === 'paused' && item.hasShot));
    item.off.hidden = shown;
    item.off.textContent = !vm ? '' : running ? (item.noScreen ? 'Running: no screen to show' : 'Loading the screen…')
      : `${STATE_TEXT[vm.state] || vm.state}${vm.state === 'paused' ? '' : ': no screen'}`;
  }

  function updateStats(item, vm) {
    const s = vm && vm.state === 'running' && vm.stats && typeof vm.stats === 'object' ? vm.stats : null;
    item.stats.hidden = !s;
    if (!s) return;
    const set = (cls, text, value) => {
      const box = item.stats.querySelector(`.${cls}`);
      box.querySelector('.stat-val').textContent = text;
      const m = box.querySelector('meter');
      if (m) m.value = typeof value === 'number' && isFinite(value) ? Math.max(0, Math.min(100, value)) : 0;
    };
    set('stat-cpu', pct(s.cpu_utilization), s.cpu_utilization);
    set('stat-mem', pct(s.mem_utilization), s.mem_utilization);
    set('stat-io', kibRate(s.io_throughput));
    set('stat-net', kibRate(s.net_throughput));
  }

  /** The running clone task copying this VM, if any: the VM cannot start meanwhile. */
  function cloneOf(vm) {
    for (const t of state.tasks.values()) {
      const r = t.rec;
      if (t.stub || r.kind !== 'vm.clone' || TERMINAL.has(r.status) || !r.params) continue;
      if (vm.uuid ? r.params.source_uuid === vm.uuid : r.params.source === vm.name) return r;
    }
    return null;
  }

  // who may do what to a VM in a given state, beyond the state machine of VM_ACTIONS:
  // editing, cloning and deleting are for admins; users operate the VMs assigned to them
  const VM_ADMIN_ACTIONS = {
    edit: (st) => st === 'shutoff' && offers('/vms/{name}', 'put'),
    clone: (st) => st === 'shutoff' && offers('/vms/{name}/clone', 'post'),
    delete: () => true,
  };

  function updateVmItem(item, vm) {
    const li = item.li;
    const st = vm.state || 'nostate';
    const busy = state.vmBusy.get(vm.name);
    const copied = cloneOf(vm);
    li.dataset.state = st;
    li.setAttribute('aria-busy', busy ? 'true' : 'false');
    item.chip.className = `state state-${/^[a-z]+$/.test(st) ? st : 'unknown'}`;
    item.chip.textContent = busy ? BUSY_TEXT[busy] || busy
      : copied ? 'Being cloned' : STATE_TEXT[st] || st;
    li.querySelector('.vm-cpus').textContent = typeof vm.cpus === 'number'
      ? `${vm.cpus} ${vm.cpus === 1 ? 'vCPU' : 'vCPUs'}` : '— vCPUs';
    li.querySelector('.vm-mem').textContent = memText(vm.memory && vm.memory.current);
    li.querySelector('.vm-uuid').textContent = vm.uuid || '';
    const down = !!state.libvirtDown;
    for (const [key, b] of item.buttons) {
      const admin = VM_ADMIN_ACTIONS[key];
      b.hidden = key === 'console' ? !canConsole(vm)
        : admin ? !isAdmin() || !admin(st)
          : !VM_ACTIONS.find((a) => a[0] === key)[2].includes(st);
      // the server refuses to start (or clone again) a VM while its disks are being copied
      const held = !!copied && (key === 'start' || key === 'clone');
      b.disabled = !!busy || down || held;
      b.title = held ? `Its disks are being copied for ${vmNameOf(copied)}` : '';
    }
    item.accessText.textContent = accessText(vm);
    item.access.hidden = !isAdmin() || !offers('/vms/{name}', 'put');
    item.access.disabled = down;
    item.snapshots.hidden = !isAdmin() || !offers('/vms/{name}/snapshots', 'post');
    item.snapshots.disabled = down;
    item.devices.hidden = !isAdmin() || !offers('/vms/{name}/storages', 'post');
    item.devices.disabled = down;
    const err = state.vmErrors.get(vm.name);
    item.error.textContent = err || '';
    item.error.hidden = !err;
    item.li.classList.toggle('no-thumb', state.caps !== null && !state.caps.screenshot);
    updateThumb(item, vm);
    updateStats(item, vm);
  }

  /** The VMs a vm.create or vm.clone task is making, until they show up: name -> task. */
  function vmsBeingMade() {
    const out = new Map();
    for (const t of state.tasks.values()) {
      const r = t.rec;
      if (t.stub || !MAKES_VM.has(r.kind) || TERMINAL.has(r.status)) continue;
      const name = vmNameOf(r);
      if (name && !state.vms.has(name)) out.set(name, r);
    }
    for (const [name, r] of state.vmArriving) if (!state.vms.has(name)) out.set(name, r);
    return out;
  }

  /** A VM's task finished: its row stays until vm.created (a moment later) says so. */
  function vmArriving(rec) {
    const name = vmNameOf(rec);
    if (!name || state.vms.has(name)) return;
    state.vmArriving.set(name, rec);
    setTimeout(() => {
      if (state.vmArriving.get(name) === rec) {
        state.vmArriving.delete(name);
        queueVmRender();
      }
    }, 10000);
  }

  function vmNameOf(rec) {
    const m = /^\/vms\/([^/]+)$/.exec(rec.target_uri || '');
    if (m) {
      try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
    }
    return rec.params && typeof rec.params.name === 'string' ? rec.params.name : '';
  }

  function pendingItem(name, rec) {
    let item = state.vmPending.get(name);
    if (!item) {
      const li = el('li', 'vm vm-pending');
      li.dataset.name = name;
      li.dataset.state = 'creating';
      li.setAttribute('aria-busy', 'true');
      const thumb = el('div', 'vm-thumb');
      thumb.append(el('span', 'vm-shot-off', 'Being made'));
      const main = el('div', 'vm-main');
      const head = el('div', 'vm-head');
      head.append(el('h3', 'vm-name', name), el('span', 'state state-creating', 'Creating'));
      const bar = el('progress', 'bar');
      bar.max = 100;
      bar.setAttribute('aria-label', `Making ${name}`);
      main.append(head, bar, el('p', 'vm-spec vm-pending-msg'));
      li.append(thumb, main);
      item = { li, bar, msg: main.querySelector('.vm-pending-msg') };
      state.vmPending.set(name, item);
    }
    if (typeof rec.progress === 'number') item.bar.value = rec.progress;
    else item.bar.removeAttribute('value');
    const p = rec.params || {};
    item.msg.textContent = rec.message || (p.template ? `From the template ${p.template}`
      : p.source ? `A copy of ${p.source}` : '');
    return item.li;
  }

  function renderVms() {
    state.vmRenderQueued = false;
    const all = [...state.vms.values()].sort((a, b) => collator.compare(a.name, b.name));
    const q = state.vmFilter.trim().toLowerCase();
    const shown = all.filter((v) => vmMatches(v, q));
    const making = vmsBeingMade();
    const nodes = [];
    for (const [name, rec] of [...making].sort((a, b) => collator.compare(a[0], b[0]))) {
      nodes.push(pendingItem(name, rec));
    }
    for (const name of state.vmPending.keys()) if (!making.has(name)) state.vmPending.delete(name);
    for (const vm of shown) {
      let item = state.vmItems.get(vm.name);
      if (!item) {
        item = buildVmItem(vm.name);
        state.vmItems.set(vm.name, item);
      }
      updateVmItem(item, vm);
      if (vm.flash) {
        delete vm.flash;
        item.li.classList.remove('row-flash');
        void item.li.offsetWidth; // restart the animation
        item.li.classList.add('row-flash');
      }
      nodes.push(item.li);
    }
    for (const [name, item] of state.vmItems) {
      if (!state.vms.has(name)) {
        thumbObserver.unobserve(item.li);
        abortThumb(name);
        state.vmItems.delete(name);
        state.vmVisible.delete(name);
      }
    }
    // put the nodes in order moving as few as possible: a focused button keeps its focus
    const list = $('vm-list');
    nodes.forEach((node, i) => {
      if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
    });
    while (list.children.length > nodes.length) list.lastElementChild.remove();

    const empty = $('vm-empty');
    if (state.vmsError && !all.length) {
      $('vm-empty-text').textContent = `The virtual machines cannot be listed: ${state.vmsError}`;
      empty.hidden = false;
    } else if (!all.length && !making.size) {
      $('vm-empty-text').textContent = isAdmin()
        ? 'No virtual machines on this host. Make one from a template with “New VM”.'
        : 'No virtual machine is assigned to you.';
      empty.hidden = false;
    } else if (!shown.length && !making.size) {
      $('vm-empty-text').textContent = `No virtual machine matches “${state.vmFilter.trim()}”.`;
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
    const running = all.filter((v) => v.state === 'running').length;
    const total = `${numberFmt.format(all.length)} ${all.length === 1 ? 'guest' : 'guests'}`;
    $('vm-count').textContent = state.vmsError && !all.length ? 'Unavailable'
      : `${shown.length === all.length ? total : `${numberFmt.format(shown.length)} of ${total}`} · ${running} running`;
    const badge = $('nav-vm-count');
    badge.hidden = all.length === 0;
    badge.textContent = String(all.length);
    $('vm-new').disabled = !!state.libvirtDown;
    $('vm-new').hidden = !offers('/vms', 'post') || !isAdmin();
    thumbSoon();
  }

  function queueVmRender() {
    if (state.vmRenderQueued) return;
    state.vmRenderQueued = true;
    requestAnimationFrame(renderVms);
  }

  /** Take a VM (whole, or a part of one: a vm.state event) into the list. */
  function vmUpsert(vm, { flash = true } = {}) {
    if (!vm || typeof vm.name !== 'string') return;
    // a VM renamed elsewhere comes back under its new name with the same UUID
    if (vm.uuid) {
      for (const [name, other] of state.vms) {
        if (name !== vm.name && other.uuid === vm.uuid) state.vms.delete(name);
      }
    }
    const old = state.vms.get(vm.name) || {};
    const rec = { ...old, ...vm };
    delete rec.previous;
    if (rec.state !== 'running') delete rec.stats;
    rec.flash = flash && old.state !== rec.state;
    state.vms.set(rec.name, rec);
    state.vmArriving.delete(rec.name);
    queueVmRender();
  }

  async function vmState(d) {
    if (!d || typeof d.name !== 'string') return;
    if (state.vms.has(d.name)) {
      const was = state.vms.get(d.name).state;
      vmUpsert(d);
      if (was !== d.state) announce(`${d.name}: ${STATE_TEXT[d.state] || d.state}`);
      return;
    }
    try {
      vmUpsert((await api('GET', vmPath(d.name))).data);
    } catch (e) {
      // gone again: the vm.deleted event follows
    }
  }

  function vmStats(d) {
    const all = d && d.vms && typeof d.vms === 'object' ? d.vms : {};
    for (const [name, s] of Object.entries(all)) {
      const vm = state.vms.get(name);
      if (!vm || vm.state !== 'running') continue;
      vm.stats = s;
      const item = state.vmItems.get(name);
      if (item) updateStats(item, vm);
    }
  }

  function vmGone(d) {
    if (!d || typeof d.name !== 'string') return;
    state.vmErrors.delete(d.name);
    if (state.vms.delete(d.name)) {
      announce(`${d.name} deleted`);
      queueVmRender();
    }
  }

  function focusAfter(item, button) {
    // the clicked button may now be hidden (Start becomes Shut down): stay in the row
    if (document.activeElement !== document.body && document.activeElement !== button) return;
    const next = button && !button.hidden && !button.disabled ? button
      : [...item.buttons.values()].find((b) => !b.hidden && !b.disabled);
    if (next) next.focus();
  }

  async function vmAction(name, action, button) {
    if (state.vmBusy.has(name)) return;
    state.vmBusy.set(name, action);
    state.vmErrors.delete(name);
    abortThumb(name); // its screen may be gone when the answer comes
    renderVms();
    try {
      const r = await api('POST', `${vmPath(name)}/${action}`);
      vmUpsert(r.data);
    } catch (e) {
      state.vmErrors.set(name, e.message);
      if (e.status === 404) vmGone({ name });
    } finally {
      state.vmBusy.delete(name);
      renderVms();
      const item = state.vmItems.get(name);
      if (item) focusAfter(item, button);
    }
  }

  function askDeleteVm(name) {
    const vm = state.vms.get(name);
    if (!vm) return;
    const disks = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'disk');
    const cdroms = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'cdrom');
    const extra = el('div', 'confirm-disks');
    if (disks.length) {
      extra.append(el('p', null, disks.length === 1 ? 'Its disk will be deleted too:'
        : `Its ${disks.length} disks will be deleted too:`));
      const ul = el('ul', 'path-list');
      for (const d of disks) ul.append(el('li', 'mono', d.path || `${d.dev || 'disk'} (no file)`));
      extra.append(ul);
    } else {
      extra.append(el('p', null, 'It has no disks to delete.'));
    }
    if (cdroms.length) {
      const paths = cdroms.map((d) => d.path).filter(Boolean);
      extra.append(el('p', 'kept', paths.length
        ? `CD-ROMs are kept: ${paths.join(', ')}.` : 'CD-ROMs are kept.'));
    } else {
      extra.append(el('p', 'kept', 'CD-ROM images are never deleted.'));
    }
    const running = vm.state !== 'shutoff' && vm.state !== 'crashed';
    askConfirm({
      title: 'Delete virtual machine?',
      text: `The virtual machine “${name}” will be deleted${running ? ' (it is powered off first)' : ''}.`,
      extra,
      run: async () => {
        state.vmBusy.set(name, 'delete');
        abortThumb(name);
        queueVmRender();
        try {
          await api('DELETE', vmPath(name));
        } catch (e) {
          state.vmBusy.delete(name);
          queueVmRender();
          if (e.status !== 404) throw e;
        }
        state.vmBusy.delete(name);
        vmGone({ name });
      },
      back: () => (state.vms.has(name) && state.vmItems.has(name)
        ? state.vmItems.get(name).buttons.get('delete') : $('vm-new')),
    });
  }

  // -- screens: thumbnails of the running VMs that are on screen ---------------------------

  const thumbObserver = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.name;
      if (e.isIntersecting) state.vmVisible.add(name);
      else state.vmVisible.delete(name);
    }
    thumbSoon();
  });

  /**
   * Whether someone has used the page lately. Thumbnails are the page's only requests that
   * repeat by themselves: without a pause they would keep an unattended session alive.
   */
  function userPresent() {
    return Date.now() - state.lastActivity < Math.max(60000, state.idleMs / 2);
  }

  function thumbsWanted() {
    return state.signedIn && !document.hidden && !$('vms').hidden && state.caps !== null &&
      !!state.caps.screenshot && userPresent();
  }

  function thumbSoon() {
    if (state.thumbTimer) return;
    state.thumbTimer = setTimeout(thumbTick, 50);
  }

  function thumbTick() {
    state.thumbTimer = null;
    if (!thumbsWanted()) return;
    const now = Date.now();
    let next = THUMB_EVERY;
    for (const name of state.vmVisible) {
      const vm = state.vms.get(name);
      if (!vm || vm.state !== 'running' || state.vmBusy.has(name) || state.thumbInflight.has(name)) continue;
      const due = (state.thumbLast.get(name) || 0) + THUMB_EVERY - now;
      if (due > 0) { next = Math.min(next, due); continue; }
      if (state.thumbInflight.size >= THUMB_PARALLEL) { next = Math.min(next, 200); continue; }
      fetchThumb(name);
    }
    state.thumbTimer = setTimeout(thumbTick, Math.max(next, 100));
  }

  function abortThumb(name) {
    const ac = state.thumbInflight.get(name);
    if (ac) ac.abort();
    state.thumbInflight.delete(name);
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
    state.thumbInflight.set(name, ac);
    state.thumbLast.set(name, Date.now());
    try {
      const resp = await fetch(`${vmPath(name)}/screenshot`, {
        cache: 'no-store',
        credentials: 'same-origin',
        headers: { 'X-Requested-With': 'XMLHttpRequest' },
        signal: ac.signal,
      });
      noteExpiry(resp.headers);
      if (resp.status === 401) { sessionEnded(); return; }
      const item0 = state.vmItems.get(name);
      if (!resp.ok) {
        // stopped meanwhile (404: its vm.state event follows), or no screen to take: ask
        // again later rather than every round
        if (resp.status !== 404 && item0) {
          item0.noScreen = true;
          updateThumb(item0, state.vms.get(name));
          state.thumbLast.set(name, Date.now() + 6 * THUMB_EVERY);
        }
        return;
      }
      const url = await asDataUrl(await resp.blob());
      const vm = state.vms.get(name);
      const item = state.vmItems.get(name);
      if (ac.signal.aborted || !vm || vm.state !== 'running' || !item) return;
      item.noScreen = false;
      item.shot.src = url;
    } catch (e) {
      // aborted, or the server went away: the next round tries again
    } finally {
      if (state.thumbInflight.get(name) === ac) state.thumbInflight.delete(name);
    }
  }

  /** The routes this server has (its OpenAPI description): the UI offers only those. */
  async function loadRoutes() {
    try {
      const r = await api('GET', '/openapi.json');
      state.routes = r.data && r.data.paths && typeof r.data.paths === 'object' ? r.data.paths : null;
    } catch (e) {
      state.routes = null;
    }
    queueVmRender();
  }

  function offers(path, method) {
    if (!state.routes) return path !== '/config/distros'; // unknown: the core routes are there
    const r = state.routes[path];
    return !!(r && r[method]);
  }

  async function loadCapabilities() {
    try {
      state.caps = (await api('GET', '/config/capabilities')).data || {};
    } catch (e) {
      state.caps = null; // unknown: no thumbnails until it is known
      return;
    }
    queueVmRender();
    renderReportCount();
  }

  // -- a new VM from a template --------------------------------------------------------

  /** Show (or clear, with '') a dialog's error, marking the name field it is about. */
  function showNameError(prefix, text) {
    const e = $(`${prefix}-error`);
    e.textContent = text;
    e.hidden = !text;
    $(`${prefix}-name`).setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  const showVmNewError = (text) => showNameError('vm-new', text);

  function templateSpec(t) {
    const parts = [memText(t.memory && t.memory.current)];
    const n = t.cpu_info && t.cpu_info.vcpus;
    if (n) parts.push(`${n} ${n === 1 ? 'vCPU' : 'vCPUs'}`);
    const disks = Array.isArray(t.disks) ? t.disks : [];
    const size = disks.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
    if (disks.length) parts.push(`${size} GB disk`);
    return parts.join(' · ');
  }

  function fillTemplatePicks(keep) {
    const box = $('vm-new-templates');
    const all = [...state.templates.values()].sort((a, b) => collator.compare(a.name, b.name));
    const picks = all.map((t) => {
      const problems = invalidText(t.invalid);
      const label = el('label', `pick${problems.length ? ' pick-invalid' : ''}`);
      const input = el('input');
      input.type = 'radio';
      input.name = 'vm-template';
      input.value = t.name;
      input.disabled = problems.length > 0;
      const body = el('span', 'pick-body');
      const head = el('span', 'pick-head');
      const d = t.os_distro || 'unknown';
      const chip = el('span', `distro distro-${/^[a-z0-9-]+$/.test(d) ? d : 'other'}`,
        t.os_version && t.os_version !== 'unknown' ? `${d} ${t.os_version}` : d);
      head.append(el('span', 'pick-name', t.name), chip);
      body.append(head, el('span', 'pick-spec', templateSpec(t)));
      if (problems.length) {
        body.append(el('span', 'chip-invalid', `Cannot be used: ${problems.join(' · ')}`));
      }
      label.append(input, body);
      return label;
    });
    box.replaceChildren(...picks);
    $('vm-new-none').hidden = all.length > 0;
    const usable = all.filter((t) => !invalidText(t.invalid).length).map((t) => t.name);
    const choose = usable.includes(keep) ? keep : usable[0];
    for (const input of box.querySelectorAll('input')) input.checked = input.value === choose;
    $('vm-new-create').disabled = !usable.length;
    updateNamePlaceholder();
  }

  function chosenTemplate() {
    const c = $('vm-new-templates').querySelector('input:checked');
    return c ? c.value : '';
  }

  function updateNamePlaceholder() {
    const t = chosenTemplate();
    $('vm-new-name').placeholder = t ? `${t}-vm-N` : '';
  }

  /** Templates changed while the New VM dialog is open: show them, keeping the choice. */
  function refreshPicks() {
    if (!$('vm-new-dialog').open) return;
    const had = document.activeElement && document.activeElement.name === 'vm-template';
    fillTemplatePicks(chosenTemplate());
    const again = $('vm-new-templates').querySelector('input:checked');
    if (had && again) again.focus();
  }

  async function openVmNew() {
    showVmNewError('');
    $('vm-new-name').value = '';
    fillTemplatePicks(chosenTemplate());
    $('vm-new-dialog').showModal();
    const first = $('vm-new-templates').querySelector('input:checked') || $('vm-new-cancel');
    first.focus();
    // what a template misses may have changed since the listing: ask again
    try {
      const r = await api('GET', '/templates');
      if (Array.isArray(r.data)) {
        state.templates = new Map(r.data.map((x) => [x.name, x]));
        renderTemplates();
      }
    } catch (e) {
      // keep what we have
    }
  }

  async function createVm(ev) {
    ev.preventDefault();
    showVmNewError('');
    const template = chosenTemplate();
    if (!template) {
      showVmNewError('Choose a template.');
      return;
    }
    const body = { template };
    const name = $('vm-new-name').value.trim();
    if (name) body.name = name;
    const btn = $('vm-new-create');
    btn.disabled = true;
    try {
      const r = await api('POST', '/vms', body);
      if (r.data && typeof r.data.name === 'string' && typeof r.data.id !== 'string') {
        vmUpsert(r.data); // made at once (201)
      } else {
        followVmTask(r.data);
      }
      $('vm-new-dialog').close('done');
      announce(`Making ${vmNameOf(r.data || {}) || name || `a VM from ${template}`}`);
    } catch (e) {
      showVmNewError(e.message);
      $('vm-new-name').focus();
    } finally {
      btn.disabled = false;
    }
  }

  /** A task this page started that makes a VM: in the panel, its row in the list. */
  function followVmTask(rec) {
    if (!rec || typeof rec.id !== 'string') return;
    state.myCreates.add(rec.id);
    upsertTask(rec);
    if (rec.status === 'failed') vmCreateFailed(rec);
  }

  function showVmNotice(text) {
    $('vm-notice-text').textContent = text;
    $('vm-notice').hidden = !text;
  }

  function vmCreateFailed(rec) {
    const name = vmNameOf(rec);
    showVmNotice(`The virtual machine ${name ? `“${name}” ` : ''}could not be made: ${rec.message || 'the task failed'}`);
  }

  // -- editing a VM that is shut off -----------------------------------------------------

  function showEditError(text) {
    const e = $('vm-edit-error');
    e.textContent = text;
    e.hidden = !text;
  }

  function openEdit(name) {
    const vm = state.vms.get(name);
    if (!vm) return;
    state.editing = name;
    $('vm-edit-title').textContent = `Edit ${name}`;
    $('vm-edit-name').value = name;
    $('vm-edit-memory').value = vm.memory && typeof vm.memory.current === 'number' ? vm.memory.current : '';
    $('vm-edit-cpus').value = typeof vm.cpus === 'number' ? vm.cpus : '';
    showEditError('');
    $('vm-edit-save').disabled = false;
    $('vm-edit-dialog').showModal();
    $('vm-edit-name').focus();
  }

  async function saveEdit(ev) {
    ev.preventDefault();
    const name = state.editing;
    const vm = name && state.vms.get(name);
    if (!vm) { $('vm-edit-dialog').close(); return; }
    showEditError('');
    const body = {};
    const to = $('vm-edit-name').value.trim();
    if (!to) { showEditError('A virtual machine needs a name.'); return; }
    if (to !== name) body.name = to;
    const mem = Number($('vm-edit-memory').value);
    if (!Number.isInteger(mem) || mem < 64) { showEditError('Memory is a whole number of MiB, at least 64.'); return; }
    if (!vm.memory || mem !== vm.memory.current) body.memory = { current: mem };
    const cpus = Number($('vm-edit-cpus').value);
    if (!Number.isInteger(cpus) || cpus < 1) { showEditError('vCPUs is a whole number, at least 1.'); return; }
    if (cpus !== vm.cpus) body.cpus = cpus;
    if (!Object.keys(body).length) { $('vm-edit-dialog').close(); return; }
    const btn = $('vm-edit-save');
    btn.disabled = true;
    try {
      // a rename answers 303 to the new URI, which fetch follows: the answer is the VM
      const r = await api('PUT', vmPath(name), body);
      if (body.name) state.vms.delete(name);
      if (r.data && typeof r.data.name === 'string') vmUpsert(r.data, { flash: false });
      renderVms();
      state.editing = r.data && typeof r.data.name === 'string' ? r.data.name : null;
      $('vm-edit-dialog').close('done');
      announce(`${name} saved`);
    } catch (e) {
      showEditError(e.message);
      btn.disabled = false;
    }
  }

  // -- cloning a VM that is shut off --------------------------------------------------------

  const showCloneError = (text) => showNameError('vm-clone', text);

  function openClone(name) {
    const vm = state.vms.get(name);
    if (!vm) return;
    state.cloning = name;
    $('vm-clone-title').textContent = `Clone ${name}`;
    $('vm-clone-text').textContent = 'The copy is a virtual machine of its own, shut off, with '
      + `a new UUID and new MAC addresses. ${name} cannot be started until its disks are copied.`;
    const disks = (Array.isArray(vm.disks) ? vm.disks : []).filter((d) => d && d.device === 'disk');
    const box = $('vm-clone-disks');
    box.replaceChildren();
    if (disks.length) {
      box.append(el('p', null, disks.length === 1 ? 'Its disk is copied next to it:'
        : `Its ${disks.length} disks are copied next to them:`));
      const ul = el('ul', 'path-list copy-list');
      for (const d of disks) ul.append(el('li', 'mono', d.path || `${d.dev || 'disk'} (no file)`));
      box.append(ul);
    }
    const input = $('vm-clone-name');
    input.value = '';
    input.placeholder = `${name}-clone-N`;
    showCloneError('');
    $('vm-clone-submit').disabled = false;
    $('vm-clone-dialog').showModal();
    input.focus();
  }

  async function submitClone(ev) {
    ev.preventDefault();
    const source = state.cloning;
    if (!source || !state.vms.has(source)) { $('vm-clone-dialog').close(); return; }
    showCloneError('');
    const name = $('vm-clone-name').value.trim();
    const btn = $('vm-clone-submit');
    btn.disabled = true;
    try {
      const r = await api('POST', `${vmPath(source)}/clone`, name ? { name } : {});
      followVmTask(r.data);
      $('vm-clone-dialog').close('done');
      announce(`Cloning ${source} as ${vmNameOf(r.data || {}) || name || 'a new VM'}`);
    } catch (e) {
      showCloneError(e.message);
      if (e.status === 404) vmGone({ name: source });
      $('vm-clone-name').focus();
    } finally {
      btn.disabled = false;
    }
  }

  function onCloneClose() {
    const name = state.cloning;
    state.cloning = null;
    if (!state.vms.has(name)) return; // gone, or signed out
    renderVms(); // a clone just started holds the buttons: know which are left
    const item = state.vmItems.get(name);
    if (!item) return;
    // back to Clone; while the copy holds it (or once the VM has started), to the row
    const usable = (b) => b && !b.hidden && !b.disabled;
    const back = [item.buttons.get('clone'), ...item.buttons.values()].find(usable);
    if (back) back.focus();
  }

  // -- who may use a VM (admins; any state) ---------------------------------------------------

  /** The names in a VM's ``users`` or ``groups`` (ignoring anything that is not a name). */
  function namesOf(list) {
    return Array.isArray(list) ? list.filter((n) => typeof n === 'string' && n) : [];
  }

  function accessText(vm) {
    const users = namesOf(vm.users);
    const groups = namesOf(vm.groups);
    if (!users.length && !groups.length) return 'Administrators only';
    const parts = [];
    if (users.length) parts.push(`${users.length === 1 ? 'User' : 'Users'}: ${users.join(', ')}`);
    if (groups.length) parts.push(`${groups.length === 1 ? 'Group' : 'Groups'}: ${groups.join(', ')}`);
    return parts.join(' · ');
  }

  /** "alice, bob carol" -> ["alice", "bob", "carol"]: the server judges each name. */
  function splitNames(text) {
    const out = [];
    for (const n of text.split(/[\s,]+/)) if (n && !out.includes(n)) out.push(n);
    return out;
  }

  function showAccessError(text) {
    const e = $('vm-access-error');
    e.textContent = text;
    e.hidden = !text;
    for (const id of ['vm-access-users', 'vm-access-groups']) {
      $(id).setAttribute('aria-invalid', text ? 'true' : 'false');
    }
  }

  function openAccess(name) {
    const vm = state.vms.get(name);
    if (!vm) return;
    state.accessing = name;
    $('vm-access-title').textContent = `Who may use ${name}`;
    $('vm-access-users').value = namesOf(vm.users).join(', ');
    $('vm-access-groups').value = namesOf(vm.groups).join(', ');
    showAccessError('');
    $('vm-access-save').disabled = false;
    $('vm-access-dialog').showModal();
    $('vm-access-users').focus();
    loadPrincipals();
  }

  /** The host's users and groups, offered as one-click additions to the access fields. */
  async function loadPrincipals() {
    if (!offers('/users', 'get')) return;
    try {
      const [u, g] = await Promise.all([api('GET', '/users'), api('GET', '/groups')]);
      state.principals = { users: (u.data || []).map((x) => x.name),
        groups: (g.data || []).map((x) => x.name) };
    } catch (e) {
      state.principals = { users: [], groups: [] };
    }
    renderPicks();
  }

  function renderPicks() {
    const p = state.principals || { users: [], groups: [] };
    for (const [kind, input, box] of [['users', 'vm-access-users', 'vm-access-user-picks'],
      ['groups', 'vm-access-groups', 'vm-access-group-picks']]) {
      const have = new Set(splitNames($(input).value));
      const left = p[kind].filter((n) => !have.has(n)).slice(0, 16);
      $(box).replaceChildren(...left.map((n) => {
        const b = el('button', 'btn btn-small btn-plain pick', `+ ${n}`);
        b.type = 'button';
        b.setAttribute('aria-label', `Add ${kind === 'users' ? 'user' : 'group'} ${n}`);
        b.addEventListener('click', () => {
          const now = splitNames($(input).value);
          $(input).value = [...now, n].join(', ');
          renderPicks();
          $(input).focus();
        });
        return b;
      }));
    }
  }

  async function saveAccess(ev) {
    ev.preventDefault();
    const name = state.accessing;
    if (!name || !state.vms.has(name)) { $('vm-access-dialog').close(); return; }
    showAccessError('');
    const body = { users: splitNames($('vm-access-users').value),
      groups: splitNames($('vm-access-groups').value) };
    const btn = $('vm-access-save');
    btn.disabled = true;
    try {
      const r = await api('PUT', vmPath(name), body);
      if (r.data && typeof r.data.name === 'string') vmUpsert(r.data, { flash: false });
      renderVms();
      $('vm-access-dialog').close('done');
      announce(`${name}: ${accessText(r.data || body)}`);
    } catch (e) {
      showAccessError(e.message);
      if (e.status === 404) vmGone({ name });
      btn.disabled = false;
      $('vm-access-users').focus();
    }
  }

  function onAccessClose() {
    const item = state.vms.has(state.accessing) && state.vmItems.get(state.accessing);
    state.accessing = null;
    if (item && !item.access.hidden) item.access.focus();
  }

  // -- API tokens (admins) ---------------------------------------------------------------------

  function whenText(iso) {
    const t = Date.parse(iso);
    return isFinite(t) ? dateTimeFmt.format(t) : '—';
  }

  const listingsAsked = {}; // state key -> GETs sent ...
  const listingsShown = {}; // ... and the newest one taken

  /** GET a listing into state[key] (why it failed into state[key + 'Error']). Answers may
   * come out of order: one asked for earlier never overwrites a later one. Whether this
   * answer was taken (then render). */
  async function fetchListing(key, path) {
    const seq = (listingsAsked[key] = (listingsAsked[key] || 0) + 1);
    const stale = () => seq < (listingsShown[key] || 0);
    try {
      const r = await api('GET', path);
      if (stale()) return false;
      state[key] = Array.isArray(r.data) ? r.data : [];
      state[`${key}Error`] = '';
    } catch (e) {
      if (!state.signedIn || stale()) return false;
      state[`${key}Error`] = e.message;
    }
    listingsShown[key] = seq;
    return true;
  }

  async function loadTokens() {
    if (isAdmin() && await fetchListing('tokens', '/tokens')) renderTokens();
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
      t.expires ? whenText(t.expires) : 'Never');
    if (t.expires) expires.title = t.expires;
    tr.append(expires);
    const actions = el('td', 'actions');
    actions.append(actionButton('Revoke', 'btn-danger-outline token-revoke',
      `Revoke token ${t.name} of ${t.username}`, () => askRevoke(t)));
    tr.append(actions);
    return tr;
  }

  function renderTokens() {
    const list = state.tokens || [];
    const sorted = [...list].sort((a, b) => collator.compare(a.created || '', b.created || '')
      || collator.compare(a.id, b.id));
    $('token-rows').replaceChildren(...sorted.map(tokenRow));
    const empty = $('token-empty');
    if (state.tokensError && !list.length) {
      $('token-empty-text').textContent = `The tokens cannot be listed: ${state.tokensError}`;
      empty.hidden = false;
    } else {
      $('token-empty-text').textContent = 'No API tokens. Issue one above for a script.';
      empty.hidden = !!list.length || state.tokens === null;
    }
    $('token-count').textContent = state.tokens === null ? 'Loading…'
      : `${numberFmt.format(list.length)} ${list.length === 1 ? 'token' : 'tokens'}`;
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
      showTokenError('Give the token a name, to know later what uses it.');
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
      if (state.tokens && !state.tokens.some((x) => x.id === record.id)) state.tokens.push(record);
      renderTokens();
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
    $('token-secret-text').textContent = `Token “${t.name}” for ${t.username}, ${
      t.expires ? `valid until ${whenText(t.expires)}` : 'valid until revoked'}:`;
    $('token-value').value = t.token || '';
    $('token-copied').textContent = '';
    $('token-secret').hidden = false;
    $('token-value').focus();
    $('token-value').select();
    announce('Token issued: copy it now, it will not be shown again');
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
      note.textContent = 'Copied to the clipboard.';
    } catch (e) {
      // no clipboard access (an insecure origin, a refusal): copying the selection still works
      input.focus();
      input.select();
      note.textContent = document.execCommand('copy') ? 'Copied to the clipboard.'
        : 'The browser does not let the page copy: the token is selected, copy it with Ctrl+C.';
    }
  }

  function askRevoke(t) {
    askConfirm({
      title: 'Revoke token?',
      text: `The token “${t.name}” of ${t.username} stops working at once. Scripts using it `
        + 'will be refused. This cannot be undone.',
      ok: 'Revoke',
      run: async () => {
        try {
          await api('DELETE', `/tokens/${encodeURIComponent(t.id)}`);
        } catch (e) {
          if (e.status !== 404) throw e; // already gone (revoked elsewhere, expired)
        }
        if (state.tokens) state.tokens = state.tokens.filter((x) => x.id !== t.id);
        renderTokens();
        announce(`Token ${t.name} revoked`);
      },
      back: () => document.querySelector('#token-rows .token-revoke') || $('token-name'),
    });
  }

  /** Rebuild a table's rows keeping the keyboard where it was: the same control of the
   * same row (by its label), else that row's first button. */
  function replaceRowsKeepingFocus(tbody, rows) {
    const active = document.activeElement;
    const row = active && active.closest && active.closest(`#${tbody.id} tr`);
    const again = row ? [row.dataset.name, active.getAttribute('aria-label')] : null;
    tbody.replaceChildren(...rows);
    if (!again) return;
    const tr = [...tbody.children].find((x) => x.dataset.name === again[0]);
    const same = tr && [...tr.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === again[1]);
    const c = same || (tr && tr.querySelector('button'));
    if (c) c.focus();
  }

  // -- a VM's devices (admins) -------------------------------------------------------------------

  function showDevError(text) {
    const e = $('dev-error');
    e.textContent = text;
    e.hidden = !text;
  }

  function openDevices(name) {
    state.devVm = name;
    $('dev-title').textContent = `Devices of ${name}`;
    showDevError('');
    $('dev-path').value = '';
    $('dev-storages').replaceChildren();
    $('dev-ifaces').replaceChildren();
    // the ISOs of the library, to pick from
    $('dev-isos').replaceChildren(...[...state.isos.values()].map((i) => {
      const o = el('option');
      o.value = i.path;
      o.label = i.name;
      return o;
    }));
    $('dev-dialog').showModal();
    $('dev-kind').focus();
    loadDevices();
  }

  async function loadDevices() {
    const vm = state.devVm;
    if (!vm) return;
    try {
      const [st, ifs, nets] = await Promise.all([api('GET', `${vmPath(vm)}/storages`),
        api('GET', `${vmPath(vm)}/ifaces`), api('GET', '/networks')]);
      if (state.devVm !== vm) return;
      renderDevices(st.data || [], ifs.data || [], nets.data || []);
    } catch (e) {
      if (state.devVm === vm) showDevError(e.message);
    }
  }

  function renderDevices(storages, ifaces, nets) {
    const vm = state.devVm;
    $('dev-storages').replaceChildren(...storages.map((s) => {
      const li = el('li');
      li.dataset.dev = s.dev;
      const what = el('div', 'snap-what');
      what.append(el('span', 'snap-name', `${s.dev} · ${s.type === 'cdrom' ? 'CD-ROM' : 'disk'}`),
        el('span', 'snap-meta mono', s.path || 'no disc'));
      li.append(what);
      if (s.type === 'cdrom' && s.path) {
        li.append(actionButton('Eject', 'btn-plain dev-eject', `Eject the disc of ${s.dev}`,
          (b) => deviceCall(b, 'PUT', `${vmPath(vm)}/storages/${encodeURIComponent(s.dev)}`, { path: '' })));
      }
      li.append(actionButton('Detach', 'btn-danger-outline dev-detach', `Detach ${s.dev}`,
        (b) => deviceCall(b, 'DELETE', `${vmPath(vm)}/storages/${encodeURIComponent(s.dev)}`)));
      return li;
    }));
    $('dev-ifaces').replaceChildren(...ifaces.map((i) => {
      const li = el('li');
      li.dataset.mac = i.mac;
      const what = el('div', 'snap-what');
      what.append(el('span', 'snap-name', i.network || i.type), el('span', 'snap-meta mono', `${i.mac} · ${i.model || 'default model'}`));
      li.append(what, actionButton('Remove', 'btn-danger-outline dev-remove', `Remove interface ${i.mac}`,
        (b) => deviceCall(b, 'DELETE', `${vmPath(vm)}/ifaces/${encodeURIComponent(i.mac)}`)));
      return li;
    }));
    const sel = $('dev-network');
    const keep = sel.value;
    sel.replaceChildren(...nets.map((n) => {
      const o = el('option', null, `${n.name}${n.state === 'active' ? '' : ' (inactive)'}`);
      o.value = n.name;
      return o;
    }));
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }

  async function deviceCall(button, method, path, body) {
    showDevError('');
    if (button) button.disabled = true;
    try {
      await api(method, path, body);
      announce('Done');
    } catch (e) {
      showDevError(e.message);
      if (button) button.disabled = false;
      return false;
    }
    await loadDevices();
    return true;
  }

  async function attachStorage(ev) {
    ev.preventDefault();
    const vm = state.devVm;
    const type = $('dev-kind').value;
    const path = $('dev-path').value.trim();
    if (type === 'disk' && !path) {
      showDevError('Give the path of the disk image to attach.');
      $('dev-path').focus();
      return;
    }
    const body = { type };
    if (path) body.path = path;
    if (await deviceCall($('dev-attach'), 'POST', `${vmPath(vm)}/storages`, body)) {
      $('dev-path').value = '';
    }
    $('dev-attach').disabled = false;
  }

  async function addIface(ev) {
    ev.preventDefault();
    const vm = state.devVm;
    const network = $('dev-network').value;
    if (!network) { showDevError('There is no network to join.'); return; }
    await deviceCall($('dev-add-iface'), 'POST', `${vmPath(vm)}/ifaces`,
      { network, model: $('dev-model').value });
    $('dev-add-iface').disabled = false;
  }

  // -- snapshots (admins) ------------------------------------------------------------------------

  const SNAP_KIND = 'vm.snapshot';

  function openSnapshots(name) {
    state.snapVm = name;
    state.snaps = null;
    $('snap-title').textContent = `Snapshots of ${name}`;
    $('snap-name').value = '';
    showNameError('snap', '');
    renderSnapshots();
    $('snap-dialog').showModal();
    $('snap-name').focus();
    loadSnapshots();
  }

  async function loadSnapshots() {
    const vm = state.snapVm;
    if (!vm) return;
    try {
      const r = await api('GET', `${vmPath(vm)}/snapshots`);
      if (state.snapVm !== vm) return;
      state.snaps = Array.isArray(r.data) ? r.data : [];
    } catch (e) {
      if (state.snapVm !== vm) return;
      state.snaps = [];
      showNameError('snap', e.message);
    }
    renderSnapshots();
  }

  /** Snapshots of the open dialog's VM being taken: their tasks. */
  function snapsBeingTaken() {
    return [...state.tasks.values()].filter((t) => !t.stub && t.rec.kind === SNAP_KIND
      && !TERMINAL.has(t.rec.status) && t.rec.params && t.rec.params.vm === state.snapVm)
      .map((t) => t.rec);
  }

  function renderSnapshots() {
    const list = state.snaps || [];
    const items = list.map((sn) => {
      const li = el('li', sn.current ? 'is-current' : null);
      li.dataset.name = sn.name;
      const what = el('div', 'snap-what');
      what.append(el('span', 'snap-name', sn.name));
      const meta = [whenText(sn.created), `the VM ${STATE_TEXT[sn.state] ? STATE_TEXT[sn.state].toLowerCase() : sn.state}`];
      if (sn.current) meta.push('current');
      what.append(el('span', 'snap-meta', meta.join(' · ')));
      if (sn.description) what.append(el('span', 'snap-meta', sn.description));
      li.append(what,
        actionButton('Revert', 'btn-plain snap-revert', `Revert ${state.snapVm} to ${sn.name}`, () => askRevert(sn)),
        actionButton('Delete', 'btn-danger-outline snap-delete', `Delete snapshot ${sn.name}`, () => askDeleteSnap(sn)));
      return li;
    });
    for (const rec of snapsBeingTaken()) {
      const li = el('li', 'is-taking');
      li.dataset.name = rec.params.name;
      li.setAttribute('aria-busy', 'true');
      const what = el('div', 'snap-what');
      what.append(el('span', 'snap-name', rec.params.name), el('span', 'snap-meta', rec.message || 'Being taken…'));
      li.append(what);
      items.push(li);
    }
    $('snap-list').replaceChildren(...items);
    $('snap-empty').hidden = state.snaps === null || !!items.length;
  }

  async function takeSnapshot(ev) {
    ev.preventDefault();
    const vm = state.snapVm;
    if (!vm) return;
    showNameError('snap', '');
    const name = $('snap-name').value.trim();
    if (name && (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name) || name === 'current')) {
      showNameError('snap', 'Use letters, digits, “.”, “-” and “_” (starting with a letter or digit).');
      $('snap-name').focus();
      return;
    }
    const btn = $('snap-take');
    btn.disabled = true;
    try {
      const r = await api('POST', `${vmPath(vm)}/snapshots`, name ? { name } : {});
      upsertTask(r.data);
      $('snap-name').value = '';
      announce(`Taking snapshot ${(r.data.params || {}).name || name} of ${vm}`);
    } catch (e) {
      showNameError('snap', e.message);
      $('snap-name').focus();
    } finally {
      btn.disabled = false;
    }
  }

  function askRevert(sn) {
    const vm = state.snapVm;
    askConfirm({
      title: 'Revert to this snapshot?',
      text: `${vm} goes back to “${sn.name}” (${whenText(sn.created)}). What changed on its `
        + 'disks since then is lost.',
      ok: 'Revert',
      run: async () => {
        await api('POST', `${vmPath(vm)}/snapshots/${encodeURIComponent(sn.name)}/revert`);
        announce(`${vm} reverted to ${sn.name}`);
        await loadSnapshots();
      },
      back: () => document.querySelector('#snap-list .snap-revert') || $('snap-name'),
    });
  }

  function askDeleteSnap(sn) {
    const vm = state.snapVm;
    askConfirm({
      title: 'Delete snapshot?',
      text: `The snapshot “${sn.name}” of ${vm} is deleted. The VM and the other snapshots stay.`,
      run: async () => {
        try {
          await api('DELETE', `${vmPath(vm)}/snapshots/${encodeURIComponent(sn.name)}`);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        announce(`Snapshot ${sn.name} deleted`);
        await loadSnapshots();
      },
      back: () => document.querySelector('#snap-list .snap-delete') || $('snap-name'),
    });
  }

  /** A snapshot task or event about the open dialog's VM: show it. */
  function snapshotNews(vm) {
    if (!$('snap-dialog').open || vm !== state.snapVm) return;
    renderSnapshots();
    loadSnapshots();
  }

  // -- the VM console (noVNC over kimchid's own WebSocket) --------------------------------------

  /** A console is offered for a running VM with a VNC screen, when the host has noVNC. */
  function canConsole(vm) {
    return !!vm && vm.state === 'running' && !!state.caps && !!state.caps.console
      && !!vm.graphics && vm.graphics.type === 'vnc';
  }

  function consoleStatus(text, kind = 'info') {
    const st = $('console-status');
    st.textContent = text;
    st.dataset.kind = kind;
  }

  async function showConsole(name) {
    for (const p of PAGES) {
      $(p).hidden = true;
      $(`nav-${p}`).removeAttribute('aria-current');
    }
    $('console').hidden = false;
    $('console-title').textContent = `Console of ${name}`;
    document.title = `${name} · console · kimchi`;
    if (state.console && state.console.name === name) return;
    closeConsole();
    $('console').hidden = false;
    const mine = { name, rfb: null, closed: false };
    state.console = mine;
    consoleStatus('Connecting…');
    let RFB;
    try {
      ({ default: RFB } = await import('/ui/novnc/core/rfb.js'));
    } catch (e) {
      consoleStatus('The console needs noVNC on the server (apt-get install novnc).', 'error');
      return;
    }
    if (state.console !== mine) return; // left meanwhile
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const rfb = new RFB($('console-screen'), `${scheme}//${location.host}${vmPath(name)}/console`,
      { wsProtocols: ['binary'] });
    rfb.scaleViewport = true;
    rfb.background = '#111';
    rfb.addEventListener('connect', () => {
      if (state.console === mine) consoleStatus('Connected: keys and the mouse go to the VM.', 'ok');
    });
    rfb.addEventListener('disconnect', (ev) => {
      mine.closed = true; // noVNC complains when a closed one is disconnected again
      if (state.console !== mine) return;
      consoleStatus(ev.detail && ev.detail.clean ? 'Disconnected: the VM stopped or its screen went away.'
        : 'The connection was lost. Reopen the console to try again.', 'error');
    });
    mine.rfb = rfb;
  }

  function closeConsole() {
    const c = state.console;
    state.console = null;
    if (c && c.rfb && !c.closed) {
      try { c.rfb.disconnect(); } catch (e) { /* already closed */ }
    }
    $('console-screen').replaceChildren();
    $('console').hidden = true;
  }

  // -- storage pools and volumes ---------------------------------------------------------------

  async function loadPools() {
    if (!await fetchListing('pools', '/storagepools')) return;
    renderPools();
    if (state.poolChosen) loadVolumes();
  }

  function poolsSoon() {
    // a burst of storage events (a VM made, a pool changed elsewhere): one listing
    if (state.poolsTimer || $('storage').hidden) return;
    state.poolsTimer = setTimeout(() => { state.poolsTimer = null; loadPools(); }, 150);
  }

  function usedByText(u) {
    const parts = [];
    if (u && u.templates && u.templates.length) parts.push(`templates: ${u.templates.join(', ')}`);
    if (u && u.vms && u.vms.length) parts.push(`VMs: ${u.vms.join(', ')}`);
    return parts.join(' · ') || '—';
  }

  function poolRow(p) {
    const tr = el('tr', `pool-row${state.poolChosen === p.name ? ' is-chosen' : ''}`);
    tr.dataset.name = p.name;
    const name = el('td', 'cell-name');
    name.append(el('span', 'pool-name', p.name));
    const where = p.path || (p.source && p.source.host) || '';
    const path = el('span', 'pool-path mono');
    const bdi = el('bdi', null, where);
    bdi.dir = 'ltr';
    path.append(bdi);
    path.title = where;
    name.append(path);
    const st = el('td');
    st.append(el('span', `state state-${p.state === 'active' ? 'running' : 'shutoff'}`,
      p.state === 'active' ? 'Active' : p.state === 'inactive' ? 'Inactive' : p.state));
    if (p.autostart) st.append(el('span', 'help', ' autostart'));
    const space = el('td');
    if (p.state === 'active' && p.capacity) {
      const box = el('div', 'space');
      const bar = el('progress', 'bar');
      bar.max = p.capacity;
      bar.value = p.allocated;
      bar.setAttribute('aria-label', `${p.name}: ${humanSize(p.allocated)} used of ${humanSize(p.capacity)}`);
      box.append(bar, el('span', 'space-text', `${humanSize(p.available)} free of ${humanSize(p.capacity)}`));
      space.append(box);
    } else {
      space.textContent = '—';
    }
    const vols = el('td', 'num', p.state === 'active' ? String(p.nr_volumes) : '—');
    const used = el('td', null, usedByText(p.used_by));
    const act = el('td', 'cell-actions');
    if (p.state === 'active') {
      act.append(actionButton('Volumes', 'btn-plain pool-volumes', `Volumes of ${p.name}`,
        () => choosePool(p.name)));
    }
    if (isAdmin()) {
      if (p.state === 'active') {
        act.append(actionButton('Deactivate', 'btn-plain', `Deactivate ${p.name}`,
          (b) => poolAction(p.name, 'deactivate', b)));
      } else {
        act.append(actionButton('Activate', 'btn-plain', `Activate ${p.name}`,
          (b) => poolAction(p.name, 'activate', b)));
        act.append(actionButton('Delete', 'btn-danger-outline pool-delete', `Delete ${p.name}`,
          () => askDeletePool(p)));
      }
    }
    const err = state.poolErrors.get(p.name) || p.error; // its last action's, or libvirt's
    if (err) name.append(el('p', 'row-error', err));
    tr.append(name, st, space, vols, used, act);
    return tr;
  }

  function renderPools() {
    const list = state.pools || [];
    replaceRowsKeepingFocus($('pool-rows'), list.map(poolRow));
    const empty = $('pool-empty');
    if (state.poolsError && !list.length) {
      $('pool-empty-text').textContent = `The pools cannot be listed: ${state.poolsError}`;
      empty.hidden = false;
    } else {
      $('pool-empty-text').textContent = 'No storage pools.';
      empty.hidden = !!list.length || state.pools === null;
    }
    const activeN = list.filter((p) => p.state === 'active').length;
    $('pool-count').textContent = state.pools === null ? 'Loading…'
      : `${numberFmt.format(list.length)} ${list.length === 1 ? 'pool' : 'pools'} · ${activeN} active`;
    if (state.poolChosen && !list.some((p) => p.name === state.poolChosen && p.state === 'active')) {
      state.poolChosen = null; // gone or stopped: no volumes to show
      $('volumes').hidden = true;
    }
  }

  async function poolAction(name, action, button) {
    button.disabled = true;
    state.poolErrors.delete(name);
    try {
      await api('POST', `/storagepools/${encodeURIComponent(name)}/${action}`);
      announce(`${name} ${action === 'activate' ? 'activated' : 'deactivated'}`);
    } catch (e) {
      state.poolErrors.set(name, e.message);
    }
    await loadPools();
  }

  function showPoolError(text, field) {
    const e = $('pool-error');
    e.textContent = text;
    e.hidden = !text;
    for (const id of ['pool-name', 'pool-path']) {
      $(id).setAttribute('aria-invalid', text && id === field ? 'true' : 'false');
    }
  }

  async function makePool(ev) {
    ev.preventDefault();
    showPoolError('');
    const name = $('pool-name').value.trim();
    const path = $('pool-path').value.trim();
    if (!name) { showPoolError('Give the pool a name.', 'pool-name'); $('pool-name').focus(); return; }
    if (!path.startsWith('/')) {
      showPoolError('The folder must be an absolute path, like /srv/vm-disks.', 'pool-path');
      $('pool-path').focus();
      return;
    }
    const btn = $('pool-create');
    btn.disabled = true;
    try {
      await api('POST', '/storagepools', { name, type: 'dir', path });
      $('pool-name').value = '';
      $('pool-path').value = '';
      announce(`Storage pool ${name} made`);
      await loadPools();
    } catch (e) {
      const code = e.body && e.body.errcode;
      showPoolError(e.message, code === 'KCHPOOL0001E' ? 'pool-name' : 'pool-path');
    } finally {
      btn.disabled = false;
    }
  }

  function askDeletePool(p) {
    askConfirm({
      title: 'Forget storage pool?',
      text: `kimchi and libvirt forget the pool “${p.name}”. Its files stay in ${p.path || 'place'}.`,
      ok: 'Forget',
      run: async () => {
        try {
          await api('DELETE', `/storagepools/${encodeURIComponent(p.name)}`);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        announce(`Storage pool ${p.name} forgotten`);
        await loadPools();
      },
      back: () => document.querySelector('#pool-rows button') || $('pool-name'),
    });
  }

  function choosePool(name) {
    state.poolChosen = name;
    state.volumes = null;
    $('volumes').hidden = false;
    $('volumes-title').textContent = `Volumes of ${name}`;
    showVolumeError('');
    renderPools();
    renderVolumes();
    loadVolumes();
    $('volumes').scrollIntoView({ block: 'nearest' });
  }

  async function loadVolumes() {
    const pool = state.poolChosen;
    if (!pool) return;
    const seq = ++state.volumesAsked;
    try {
      const r = await api('GET', `/storagepools/${encodeURIComponent(pool)}/storagevolumes`);
      if (state.poolChosen !== pool || seq < state.volumesShown) return;
      state.volumesShown = seq;
      state.volumes = Array.isArray(r.data) ? r.data : [];
      state.volumesError = '';
    } catch (e) {
      if (state.poolChosen !== pool || !state.signedIn || seq < state.volumesShown) return;
      state.volumesError = e.message;
    }
    renderVolumes();
  }

  function volumeRow(v) {
    const tr = el('tr');
    tr.dataset.name = v.name;
    const name = el('td', 'cell-name', v.name);
    name.title = v.path;
    const act = el('td', 'cell-actions');
    if (isAdmin()) {
      const del = actionButton('Delete', 'btn-danger-outline volume-delete', `Delete ${v.name}`,
        () => askDeleteVolume(v));
      if (v.used_by && v.used_by.length) {
        del.disabled = true;
        del.title = `A disk of ${v.used_by.join(', ')}`;
      }
      act.append(del);
    }
    tr.append(name, el('td', null, v.format || '—'), el('td', 'num', humanSize(v.capacity)),
      el('td', 'num', humanSize(v.allocation)),
      el('td', null, v.used_by && v.used_by.length ? v.used_by.join(', ') : '—'), act);
    return tr;
  }

  function renderVolumes() {
    const list = state.volumes || [];
    $('volume-rows').replaceChildren(...list.map(volumeRow));
    const empty = $('volume-empty');
    if (state.volumesError && !list.length) {
      $('volume-empty-text').textContent = `The volumes cannot be listed: ${state.volumesError}`;
    } else {
      $('volume-empty-text').textContent = 'No volumes in this pool.';
    }
    empty.hidden = state.volumes === null || !!list.length;
    $('volume-count').textContent = state.volumes === null ? 'Loading…'
      : `${numberFmt.format(list.length)} ${list.length === 1 ? 'volume' : 'volumes'}`;
  }

  function showVolumeError(text) {
    const e = $('volume-error');
    e.textContent = text;
    e.hidden = !text;
    $('volume-name').setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async function makeVolume(ev) {
    ev.preventDefault();
    const pool = state.poolChosen;
    if (!pool) return;
    showVolumeError('');
    const name = $('volume-name').value.trim();
    const gib = Number($('volume-size').value);
    if (!name) { showVolumeError('Give the volume a name.'); $('volume-name').focus(); return; }
    if (!Number.isInteger(gib) || gib < 1) {
      showVolumeError('The size is a whole number of GiB, 1 or more.');
      $('volume-size').focus();
      return;
    }
    const btn = $('volume-create');
    btn.disabled = true;
    try {
      await api('POST', `/storagepools/${encodeURIComponent(pool)}/storagevolumes`,
        { name, capacity: gib * 1024 ** 3, format: $('volume-format').value });
      $('volume-name').value = '';
      announce(`Volume ${name} made in ${pool}`);
      await loadPools();
    } catch (e) {
      showVolumeError(e.message);
      $('volume-name').focus();
    } finally {
      btn.disabled = false;
    }
  }

  function askDeleteVolume(v) {
    const pool = state.poolChosen;
    askConfirm({
      title: 'Delete volume?',
      text: `The volume “${v.name}” (${humanSize(v.capacity)}) in ${pool} is deleted with its data. `
        + 'This cannot be undone.',
      run: async () => {
        try {
          await api('DELETE', `/storagepools/${encodeURIComponent(pool)}/storagevolumes/${encodeURIComponent(v.name)}`);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        announce(`Volume ${v.name} deleted`);
        await loadPools();
      },
      back: () => document.querySelector('#volume-rows button:not([disabled])') || $('volume-name'),
    });
  }

  // -- networks --------------------------------------------------------------------------------

  const NET_KINDS = { nat: 'NAT', isolated: 'Isolated', bridge: 'Bridged', macvtap: 'macvtap',
    route: 'Routed', open: 'Open' };

  async function loadNetworks() {
    if (await fetchListing('nets', '/networks')) renderNetworks();
  }

  function networksSoon() {
    if (state.netsTimer || $('networks').hidden) return;
    state.netsTimer = setTimeout(() => { state.netsTimer = null; loadNetworks(); }, 150);
  }

  async function loadInterfaces() {
    try {
      const r = await api('GET', '/interfaces');
      state.ifaces = Array.isArray(r.data) ? r.data : [];
    } catch (e) {
      state.ifaces = [];
    }
    fillInterfaces();
  }

  function fillInterfaces() {
    const kind = $('net-connection').value;
    const wanted = kind === 'bridge' ? ['bridge'] : ['nic', 'bonding', 'vlan'];
    const sel = $('net-iface');
    const keep = sel.value;
    const opts = (state.ifaces || []).filter((i) => wanted.includes(i.type)).map((i) => {
      const o = el('option', null, `${i.name}${i.ipaddr ? ` (${i.ipaddr})` : ''}${i.status === 'down' ? ' — down' : ''}`);
      o.value = i.name;
      return o;
    });
    if (!opts.length) {
      const o = el('option', null, kind === 'bridge' ? 'No bridge on this host' : 'No interface');
      o.value = '';
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }

  function netKindChanged() {
    const kind = $('net-connection').value;
    const routed = kind === 'nat' || kind === 'isolated';
    $('net-subnet-field').hidden = !routed;
    $('net-iface-field').hidden = routed;
    if (!routed) fillInterfaces();
  }

  function networkRow(n) {
    const tr = el('tr');
    tr.dataset.name = n.name;
    const name = el('td', 'cell-name', n.name);
    const st = el('td');
    st.append(el('span', `state state-${n.state === 'active' ? 'running' : 'shutoff'}`,
      n.state === 'active' ? 'Active' : 'Inactive'));
    if (n.autostart) st.append(el('span', 'help', ' autostart'));
    const addr = el('td');
    if (n.subnet) {
      addr.append(el('span', 'mono', n.subnet));
      if (n.dhcp && n.dhcp.start) addr.append(el('span', 'net-addr', `DHCP ${n.dhcp.start} – ${n.dhcp.end}`));
    } else {
      addr.append(el('span', 'mono', (n.interfaces || []).join(', ') || n.bridge || '—'));
    }
    const act = el('td', 'cell-actions');
    if (isAdmin()) {
      if (n.state === 'active') {
        act.append(actionButton('Deactivate', 'btn-plain', `Deactivate ${n.name}`,
          (b) => networkAction(n.name, 'deactivate', b)));
      } else {
        act.append(actionButton('Activate', 'btn-plain', `Activate ${n.name}`,
          (b) => networkAction(n.name, 'activate', b)));
        act.append(actionButton('Delete', 'btn-danger-outline net-delete', `Delete ${n.name}`,
          () => askDeleteNetwork(n)));
      }
    }
    const err = state.netErrors.get(n.name);
    if (err) name.append(el('p', 'row-error', err));
    tr.append(name, st, el('td', null, NET_KINDS[n.connection] || n.connection), addr,
      el('td', null, usedByText(n.used_by)), act);
    return tr;
  }

  function renderNetworks() {
    const list = state.nets || [];
    replaceRowsKeepingFocus($('net-rows'), list.map(networkRow));
    const empty = $('net-empty');
    if (state.netsError && !list.length) {
      $('net-empty-text').textContent = `The networks cannot be listed: ${state.netsError}`;
      empty.hidden = false;
    } else {
      $('net-empty-text').textContent = 'No networks.';
      empty.hidden = !!list.length || state.nets === null;
    }
    const activeN = list.filter((n) => n.state === 'active').length;
    $('net-count').textContent = state.nets === null ? 'Loading…'
      : `${numberFmt.format(list.length)} ${list.length === 1 ? 'network' : 'networks'} · ${activeN} active`;
  }

  async function networkAction(name, action, button) {
    button.disabled = true;
    state.netErrors.delete(name);
    try {
      await api('POST', `/networks/${encodeURIComponent(name)}/${action}`);
      announce(`${name} ${action === 'activate' ? 'activated' : 'deactivated'}`);
    } catch (e) {
      state.netErrors.set(name, e.message);
    }
    await loadNetworks();
  }

  function showNetError(text, field) {
    const e = $('net-error');
    e.textContent = text;
    e.hidden = !text;
    for (const id of ['net-name', 'net-subnet', 'net-iface']) {
      $(id).setAttribute('aria-invalid', text && id === field ? 'true' : 'false');
    }
  }

  async function makeNetwork(ev) {
    ev.preventDefault();
    showNetError('');
    const name = $('net-name').value.trim();
    const connection = $('net-connection').value;
    if (!name) { showNetError('Give the network a name.', 'net-name'); $('net-name').focus(); return; }
    const body = { name, connection };
    if (connection === 'nat' || connection === 'isolated') {
      const subnet = $('net-subnet').value.trim();
      if (subnet) body.subnet = subnet;
    } else {
      const iface = $('net-iface').value;
      if (!iface) {
        showNetError(connection === 'bridge' ? 'This host has no bridge to use.'
          : 'Choose the host interface to share.', 'net-iface');
        return;
      }
      body.interface = iface;
    }
    const btn = $('net-create');
    btn.disabled = true;
    try {
      await api('POST', '/networks', body);
      $('net-name').value = '';
      $('net-subnet').value = '';
      announce(`Network ${name} made`);
      await loadNetworks();
    } catch (e) {
      const code = e.body && e.body.errcode;
      showNetError(e.message, code === 'KCHNET0009E' ? 'net-subnet'
        : code === 'KCHNET0004E' && body.interface ? 'net-iface' : 'net-name');
    } finally {
      btn.disabled = false;
    }
  }

  function askDeleteNetwork(n) {
    askConfirm({
      title: 'Delete network?',
      text: `The network “${n.name}” is deleted${n.subnet ? `, with its subnet ${n.subnet}` : ''}.`,
      run: async () => {
        try {
          await api('DELETE', `/networks/${encodeURIComponent(n.name)}`);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        announce(`Network ${n.name} deleted`);
        await loadNetworks();
      },
      back: () => document.querySelector('#net-rows button') || $('net-name'),
    });
  }

  // -- the host ------------------------------------------------------------------------------

  const SVG_NS = 'http://www.w3.org/2000/svg';

  async function loadHost() {
    try {
      const [info, hist] = await Promise.all([api('GET', '/host'), api('GET', '/host/stats/history')]);
      state.hostInfo = info.data || {};
      state.hostInfoAt = Date.now();
      const h = hist.data || {};
      const times = Array.isArray(h.time) ? h.time : [];
      state.hostInterval = typeof h.interval === 'number' ? h.interval : state.hostInterval;
      state.hostSamples = times.map((t, i) => ({
        time: t,
        cpu_utilization: h.cpu_utilization[i],
        memory: Object.fromEntries(Object.entries(h.memory || {}).map(([k, v]) => [k, v[i]])),
        disk_read_rate: h.disk_read_rate[i],
        disk_write_rate: h.disk_write_rate[i],
        net_recv_rate: h.net_recv_rate[i],
        net_sent_rate: h.net_sent_rate[i],
      }));
      state.hostCap = Math.max(state.hostCap, state.hostSamples.length);
      state.hostError = '';
    } catch (e) {
      if (!state.signedIn) return;
      state.hostError = e.message;
    }
    renderHostInfo();
    renderHostCharts();
  }

  function durationText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d} ${d === 1 ? 'day' : 'days'}, ${h} h`;
    if (h) return `${h} h ${m} min`;
    return `${m} min`;
  }

  function renderHostInfo() {
    const h = state.hostInfo;
    const dl = $('host-info');
    if (!h) {
      $('host-sub').textContent = state.hostError ? `The host cannot be described: ${state.hostError}` : 'Loading…';
      dl.replaceChildren();
      return;
    }
    const up = (h.uptime || 0) + (Date.now() - state.hostInfoAt) / 1000;
    $('host-sub').textContent = `${h.hostname || 'This host'} · up ${durationText(up)}`;
    const c = h.cpus || {};
    const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    const perSocket = Math.max(1, Math.round((c.cores || c.online) / (c.sockets || 1)));
    const topo = c.sockets ? [plural(c.sockets, 'socket', 'sockets'),
      plural(perSocket, 'core', 'cores'), plural(c.threads_per_core || 1, 'thread', 'threads')].join(' × ') : '';
    const rows = [
      ['Operating system', [h.os_distro, h.os_version, h.os_codename ? `(${h.os_codename})` : '']
        .filter(Boolean).join(' ')],
      ['Kernel', `${h.kernel || '—'} ${h.architecture || ''}`.trim()],
      ['Processor', `${h.cpu_model || '—'}${h.cpu_mhz ? `, ${numberFmt.format(h.cpu_mhz)} MHz` : ''}`],
      ['CPUs', `${c.online || '—'} online${topo ? ` (${topo})` : ''}`],
      ['Memory', humanSize(h.memory)],
      ['libvirt', h.libvirt_version || 'not reachable'],
    ];
    const items = [];
    for (const [k, v] of rows) items.push(el('dt', null, k), el('dd', null, v));
    dl.replaceChildren(...items);
  }

  /** Lines through the samples, newest on the right; ``max`` is the top of the chart. */
  function drawChart(svg, series, max) {
    const W = 300;
    const H = 80;
    const cap = Math.max(state.hostCap, 2);
    const parts = [];
    for (const { values, cls, area } of series) {
      if (values.length < 2) continue;
      const x0 = W * (1 - (values.length - 1) / (cap - 1));
      const pts = values.map((v, i) => {
        const x = x0 + (W * i) / (cap - 1);
        const y = H - 2 - (H - 4) * Math.min(1, Math.max(0, (v || 0) / (max || 1)));
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      if (area) {
        const a = document.createElementNS(SVG_NS, 'polygon');
        a.setAttribute('class', area);
        a.setAttribute('points', `${x0.toFixed(1)},${H} ${pts.join(' ')} ${W},${H}`);
        parts.push(a);
      }
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('class', cls);
      line.setAttribute('points', pts.join(' '));
      parts.push(line);
    }
    svg.replaceChildren(...parts);
  }

  function rateText(bps) {
    return typeof bps === 'number' ? `${humanSize(bps)}/s` : '—';
  }

  function renderHostCharts() {
    state.hostRenderQueued = false;
    if ($('host').hidden) return;
    const all = state.hostSamples;
    const last = all[all.length - 1];
    const pick = (k) => all.map((s) => s[k]);
    const used = (s) => (s.memory && s.memory.total ? s.memory.total - s.memory.avail : 0);
    drawChart($('chart-cpu'), [{ values: pick('cpu_utilization'), cls: 'line-a', area: 'area-a' }], 100);
    const total = last && last.memory ? last.memory.total : 0;
    drawChart($('chart-mem'), [{ values: all.map(used), cls: 'line-a', area: 'area-a' }], total);
    const top = (keys) => Math.max(1024, ...all.flatMap((s) => keys.map((k) => s[k] || 0))) * 1.1;
    drawChart($('chart-disk'), [{ values: pick('disk_read_rate'), cls: 'line-a' },
      { values: pick('disk_write_rate'), cls: 'line-b' }], top(['disk_read_rate', 'disk_write_rate']));
    drawChart($('chart-net'), [{ values: pick('net_recv_rate'), cls: 'line-a' },
      { values: pick('net_sent_rate'), cls: 'line-b' }], top(['net_recv_rate', 'net_sent_rate']));
    $('now-cpu').textContent = last ? `${Number(last.cpu_utilization).toFixed(1)} %` : '—';
    $('now-mem').textContent = last ? humanSize(used(last)) : '—';
    $('now-mem-of').textContent = last && total ? `in use of ${humanSize(total)}` : '';
    $('now-disk-read').textContent = last ? rateText(last.disk_read_rate) : '—';
    $('now-disk-write').textContent = last ? rateText(last.disk_write_rate) : '—';
    $('now-net-recv').textContent = last ? rateText(last.net_recv_rate) : '—';
    $('now-net-sent').textContent = last ? rateText(last.net_sent_rate) : '—';
    $('chart-cpu').setAttribute('aria-label', last
      ? `CPU use over the last ${durationText(all.length * state.hostInterval)}: now ${$('now-cpu').textContent}`
      : 'CPU use: no sample yet');
    $('host-window').textContent = all.length
      ? `The last ${durationText(Math.max(60, all.length * state.hostInterval))}, a sample every ${
        state.hostInterval} s, live.` : 'Waiting for the first sample…';
    if (state.hostInfo) renderHostInfo(); // the uptime moves on
  }

  function hostSample(d) {
    if (!d || typeof d.time !== 'number') return;
    const all = state.hostSamples;
    if (all.length && all[all.length - 1].time >= d.time) return;
    all.push(d);
    while (all.length > state.hostCap) all.shift();
    if (!state.hostRenderQueued && !$('host').hidden) {
      state.hostRenderQueued = true;
      requestAnimationFrame(renderHostCharts);
    }
  }

  // -- debug reports (admins) --------------------------------------------------------------------

  const REPORT_KIND = 'debugreport.collect';

  async function loadReports() {
    if (isAdmin() && await fetchListing('reports', '/debugreports')) renderReports();
  }

  /** The reports being made: their tasks, newest first. */
  function reportTasks() {
    return [...state.tasks.values()]
      .filter((t) => !t.stub && t.rec.kind === REPORT_KIND && !TERMINAL.has(t.rec.status))
      .map((t) => t.rec)
      .sort((a, b) => collator.compare(b.created || '', a.created || ''));
  }

  function reportNameOf(rec) {
    return rec.params && typeof rec.params.name === 'string' ? rec.params.name
      : (/^\/debugreports\/([^/]+)$/.exec(rec.target_uri || '') || [])[1] || '';
  }

  /** One row per report being made, kept (not rebuilt) while its progress moves. */
  function renderReportTasks() {
    const recs = reportTasks();
    const rows = state.reportMaking;
    const ids = new Set(recs.map((r) => r.id));
    for (const [id, row] of rows) {
      if (!ids.has(id)) { row.tr.remove(); rows.delete(id); }
    }
    const body = $('report-making');
    recs.forEach((rec, i) => {
      let row = rows.get(rec.id);
      if (!row) {
        const name = reportNameOf(rec);
        const tr = el('tr', 'report-pending');
        tr.dataset.name = name;
        tr.setAttribute('aria-busy', 'true');
        const made = el('td', 'report-progress');
        const bar = el('progress', 'bar');
        bar.max = 100;
        bar.setAttribute('aria-label', `Making ${name}`);
        const msg = el('p', 'help report-msg');
        made.append(bar, msg);
        const act = el('td', 'cell-actions');
        const stop = actionButton('Stop', 'btn-plain report-stop', `Stop making ${name}`,
          (b) => stopReport(rec.id, b));
        act.append(stop);
        tr.append(el('td', 'cell-name', name), made, el('td', 'num', '—'), act);
        row = { tr, bar, msg, stop };
        rows.set(rec.id, row);
      }
      if (typeof rec.progress === 'number') row.bar.value = rec.progress;
      else row.bar.removeAttribute('value');
      const t = state.tasks.get(rec.id);
      row.msg.textContent = t && t.cancelling ? 'Stopping…' : rec.message || 'Waiting for a worker';
      row.stop.disabled = !!(t && t.cancelling);
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    renderReportCount();
  }

  async function stopReport(id, button) {
    button.disabled = true;
    try {
      await api('DELETE', `/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 400) { button.disabled = false; showReportError(e.message); }
    }
  }

  function reportRow(r) {
    const tr = el('tr');
    tr.dataset.name = r.name;
    const name = el('td', 'cell-name', r.name);
    name.title = r.file || r.name;
    const made = el('td', null, whenText(r.time));
    made.title = r.time || '';
    const size = el('td', 'num', humanSize(r.size));
    const act = el('td', 'cell-actions');
    const link = el('a', 'btn btn-small btn-plain report-download', 'Download');
    link.href = r.uri || `/debugreports/${encodeURIComponent(r.name)}/content`;
    link.setAttribute('download', r.file || `${r.name}.tar.xz`);
    link.setAttribute('aria-label', `Download ${r.name}`);
    act.append(link,
      actionButton('Rename', 'btn-plain report-rename', `Rename ${r.name}`, () => openReportRename(r.name)),
      actionButton('Delete', 'btn-danger-outline report-delete', `Delete ${r.name}`, () => askDeleteReport(r)));
    tr.append(name, made, size, act);
    return tr;
  }

  function renderReports() {
    const list = state.reports || [];
    const sorted = [...list].sort((a, b) => collator.compare(b.time || '', a.time || '')
      || collator.compare(a.name, b.name));
    const active = document.activeElement;
    const focused = active && active.closest && active.closest('#report-rows tr');
    const again = focused ? [focused.dataset.name, [...focused.querySelectorAll('a, button')].indexOf(active)] : null;
    $('report-rows').replaceChildren(...sorted.map(reportRow));
    if (again) { // the same control of the same report, rebuilt
      const tr = [...$('report-rows').children].find((x) => x.dataset.name === again[0]);
      const c = tr && tr.querySelectorAll('a, button')[again[1]];
      if (c) c.focus();
    }
    renderReportTasks();
  }

  function renderReportCount() {
    const list = state.reports || [];
    const making = state.reportMaking.size;
    const empty = $('report-empty');
    if (state.reportsError && !list.length) {
      $('report-empty-text').textContent = `The reports cannot be listed: ${state.reportsError}`;
      empty.hidden = false;
    } else {
      $('report-empty-text').textContent = 'No debug reports. Make one above when something goes wrong.';
      empty.hidden = !!list.length || !!making || state.reports === null;
    }
    const n = `${numberFmt.format(list.length)} ${list.length === 1 ? 'report' : 'reports'}`;
    $('report-count').textContent = state.reports === null ? 'Loading…'
      : making ? `${n} · ${making} being made` : n;
    const noTool = !!state.caps && state.caps.system_report_tool === false;
    $('report-notool').hidden = !noTool;
    $('report-create').disabled = noTool;
  }

  function showReportError(text) {
    const e = $('report-error');
    e.textContent = text;
    e.hidden = !text;
    $('report-name').setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async function makeReport(ev) {
    ev.preventDefault();
    showReportError('');
    const input = $('report-name');
    const name = input.value.trim();
    if (name && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) {
      showReportError('Use letters, digits, - and _ (starting with a letter or digit), at most 64.');
      input.focus();
      return;
    }
    const btn = $('report-create');
    btn.disabled = true;
    try {
      const r = await api('POST', '/debugreports', name ? { name } : {});
      upsertTask(r.data);
      input.value = '';
      announce(`Making debug report ${reportNameOf(r.data || {}) || name}`);
    } catch (e) {
      showReportError(e.message);
      input.focus();
    } finally {
      btn.disabled = false;
      renderReportCount();
    }
  }

  /** A report's task ended: a finished one is in the list now. */
  function reportTaskEnded(rec) {
    renderReportTasks();
    if (rec.status === 'finished') loadReports();
    else if (rec.status === 'failed' && rec.message) showReportError(rec.message);
  }

  function openReportRename(name) {
    state.reportRenaming = name;
    $('report-rename-title').textContent = `Rename ${name}`;
    const input = $('report-rename-name');
    input.value = name;
    showNameError('report-rename', '');
    $('report-rename-dialog').showModal();
    input.focus();
    input.select();
  }

  async function submitReportRename(ev) {
    ev.preventDefault();
    const from = state.reportRenaming;
    const to = $('report-rename-name').value.trim();
    if (!from || !to || to === from) { $('report-rename-dialog').close(); return; }
    const btn = $('report-rename-submit');
    btn.disabled = true;
    try {
      await api('PUT', `/debugreports/${encodeURIComponent(from)}`, { name: to });
      state.reportRenaming = to;
      $('report-rename-dialog').close('done');
      announce(`${from} renamed to ${to}`);
      loadReports();
    } catch (e) {
      showNameError('report-rename', e.message);
      $('report-rename-name').focus();
    } finally {
      btn.disabled = false;
    }
  }

  function onReportRenameClose() {
    const name = state.reportRenaming;
    state.reportRenaming = null;
    const tr = [...$('report-rows').children].find((x) => x.dataset.name === name);
    const back = tr ? tr.querySelector('.report-rename') : $('report-name');
    if (back) back.focus();
  }

  function askDeleteReport(r) {
    askConfirm({
      title: 'Delete debug report?',
      text: `The report “${r.name}” (${humanSize(r.size)}) is deleted from this host. `
        + 'Copies already downloaded are not affected.',
      run: async () => {
        try {
          await api('DELETE', `/debugreports/${encodeURIComponent(r.name)}`);
        } catch (e) {
          if (e.status !== 404) throw e; // already gone
        }
        if (state.reports) state.reports = state.reports.filter((x) => x.name !== r.name);
        renderReports();
        announce(`Report ${r.name} deleted`);
      },
      back: () => document.querySelector('#report-rows .report-delete') || $('report-name'),
    });
  }

  function reportChanged(type, d) {
    if (!d || typeof d.name !== 'string' || state.reports === null) return;
    if (type === 'debugreport.deleted') {
      state.reports = state.reports.filter((x) => x.name !== d.name);
    } else {
      const { previous, ...rec } = d;
      state.reports = state.reports.filter((x) => x.name !== previous && x.name !== d.name);
      state.reports.push(rec);
    }
    renderReports();
  }

  // -- libvirt away and back ---------------------------------------------------------------

  function libvirtDown(down) {
    if (state.libvirtDown === down) return;
    state.libvirtDown = down;
    queueVmRender();
    if (!down) {
      // back: list again (the inventory's own events cover a VM list we had)
      api('GET', '/vms').then((r) => {
        if (Array.isArray(r.data)) {
          state.vmsError = null;
          state.vms = new Map(r.data.map((x) => [x.name, x]));
          queueVmRender();
        }
      }, () => {});
      loadCapabilities();
    }
  }

  // -- templates from a distribution -------------------------------------------------------

  function slug(text) {
    return String(text).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '')
      .replace(/-{2,}/g, '-') || 'template';
  }

  async function loadDistros() {
    let list = null;
    // ask only a server that has them: a 404 would be logged by the browser as an error
    if (!offers('/config/distros', 'get')) {
      state.distros = null;
      renderDistros();
      return;
    }
    try {
      const r = await api('GET', '/config/distros');
      list = Array.isArray(r.data) ? r.data : null;
    } catch (e) {
      list = null; // 404: this server does not offer them
    }
    state.distros = list;
    renderDistros();
  }

  function renderDistros() {
    const list = state.distros;
    $('distro-card').hidden = !list || !list.length;
    if (!list) return;
    const items = [...list].sort((a, b) => collator.compare(a.name || '', b.name || '')).map((d) => {
      const li = el('li', 'distro-item');
      const dd = d.os_distro || 'unknown';
      li.append(
        el('span', `distro distro-${/^[a-z0-9-]+$/.test(dd) ? dd : 'other'}`,
          d.os_version ? `${dd} ${d.os_version}` : dd),
        el('span', 'distro-title', d.name || ''),
        el('span', 'distro-arch mono', d.os_arch || ''),
      );
      li.title = d.path || '';
      const b = actionButton('+ Template', 'btn-plain', `Create a template from ${d.name}`,
        (btn) => templateFromDistro(d, btn));
      li.append(b);
      return li;
    });
    $('distro-list').replaceChildren(...items);
  }

  async function templateFromDistro(d, btn) {
    const err = $('distro-error');
    err.hidden = true;
    btn.disabled = true;
    const body = { name: slug(d.name || d.os_distro || ''), source_media: { type: 'disk', path: d.path } };
    if (d.os_distro) body.os_distro = d.os_distro;
    if (d.os_version) body.os_version = d.os_version;
    try {
      const r = await api('POST', '/templates', body);
      templateChanged(r.data, false);
      announce(`Template ${r.data.name} created`);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      btn.disabled = false;
    }
  }

  // -- signing in, the session and its end ------------------------------------------------
  //
  // The session cookie is HttpOnly: the page knows only what the server says, GET /session
  // and each answer's Session-Expires-On. The first login of a page starts the app in it; a
  // later one (after a sign-out or an ended session) reloads the page, so nothing of the
  // previous session (its user's VMs, its timers, its socket) is carried into the next.

  /** Note when the session ends unless used, as an answer's Session-Expires-On says. */
  function noteExpiry(headers) {
    const value = headers.get('Session-Expires-On');
    if (!value) return;
    const at = Date.parse(value);
    if (!isFinite(at)) return;
    const now = Date.now();
    // the server's clock decides; its Date has whole seconds, so only a larger gap is skew
    const served = Date.parse(headers.get('Date') || '');
    const skew = isFinite(served) && Math.abs(served - now) > 2000 ? served - now : 0;
    const local = at - skew;
    state.idleMs = Math.max(state.idleMs, local - now);
    if (local > state.expiresAt) {
      state.expiresAt = local;
      armExpiry();
    }
  }

  /** How long before the end to warn (ms): see WARN_SHARE. */
  function warnBefore() {
    const idle = state.idleMs;
    return Math.max(Math.min(WARN_MAX, idle * WARN_SHARE), Math.min(WARN_MIN, idle / 2));
  }

  function leftText(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
  }

  /** Show, update or hide the warning for the session's end; at the end, ask the server. */
  function armExpiry() {
    clearTimeout(state.expiryTimer);
    state.expiryTimer = null;
    if (!state.signedIn || !state.expiresAt) {
      $('session-warning').hidden = true;
      return;
    }
    const left = state.expiresAt - Date.now();
    if (left <= -EXPIRY_GRACE) {
      checkEnded();
      return;
    }
    const warn = warnBefore();
    if (left <= warn) {
      showExpiryWarning(left);
      const next = left > 0 ? left % 1000 || 1000 : left + EXPIRY_GRACE;
      state.expiryTimer = setTimeout(armExpiry, Math.max(50, next + 10));
    } else {
      $('session-warning').hidden = true;
      state.renewError = '';
      state.expiryTimer = setTimeout(armExpiry, Math.min(left - warn, 3600000));
    }
  }

  function showExpiryWarning(left) {
    const box = $('session-warning');
    const text = state.atLimit
      ? `It reaches its time limit in ${leftText(left)}: sign in again then.`
      : `It ends in ${leftText(left)} unless you stay signed in.`;
    $('session-warning-text').textContent = state.renewError
      ? `${text} It could not be renewed: ${state.renewError}` : text;
    $('session-stay').hidden = state.atLimit;
    if (box.hidden) {
      box.hidden = false;
      announce(`Your session is about to end. ${text}`);
    }
  }

  /** The end has passed with no answer here extending it: has another tab kept it open? */
  async function checkEnded() {
    if (state.checkingEnd) return;
    state.checkingEnd = true;
    try {
      await askSession(); // a 401 shows the login page
    } catch (e) {
      if (state.signedIn) state.expiryTimer = setTimeout(checkEnded, 5000); // no answer
      return;
    } finally {
      state.checkingEnd = false;
    }
    // still open: its new end was noted (a clock far off the server's: look again later)
    if (state.expiresAt <= Date.now()) state.expiresAt = Date.now() + 5000;
    armExpiry();
  }

  async function staySignedIn() {
    const btn = $('session-stay');
    btn.disabled = true;
    state.renewError = '';
    try {
      await askSession(); // any authenticated request renews the session
      // near its absolute limit, using it no longer moves its end: say so instead
      if (state.signedIn && state.expiresAt - Date.now() <= warnBefore()) state.atLimit = true;
    } catch (e) {
      state.renewError = e.message;
    } finally {
      btn.disabled = false;
    }
    armExpiry();
  }

  /** A request was refused for want of a session (it ended, or was revoked). */
  function sessionEnded() {
    if (!state.signedIn || state.signingOut) return;
    leaveApp('Your session has ended. Sign in again to go on.', 'ended',
      state.who ? state.who.username : '');
  }

  async function signOut() {
    const btn = $('sign-out');
    btn.disabled = true;
    state.signingOut = true; // requests refused meanwhile are no news
    let note = 'You have signed out.';
    try {
      await api('POST', '/logout', undefined, { auth: false });
    } catch (e) {
      note = `You left the app, but the server could not end the session (${e.message}); it ends by itself when left unused.`;
    }
    btn.disabled = false;
    leaveApp(note, 'info', '');
    state.signingOut = false;
  }

  /** Stop everything the session started, forget what it showed, show the login page. */
  function leaveApp(note, kind, username) {
    state.signedIn = false;
    for (const t of ['expiryTimer', 'reconnectTimer', 'bootTimer', 'thumbTimer']) {
      clearTimeout(state[t]);
      state[t] = null;
    }
    state.expiresAt = 0;
    state.atLimit = false;
    const ws = state.ws;
    state.ws = null;
    state.open = false;
    if (ws) ws.close();
    for (const name of [...state.thumbInflight.keys()]) abortThumb(name);
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
    for (const item of state.vmItems.values()) thumbObserver.unobserve(item.li);
    for (const m of [state.isos, state.rows, state.tasks, state.templates, state.vms, state.vmItems,
      state.vmPending, state.vmArriving, state.vmBusy, state.vmErrors, state.rowErrors, state.vmVisible]) {
      m.clear();
    }
    for (const id of ['iso-rows', 'task-list', 'tmpl-rows', 'tmpl-iso', 'vm-list', 'distro-list',
      'vm-new-templates', 'announcer', 'token-rows', 'report-rows', 'report-making', 'pool-rows',
      'volume-rows', 'net-rows']) {
      $(id).replaceChildren();
    }
    for (const id of ['scan-path', 'iso-filter', 'tmpl-path', 'tmpl-name', 'tmpl-memory',
      'tmpl-vcpus', 'vm-filter', 'vm-new-name', 'vm-clone-name', 'vm-access-users',
      'vm-access-groups', 'token-name', 'token-user', 'token-value', 'report-name',
      'report-rename-name', 'pool-name', 'pool-path', 'volume-name', 'net-name', 'net-subnet',
      'snap-name', 'dev-path']) {
      $(id).value = '';
    }
    hideSecret();
    state.tokens = null;
    state.tokensError = '';
    state.reports = null;
    state.reportsError = '';
    state.reportMaking.clear();
    state.hostInfo = null;
    state.hostSamples = [];
    state.pools = null;
    state.poolChosen = null;
    state.volumes = null;
    state.poolErrors.clear();
    $('volumes').hidden = true;
    state.nets = null;
    state.netErrors.clear();
    closeConsole();
    state.who = null;
    showLogin(note, kind, username);
  }

  function showLoginError(text) {
    const e = $('login-error');
    e.textContent = text;
    e.hidden = !text;
  }

  function showLogin(note = '', kind = 'info', username = '') {
    document.body.dataset.auth = 'out';
    delete document.body.dataset.role;
    for (const id of ['app', 'conn', 'account', 'banner', 'session-warning', 'skip-link']) {
      $(id).hidden = true;
    }
    $('login').hidden = false;
    $('login-fields').hidden = false;
    const n = $('login-note');
    n.textContent = note;
    n.hidden = !note;
    n.dataset.kind = kind;
    showLoginError('');
    $('login-user').value = username; // kept when the session ended, not after a sign-out
    $('login-password').value = '';
    document.title = 'Sign in · kimchi';
    ($('login-user').value ? $('login-password') : $('login-user')).focus();
  }

  /** The server cannot say yet whether anyone is signed in: no form, a note, a retry. */
  function showWaiting(text) {
    document.body.dataset.auth = 'waiting';
    $('login').hidden = false;
    $('login-fields').hidden = true;
    const n = $('login-note');
    n.textContent = text;
    n.hidden = false;
    n.dataset.kind = 'info';
  }

  /** On load: GET /session says who is signed in (200) or that nobody is (401). */
  async function checkSession() {
    let who;
    try {
      who = (await api('GET', '/session', undefined, { auth: false })).data;
    } catch (e) {
      if (e.status === 401) {
        showLogin();
        return;
      }
      showWaiting(`${e.status === 0 ? 'The server cannot be reached.' : e.message} Trying again…`);
      const delay = state.backoff;
      state.backoff = Math.min(BACKOFF_MAX, state.backoff * 2);
      setTimeout(checkSession, delay);
      return;
    }
    startApp(who, { focus: false });
  }

  function startApp(who, { focus }) {
    if (!who || typeof who.username !== 'string') {
      showLogin();
      return;
    }
    state.who = who;
    state.signedIn = true;
    state.started = true;
    state.backoff = BACKOFF_MIN;
    state.lastActivity = Date.now();
    const admin = who.role === 'admin';
    document.body.dataset.auth = 'in';
    document.body.dataset.role = admin ? 'admin' : 'user';
    $('account-name').textContent = who.username;
    const role = $('account-role');
    role.textContent = admin ? 'Administrator' : 'User';
    role.dataset.role = admin ? 'admin' : 'user';
    const groups = Array.isArray(who.groups) ? who.groups.join(', ') : '';
    $('account').title = groups ? `${who.username}, groups: ${groups}` : who.username;
    $('login').hidden = true;
    for (const id of ['app', 'conn', 'account', 'skip-link']) $(id).hidden = false;
    route(focus);
    updateConn();
    renderIsos();
    armExpiry();
    boot();
  }

  function loginWait(seconds) {
    const btn = $('login-submit');
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        state.loginWaitTimer = null;
        btn.disabled = false;
        btn.textContent = 'Sign in';
        showLoginError('');
        return;
      }
      btn.disabled = true;
      btn.textContent = `Try again in ${left} s`;
      state.loginWaitTimer = setTimeout(tick, (until - Date.now()) % 1000 || 1000);
    };
    clearTimeout(state.loginWaitTimer);
    tick();
  }

  async function submitLogin(ev) {
    ev.preventDefault();
    if (state.loginWaitTimer || state.signingIn) return;
    const user = $('login-user');
    const pw = $('login-password');
    const username = user.value.trim();
    showLoginError('');
    for (const input of [user, pw]) input.setAttribute('aria-invalid', 'false');
    if (!username || !pw.value) {
      const missing = username ? pw : user;
      showLoginError(username ? 'Enter your password.' : 'Enter your user name.');
      missing.setAttribute('aria-invalid', 'true');
      missing.focus();
      return;
    }
    const btn = $('login-submit');
    btn.disabled = true;
    btn.textContent = 'Signing in…';
    state.signingIn = true;
    let who;
    try {
      who = (await api('POST', '/login', { username, password: pw.value }, { auth: false })).data;
    } catch (e) {
      state.signingIn = false;
      pw.value = '';
      btn.disabled = false;
      btn.textContent = 'Sign in';
      showLoginError(e.message);
      if (e.status === 401) for (const input of [user, pw]) input.setAttribute('aria-invalid', 'true');
      if (e.retryAfter) loginWait(e.retryAfter);
      pw.focus();
      return;
    }
    pw.value = '';
    if (state.started) {
      location.reload(); // start clean, with the new session's cookie
      return;
    }
    state.signingIn = false;
    btn.disabled = false;
    btn.textContent = 'Sign in';
    startApp(who, { focus: true });
  }

  // -- wiring -----------------------------------------------------------------------------

  function init() {
    $('scan-form').addEventListener('submit', startScan);
    $('stop-btn').addEventListener('click', stopScan);
    $('scan-path').addEventListener('input', () => {
      if (!$('scan-error').hidden) showScanError('');
    });
    $('iso-filter').addEventListener('input', (e) => {
      state.filter = e.target.value;
      queueIsoRender();
    });
    for (const th of document.querySelectorAll('#iso-table th[data-key]')) {
      th.querySelector('button').addEventListener('click', () => {
        const key = th.dataset.key;
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        renderIsos();
      });
    }
    $('nav-tasks').addEventListener('click', (e) => {
      e.preventDefault();
      const drawer = $('tasks');
      drawer.scrollIntoView({ block: 'start', behavior: 'smooth' });
      drawer.focus({ preventScroll: true });
    });
    window.addEventListener('hashchange', () => route(true));
    $('tmpl-form').addEventListener('submit', createTemplate);
    $('tmpl-iso').addEventListener('change', (e) => {
      if (e.target.value) $('tmpl-path').value = e.target.value;
      showTmplError('');
    });
    $('tmpl-path').addEventListener('input', () => {
      const v = $('tmpl-path').value.trim();
      $('tmpl-iso').value = state.isos.has(v) ? v : '';
      if (!$('tmpl-error').hidden) showTmplError('');
    });
    $('confirm-dialog').addEventListener('close', onConfirmClose);
    $('vm-new').addEventListener('click', openVmNew);
    $('vm-new-form').addEventListener('submit', createVm);
    $('vm-new-cancel').addEventListener('click', () => $('vm-new-dialog').close());
    $('vm-new-dialog').addEventListener('close', () => $('vm-new').focus());
    $('vm-new-templates').addEventListener('change', () => { updateNamePlaceholder(); showVmNewError(''); });
    $('vm-new-name').addEventListener('input', () => { if (!$('vm-new-error').hidden) showVmNewError(''); });
    $('vm-edit-form').addEventListener('submit', saveEdit);
    $('vm-edit-cancel').addEventListener('click', () => $('vm-edit-dialog').close());
    $('vm-edit-dialog').addEventListener('close', () => {
      const item = state.vms.has(state.editing) && state.vmItems.get(state.editing);
      state.editing = null;
      if (item) item.buttons.get('edit').focus();
    });
    $('vm-clone-form').addEventListener('submit', submitClone);
    $('vm-clone-cancel').addEventListener('click', () => $('vm-clone-dialog').close());
    $('vm-clone-dialog').addEventListener('close', onCloneClose);
    $('vm-clone-name').addEventListener('input', () => { if (!$('vm-clone-error').hidden) showCloneError(''); });
    $('vm-access-form').addEventListener('submit', saveAccess);
    $('vm-access-cancel').addEventListener('click', () => $('vm-access-dialog').close());
    $('vm-access-dialog').addEventListener('close', onAccessClose);
    for (const id of ['vm-access-users', 'vm-access-groups']) {
      $(id).addEventListener('input', () => {
        if (!$('vm-access-error').hidden) showAccessError('');
        if (state.principals) renderPicks(); // typed names are no longer offered
      });
    }
    $('dev-storage-form').addEventListener('submit', attachStorage);
    $('dev-iface-form').addEventListener('submit', addIface);
    $('dev-close').addEventListener('click', () => $('dev-dialog').close());
    $('dev-dialog').addEventListener('close', () => {
      const vm = state.devVm;
      state.devVm = null;
      const item = state.vmItems.get(vm);
      if (item && !item.devices.hidden) item.devices.focus();
    });
    $('snap-form').addEventListener('submit', takeSnapshot);
    $('snap-close').addEventListener('click', () => $('snap-dialog').close());
    $('snap-dialog').addEventListener('close', () => {
      const vm = state.snapVm;
      state.snapVm = null;
      const item = state.vmItems.get(vm);
      if (item && !item.snapshots.hidden) item.snapshots.focus();
    });
    $('snap-name').addEventListener('input', () => { if (!$('snap-error').hidden) showNameError('snap', ''); });
    $('console-cad').addEventListener('click', () => {
      if (state.console && state.console.rfb) state.console.rfb.sendCtrlAltDel();
    });
    $('console-full').addEventListener('click', () => {
      const el2 = $('console-screen');
      if (el2.requestFullscreen) el2.requestFullscreen().catch(() => {});
    });
    $('net-form').addEventListener('submit', makeNetwork);
    $('net-connection').addEventListener('change', netKindChanged);
    $('pool-form').addEventListener('submit', makePool);
    $('volume-form').addEventListener('submit', makeVolume);
    $('report-form').addEventListener('submit', makeReport);
    $('report-name').addEventListener('input', () => { if (!$('report-error').hidden) showReportError(''); });
    $('report-rename-form').addEventListener('submit', submitReportRename);
    $('report-rename-cancel').addEventListener('click', () => $('report-rename-dialog').close());
    $('report-rename-dialog').addEventListener('close', onReportRenameClose);
    $('report-rename-name').addEventListener('input', () => {
      if (!$('report-rename-error').hidden) showNameError('report-rename', '');
    });
    $('token-form').addEventListener('submit', issueToken);
    for (const id of ['token-name', 'token-user']) {
      $(id).addEventListener('input', () => { if (!$('token-error').hidden) showTokenError(''); });
    }
    $('token-copy').addEventListener('click', copySecret);
    $('token-done').addEventListener('click', () => {
      hideSecret();
      $('token-name').focus();
    });
    $('vm-filter').addEventListener('input', (e) => {
      state.vmFilter = e.target.value;
      queueVmRender();
    });
    $('vm-notice-close').addEventListener('click', () => showVmNotice(''));
    document.addEventListener('visibilitychange', () => {
      thumbSoon();
      if (!document.hidden) armExpiry(); // timers of a hidden tab run late
    });
    $('login-form').addEventListener('submit', submitLogin);
    $('sign-out').addEventListener('click', signOut);
    $('session-stay').addEventListener('click', staySignedIn);
    const present = () => {
      const was = userPresent();
      state.lastActivity = Date.now();
      if (!was) thumbSoon();
    };
    for (const type of ['pointerdown', 'pointermove', 'keydown', 'wheel', 'touchstart']) {
      document.addEventListener(type, present, { capture: true, passive: true });
    }
    $('confirm-ok').addEventListener('click', (e) => {
      e.preventDefault();
      runConfirm();
    });
    checkSession();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
