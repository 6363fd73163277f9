/* The VM console: #/console/<name> opens noVNC (Debian's, served under /ui/novnc/) on
 * kimchid's own WebSocket to the VM's VNC server; offered on running VMs with a VNC
 * screen when the host has noVNC. */

import { $ } from '../core/dom.js';
import { vmPath, capabilities } from '../core/api.js';
import { addVmControl } from './vms.js';

let open = null; // {name, rfb, closed}: the console shown

/** A console is offered for a running VM with a VNC screen, when the host has noVNC. */
function canConsole(vm) {
  const caps = capabilities();
  return !!vm && vm.state === 'running' && !!caps && !!caps.console
    && !!vm.graphics && vm.graphics.type === 'vnc';
}

function status(text, kind = 'info') {
  const st = $('console-status');
  st.textContent = text;
  st.dataset.kind = kind;
}

async function show(name) {
  $('console-title').textContent = `Console of ${name}`;
  if (open && open.name === name) return;
  close();
  const mine = { name, rfb: null, closed: false };
  open = mine;
  status('Connecting…');
  let RFB;
  try {
    ({ default: RFB } = await import('/ui/novnc/core/rfb.js'));
  } catch (e) {
    status('The console needs noVNC on the server (apt-get install novnc).', 'error');
    return;
  }
  if (open !== mine) return; // left meanwhile
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const rfb = new RFB($('console-screen'), `${scheme}//${location.host}${vmPath(name)}/console`,
    { wsProtocols: ['binary'] });
  rfb.scaleViewport = true;
  rfb.background = '#111';
  rfb.addEventListener('connect', () => {
    if (open === mine) status('Connected: keys and the mouse go to the VM.', 'ok');
  });
  rfb.addEventListener('disconnect', (ev) => {
    mine.closed = true; // noVNC complains when a closed one is disconnected again
    if (open !== mine) return;
    status(ev.detail && ev.detail.clean ? 'Disconnected: the VM stopped or its screen went away.'
      : 'The connection was lost. Reopen the console to try again.', 'error');
  });
  mine.rfb = rfb;
}

function close() {
  const c = open;
  open = null;
  if (c && c.rfb && !c.closed) {
    try { c.rfb.disconnect(); } catch (e) { /* already closed */ }
  }
  $('console-screen').replaceChildren();
}

export default {
  name: 'console',
  page: { id: 'console', match: /^#\/console\/(.+)$/, title: (name) => `${name} · console`, show, hide: close },
  init() {
    addVmControl({ key: 'console', text: 'Console', cls: 'btn-plain', place: 'actions', order: 0,
      shown: canConsole, run: (name) => { location.hash = `#/console/${encodeURIComponent(name)}`; } });
    $('console-cad').addEventListener('click', () => {
      if (open && open.rfb) open.rfb.sendCtrlAltDel();
    });
    $('console-full').addEventListener('click', () => {
      const screen = $('console-screen');
      if (screen.requestFullscreen) screen.requestFullscreen().catch(() => {});
    });
  },
};
