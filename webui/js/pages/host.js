/* The host: what the machine is (GET /host) and how busy it is, as charts of its CPU,
 * memory, disk and network: the history (GET /host/stats/history) when the page is shown,
 * then a sample with each host.stats notice, drawn once per frame while shown.
 *
 * With several hosts (see hosts.js) a Host select chooses whose figures the page shows.
 * Another host is described by what GET /hosts/<host> says (its URI, state, CPUs, memory,
 * VMs), and its charts come from GET /hosts/<host>/stats/history, then the host.stats
 * notices naming it. Its libvirtd tells its CPU and memory but not its disk or network
 * traffic: those cards say so rather than draw a flat line. A figure not told (null) is a
 * gap in its chart, never a zero. Only the samples of the host shown are kept. */

import { $, el, numberFmt, humanSize, durationText } from '../core/dom.js';
import { api } from '../core/api.js';
import { isShown } from '../core/router.js';
import { signedIn } from '../core/session.js';
import { fillHostSelect, hostList, hostPath, hostStateText, localHost, manyHosts,
  onHosts } from './hosts.js';
import { _, _n } from '../core/i18n.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const CHARTS = ['chart-cpu', 'chart-mem', 'chart-disk', 'chart-net'];
const NOW = ['now-cpu', 'now-mem', 'now-disk-read', 'now-disk-write', 'now-net-recv', 'now-net-sent'];
const RATES = ['disk_read_rate', 'disk_write_rate', 'net_recv_rate', 'net_sent_rate'];
// the cards whose figures another host's libvirtd may not tell: [card, its figures, what]
const UNTOLD = [['disk', ['disk_read_rate', 'disk_write_rate'], _('disk reads and writes')],
  ['net', ['net_recv_rate', 'net_sent_rate'], _('network traffic')]];

let chosen = ''; // the host whose figures are shown ('' for the local one)
let loads = 0; // GETs of the page asked: an answer for a host no longer shown is dropped
let info = null; // GET /host (the local host), or GET /hosts/<host> (another), once asked
let infoAt = 0; // when it answered (the uptime moves on from there)
let error = ''; // why that GET failed
let statsError = ''; // why the history could not be read
let samples = []; // the shown host's figures, oldest first: the history, then host.stats notices
let cap = 150; // samples the charts hold (the server's history, at least)
let interval = 2; // seconds between two samples
let queued = false;

/** The name of the host whose figures the page shows. */
const shownHost = () => chosen || localHost();
const showsLocal = () => shownHost() === localHost();
const isNumber = (v) => typeof v === 'number' && isFinite(v);

/** The samples of a GET .../stats/history answer: one object per time, like a notice's. */
function historySamples(h) {
  const times = Array.isArray(h.time) ? h.time : [];
  const at = (k, n) => (Array.isArray(h[k]) ? h[k][n] : null);
  const memory = h.memory && typeof h.memory === 'object' ? h.memory : {};
  return times.map((t, n) => ({
    time: t,
    cpu_utilization: at('cpu_utilization', n),
    memory: Object.fromEntries(Object.entries(memory).map(([k, v]) => [k, Array.isArray(v) ? v[n] : null])),
    ...Object.fromEntries(RATES.map((k) => [k, at(k, n)])),
  }));
}

async function loadHost() {
  const host = shownHost();
  const local = showsLocal();
  const seq = ++loads;
  const base = local ? '/host' : hostPath(host);
  const [about, hist] = await Promise.allSettled([api('GET', base), api('GET', `${base}/stats/history`)]);
  if (seq !== loads || host !== shownHost()) return; // another host chosen meanwhile
  if (!signedIn()) return;
  if (about.status === 'fulfilled') {
    info = about.value.data || {};
    infoAt = Date.now();
    error = '';
  } else {
    error = about.reason.message;
  }
  if (hist.status === 'fulfilled') {
    const h = hist.value.data || {};
    interval = isNumber(h.interval) ? h.interval : interval;
    const past = historySamples(h);
    const last = past.length ? past[past.length - 1].time : -Infinity;
    // the notices that came while it was asked for, after it
    samples = [...past, ...samples.filter((s) => s.time > last)];
    cap = Math.max(cap, samples.length);
    statsError = '';
  } else {
    statsError = hist.reason.message;
  }
  renderInfo();
  renderCharts();
}

