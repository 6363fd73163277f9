/* The host: what the machine is (GET /host) and how busy it is, as charts of its CPU,
 * memory, disk and network: the history (GET /host/stats/history) when the page is shown,
 * then a sample with each host.stats notice, drawn once per frame while shown. */

import { $, el, numberFmt, humanSize, durationText, plural } from '../core/dom.js';
import { api } from '../core/api.js';
import { isShown } from '../core/router.js';
import { signedIn } from '../core/session.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const CHARTS = ['chart-cpu', 'chart-mem', 'chart-disk', 'chart-net'];
const NOW = ['now-cpu', 'now-mem', 'now-disk-read', 'now-disk-write', 'now-net-recv', 'now-net-sent'];

let info = null; // GET /host, once the page has asked
let infoAt = 0; // when it answered (the uptime moves on from there)
let error = ''; // why GET /host failed
let samples = []; // the host's figures, oldest first: the history, then host.stats notices
let cap = 150; // samples the charts hold (the server's history, at least)
let interval = 2; // seconds between two samples
let queued = false;

async function loadHost() {
  try {
    const [i, hist] = await Promise.all([api('GET', '/host'), api('GET', '/host/stats/history')]);
    info = i.data || {};
    infoAt = Date.now();
    const h = hist.data || {};
    const times = Array.isArray(h.time) ? h.time : [];
    interval = typeof h.interval === 'number' ? h.interval : interval;
    samples = times.map((t, n) => ({
      time: t,
      cpu_utilization: h.cpu_utilization[n],
      memory: Object.fromEntries(Object.entries(h.memory || {}).map(([k, v]) => [k, v[n]])),
      disk_read_rate: h.disk_read_rate[n],
      disk_write_rate: h.disk_write_rate[n],
      net_recv_rate: h.net_recv_rate[n],
      net_sent_rate: h.net_sent_rate[n],
    }));
    cap = Math.max(cap, samples.length);
    error = '';
  } catch (e) {
    if (!signedIn()) return;
    error = e.message;
  }
  renderInfo();
  renderCharts();
}

function renderInfo() {
  const h = info;
  const dl = $('host-info');
  if (!h) {
    $('host-sub').textContent = error ? `The host cannot be described: ${error}` : 'Loading…';
    dl.replaceChildren();
    return;
  }
  const up = (h.uptime || 0) + (Date.now() - infoAt) / 1000;
  $('host-sub').textContent = `${h.hostname || 'This host'} · up ${durationText(up)}`;
  const c = h.cpus || {};
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
  const n = Math.max(cap, 2);
  const parts = [];
  for (const { values, cls, area } of series) {
    if (values.length < 2) continue;
    const x0 = W * (1 - (values.length - 1) / (n - 1));
    const pts = values.map((v, i) => {
      const x = x0 + (W * i) / (n - 1);
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

function renderCharts() {
  queued = false;
  if (!isShown('host')) return;
  const all = samples;
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
    ? `CPU use over the last ${durationText(all.length * interval)}: now ${$('now-cpu').textContent}`
    : 'CPU use: no sample yet');
  $('host-window').textContent = all.length
    ? `The last ${durationText(Math.max(60, all.length * interval))}, a sample every ${
      interval} s, live.` : 'Waiting for the first sample…';
  if (info) renderInfo(); // the uptime moves on
}

function hostSample(d) {
  if (typeof d.time !== 'number') return;
  if (samples.length && samples[samples.length - 1].time >= d.time) return;
  samples.push(d);
  while (samples.length > cap) samples.shift();
  if (!queued && isShown('host')) {
    queued = true;
    requestAnimationFrame(renderCharts);
  }
}

export default {
  name: 'host',
  page: {
    id: 'host',
    title: 'Host',
    show() {
      if (signedIn()) loadHost();
    },
  },
  events: {
    'host.stats': hostSample,
  },
  async resync() {
    // samples may have been lost: the history again (the page's own show() asks first)
    if (isShown('host') && info) await loadHost();
  },
  stop() {
    info = null;
    infoAt = 0;
    error = '';
    samples = [];
    $('host-sub').textContent = 'Loading…';
    $('host-info').replaceChildren();
    for (const id of CHARTS) $(id).replaceChildren();
    $('chart-cpu').setAttribute('aria-label', 'CPU use over the last minutes');
    for (const id of NOW) $(id).textContent = '—';
    $('now-mem-of').textContent = '';
    $('host-window').textContent = '';
  },
};
