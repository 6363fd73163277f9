/* kimchi web UI: the ISO library and live tasks.
 *
 * No framework, no build step. State lives in two maps (ISOs by path, tasks by id) that the
 * REST listings fill and the event stream keeps current. One WebSocket to /events; on close it
 * reconnects with back-off and resumes with ?since=<last event id>, so nothing is missed, and
 * events are de-duplicated by id. Server data only ever reaches the page through textContent.
 */
(() => {
  'use strict';

  const TERMINAL = new Set(['finished', 'failed', 'cancelled']);
  const KIND_LABELS = { 'iso.scan': 'ISO scan' };
  const COMPONENTS = { redis: 'Redis', libvirt: 'libvirt', workers: 'the workers' };
  const COUNTERS = [['files', 'Files'], ['dirs', 'Folders'], ['isos', 'ISOs'],
    ['skipped', 'Skipped']];
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 5000;
  const MAX_TASKS = 100;
  const SEEN_MAX = 5000;

  const $ = (id) => document.getElementById(id);
  const numberFmt = new Intl.NumberFormat();
  const timeFmt = new Intl.DateTimeFormat(undefined,
    { hour: '2-digit', minute: '2-digit', second: '2-digit' });
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

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
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
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const reason = data && typeof data.reason === 'string' ? data.reason
        : `${resp.status} ${resp.statusText}`;
      const err = new Error(reason);
      err.status = resp.status;
      err.body = data;
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
    tr.append(name, distro, size, boot, path, by);
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
      $('iso-empty-text').textContent = 'No ISO images yet. Scan a folder to find some.';
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
    const all = [...state.tasks.values()].filter((t) => !t.stub);
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

  async function cancelTask(id, button) {
    const t = state.tasks.get(id);
    if (!t || !t.el) return;
    const errEl = t.el.querySelector('.task-error');
    errEl.hidden = true;
    if (button) button.disabled = true;
    try {
      const r = await api('DELETE', `/tasks/${id}`);
      t.cancelling = !TERMINAL.has(r.data.status);
      upsertTask(r.data, { announceIt: false });
      renderTask(t);
      updateTaskSummary();
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
      const r = await api('DELETE', `/tasks/${id}`);
      t.cancelling = !TERMINAL.has(r.data.status);
      upsertTask(r.data, { announceIt: false });
      renderTask(t);
      updateTaskSummary();
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
    return { tasks: Array.isArray(t.data) ? t.data : [], isos: Array.isArray(i.data) ? i.data : [],
      cursor };
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
      case 'task.finished':
      case 'task.failed':
      case 'task.cancelled':
        upsertTask(d);
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
      case 'service.degraded':
        showDegraded({
          title: `Service degraded: ${COMPONENTS[d.component] || d.component || 'a component'} is ${
            d.status || 'down'}`,
          reason: d.reason || '',
          fix: d.fix || '',
        });
        break;
      case 'service.recovered':
        clearDegraded();
        break;
      default:
        break; // not shown by this UI yet
    }
  }

  function connect() {
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
      if (state.ws !== ws) return;
      state.ws = null;
      state.open = false;
      state.everOpen = true;
      updateConn();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const delay = state.backoff * (0.8 + Math.random() * 0.2);
    state.backoff = Math.min(BACKOFF_MAX, state.backoff * 2);
    setTimeout(connect, delay);
  }

  async function boot() {
    try {
      applyListing(await list());
    } catch (e) {
      // kimchid is away: say so and retry with the same back-off as the socket
      state.everOpen = true;
      updateConn();
      $('iso-count').textContent = 'Waiting for the server…';
      const delay = state.backoff;
      state.backoff = Math.min(BACKOFF_MAX, state.backoff * 2);
      setTimeout(boot, delay);
      return;
    }
    state.backoff = BACKOFF_MIN;
    connect();
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
    $('nav-isos').addEventListener('click', (e) => {
      e.preventDefault();
      $('main').focus({ preventScroll: true });
      window.scrollTo({ top: 0, behavior: 'smooth' });
    });
    updateConn();
    renderIsos();
    boot();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