/** The rows of the card of the local machine (GET /host). */
function localRows(h) {
  const c = h.cpus || {};
  const perSocket = Math.max(1, Math.round((c.cores || c.online) / (c.sockets || 1)));
  const topo = c.sockets ? [_n('{n} socket', '{n} sockets', c.sockets),
    _n('{n} core', '{n} cores', perSocket), _n('{n} thread', '{n} threads', c.threads_per_core || 1)].join(' × ') : '';
  return [
    [_('Operating system'), [h.os_distro, h.os_version, h.os_codename ? `(${h.os_codename})` : '']
      .filter(Boolean).join(' ')],
    [_('Kernel'), `${h.kernel || '—'} ${h.architecture || ''}`.trim()],
    [_('Processor'), h.cpu_mhz ? _('{model}, {mhz} MHz', { model: h.cpu_model || '—', mhz: numberFmt.format(h.cpu_mhz) })
      : h.cpu_model || '—'],
    [_('CPUs'), topo ? _('{online} online ({topology})', { online: c.online || '—', topology: topo })
      : _('{online} online', { online: c.online || '—' })],
    [_('Memory'), humanSize(h.memory)],
    ['libvirt', h.libvirt_version || _('not reachable')],
  ];
}

/** The rows of the card of another host (GET /hosts/<host>): what kimchi knows of it. */
function otherRows(h) {
  const count = (n) => (isNumber(n) ? numberFmt.format(n) : '—');
  const up = h.state === 'connected';
  const vms = h.vms && typeof h.vms === 'object' ? h.vms : {};
  const reason = !up && h.reason ? `: ${h.reason}` : '';
  return [
    [_('libvirt URI'), h.uri || '—'],
    [_('State'), `${hostStateText(h.state)}${reason}`],
    [_('CPUs'), count(h.cpus)],
    [_('Memory'), h.memory ? humanSize(h.memory) : '—'],
    [_('Virtual machines'), up ? _('{running} running of {total}', { running: count(vms.running), total: count(vms.total) }) : '—'],
    [_('Workers'), count(h.workers)],
  ];
}

function renderInfo() {
  const h = info;
  const dl = $('host-info');
  const local = showsLocal();
  $('host-info-title').textContent = local ? _('This machine') : _('Host {shownHost}', { shownHost: shownHost() });
  if (!h) {
    $('host-sub').textContent = error ? _('The host cannot be described: {error}', { error }) : _('Loading…');
    dl.replaceChildren();
    return;
  }
  if (local) {
    const up = (h.uptime || 0) + (Date.now() - infoAt) / 1000;
    $('host-sub').textContent = _('{host} · up {uptime}', { host: h.hostname || _('This host'), uptime: durationText(up) });
  } else {
    const through = h.state === 'connected' ? _(' through its libvirtd') : '';
    $('host-sub').textContent = `${shownHost()} · ${hostStateText(h.state).toLowerCase()}${through}`;
  }
  const items = [];
  for (const [k, v] of local ? localRows(h) : otherRows(h)) items.push(el('dt', null, k), el('dd', null, v));
  dl.replaceChildren(...items);
}

/** The runs of numbers of ``values``, as [index, value] pairs: a null is a gap between two. */
function runsOf(values) {
  const runs = [];
  let run = [];
  values.forEach((v, i) => {
    if (isNumber(v)) {
      run.push([i, v]);
    } else if (run.length) {
      runs.push(run);
      run = [];
    }
  });
  if (run.length) runs.push(run);
  return runs;
}

/** Lines through the samples, newest on the right; ``max`` is the top of the chart. A value
 * that is not a number (not told) leaves a gap. */
function drawChart(svg, series, max) {
  const W = 300;
  const H = 80;
  const n = Math.max(cap, 2);
  const parts = [];
  for (const { values, cls, area } of series) {
    const x0 = W * (1 - (values.length - 1) / (n - 1));
    for (const run of runsOf(values)) {
      if (run.length < 2) continue;
      const xs = run.map(([i]) => x0 + (W * i) / (n - 1));
      const pts = run.map(([, v], j) => {
        const y = H - 2 - (H - 4) * Math.min(1, Math.max(0, v / (max || 1)));
        return `${xs[j].toFixed(1)},${y.toFixed(1)}`;
      });
      if (area) {
        const a = document.createElementNS(SVG_NS, 'polygon');
        a.setAttribute('class', area);
        const [first, last] = [xs[0], xs[xs.length - 1]].map((x) => x.toFixed(1));
        a.setAttribute('points', `${first},${H} ${pts.join(' ')} ${last},${H}`);
        parts.push(a);
      }
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('class', cls);
      line.setAttribute('points', pts.join(' '));
      parts.push(line);
    }
  }
  svg.replaceChildren(...parts);
}

function rateText(bps) {
  return isNumber(bps) ? `${humanSize(bps)}/s` : '—';
}

/** Memory in use (total − available) of a sample, or null when not told. */
function usedOf(s) {
  const m = s && s.memory;
  return m && isNumber(m.total) && m.total > 0 && isNumber(m.avail) ? m.total - m.avail : null;
}

/** Whether the shown host's figures ``keys`` are told: always for the local host; for
 * another, once a sample holds one (its libvirtd tells no disk or network traffic). */
function told(all, keys) {
  return showsLocal() || all.some((s) => keys.some((k) => isNumber(s[k])));
}

/** Show a card's chart, or instead a note saying why there is none (``note``: '' to show it). */
function showChartOrNote(card, note) {
  $(`chart-${card}`).toggleAttribute('hidden', !!note); // an <svg>: no .hidden of its own
  $(`chart-${card}-now`).hidden = !!note;
  $(`chart-${card}-none`).hidden = !note;
  $(`chart-${card}-none`).textContent = note;
}

function renderCharts() {
  queued = false;
  if (!isShown('host')) return;
  const host = shownHost();
  const all = samples;
  const last = all[all.length - 1];
  const pick = (k) => all.map((s) => s[k]);
  const box = $('host-charts');
  box.dataset.host = host;
  box.dataset.samples = String(all.length);
  const cpu = last ? last.cpu_utilization : null;
  drawChart($('chart-cpu'), [{ values: pick('cpu_utilization'), cls: 'line-a', area: 'area-a' }], 100);
  const cpuTold = all.some((s) => isNumber(s.cpu_utilization));
  $('chart-cpu-none').hidden = cpuTold || !all.length || showsLocal();
  $('chart-cpu-none').textContent = _('{host}\'s libvirtd has not told its CPU use.', { host });
  const total = last && last.memory && isNumber(last.memory.total) ? last.memory.total : 0;
  drawChart($('chart-mem'), [{ values: all.map(usedOf), cls: 'line-a', area: 'area-a' }], total);
  const top = (keys) => Math.max(1024, ...all.flatMap((s) => keys.map((k) => s[k] || 0))) * 1.1;
  for (const [card, keys, what] of UNTOLD) {
    const shown = told(all, keys);
    showChartOrNote(card, shown ? '' : _('libvirt does not report the {what} of {host}: kimchi measures them on its own machine only.', { what, host }));
    if (!shown) {
      $(`chart-${card}`).replaceChildren();
      continue;
    }
    drawChart($(`chart-${card}`), [{ values: pick(keys[0]), cls: 'line-a' },
      { values: pick(keys[1]), cls: 'line-b' }], top(keys));
  }
  $('now-cpu').textContent = isNumber(cpu) ? `${cpu.toFixed(1)} %` : '—';
  const used = usedOf(last);
  $('now-mem').textContent = isNumber(used) ? humanSize(used) : '—';
  $('now-mem-of').textContent = isNumber(used) && total ? _('in use of {total}', { total: humanSize(total) }) : '';
  $('now-disk-read').textContent = last ? rateText(last.disk_read_rate) : '—';
  $('now-disk-write').textContent = last ? rateText(last.disk_write_rate) : '—';
  $('now-net-recv').textContent = last ? rateText(last.net_recv_rate) : '—';
  $('now-net-sent').textContent = last ? rateText(last.net_sent_rate) : '—';
  $('chart-cpu').setAttribute('aria-label', !last ? _('CPU use: no sample yet')
    : !cpuTold ? _('CPU use: not told by {host}\'s libvirtd', { host })
      : _('CPU use over the last {duration}: now {now}', { duration: durationText(all.length * interval), now: $('now-cpu').textContent }));
  if (statsError && !all.length) {
    $('host-window').textContent = _('The figures of {host} cannot be read: {statsError}', { host, statsError });
  } else {
    $('host-window').textContent = all.length
      ? _('The last {interval}, a sample every {interval2} s, live.', { interval: durationText(Math.max(60, all.length * interval)), interval2: interval }) : _('Waiting for the first sample…');
  }
  if (info && showsLocal()) renderInfo(); // the uptime moves on
}

function queueCharts() {
  if (!queued && isShown('host')) {
    queued = true;
    requestAnimationFrame(renderCharts);
  }
}

function hostSample(d) {
  if (typeof d.time !== 'number') return;
  // every notice names its host; one that does not is the local host's (an older kimchid)
  const from = typeof d.host === 'string' ? d.host : localHost();
  if (from !== shownHost()) return; // another host's: never in these charts
  if (samples.length && samples[samples.length - 1].time >= d.time) return;
  samples.push(d);
  while (samples.length > cap) samples.shift();
  queueCharts();
}

/** Forget what is shown, as before the first answer. */
function clearShown() {
  info = null;
  infoAt = 0;
  error = '';
  statsError = '';
  samples = [];
  $('host-sub').textContent = _('Loading…');
  $('host-info').replaceChildren();
  for (const id of CHARTS) $(id).replaceChildren();
  $('chart-cpu').setAttribute('aria-label', _('CPU use over the last minutes'));
  for (const id of NOW) $(id).textContent = '—';
  $('now-mem-of').textContent = '';
  $('host-window').textContent = '';
  $('chart-cpu-none').hidden = true;
  for (const [card] of UNTOLD) showChartOrNote(card, '');
  delete $('host-charts').dataset.host;
  delete $('host-charts').dataset.samples;
}

/** Show the figures of ``name`` (a host's name): its own history, none of the last one's. */
function chooseHost(name) {
  if (name === shownHost()) return;
  chosen = name === localHost() ? '' : name;
  loads += 1; // an answer for the host shown before is dropped
  clearShown();
  $('host-info-title').textContent = showsLocal() ? _('This machine') : _('Host {shownHost}', { shownHost: shownHost() });
  if (isShown('host') && signedIn()) loadHost();
}

/** The Host select (shown with several hosts) and, for another host, its live state. */
function fillHosts() {
  const many = manyHosts();
  $('host-pick-field').hidden = !many;
  const now = many ? fillHostSelect($('host-pick'), shownHost()) : localHost();
  if (now !== shownHost()) {
    chooseHost(now); // the host shown was removed: the local one again
    return;
  }
  const h = hostList().find((x) => x.name === now);
  if (info && h && !showsLocal()) { // its state, VM counts... as the Hosts page lists them
    info = { ...info, ...h };
    if (isShown('host')) renderInfo();
  }
}

export default {
  name: 'host',
  page: {
    id: 'host',
    title: _('Host'),
    show() {
      if (signedIn()) loadHost();
    },
  },
  events: {
    'host.stats': hostSample,
  },
  init() {
    onHosts(fillHosts);
    $('host-pick').addEventListener('change', (e) => chooseHost(e.target.value));
  },
  async resync() {
    // samples may have been lost: the history again (the page's own show() asks first)
    if (isShown('host') && info) await loadHost();
  },
  stop() {
    chosen = '';
    loads += 1;
    clearShown();
    $('host-info-title').textContent = _('This machine');
    $('host-pick-field').hidden = true;
    $('host-pick').replaceChildren();
  },
};
