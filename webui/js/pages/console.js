/* The VM console: #/console/<name> (the local host's VM) or #/console/<host>/<name>
 * (another host's) opens noVNC (Debian's, served under /ui/novnc/) on kimchid's own
 * WebSocket to the VM's VNC server, at the VM's address (/hosts/<host>/vms/<name>/console
 * for another host's); offered on running VMs with a VNC screen when the host has noVNC. */

import { $ } from '../core/dom.js';
import { api, capabilities } from '../core/api.js';
import { isRemoteHost } from './hosts.js';
import { addVmControl, addressOf, hostOf, vmTitle } from './vms.js';
import { _ } from '../core/i18n.js';

let open = null; // {ref, key, rfb, closed, connected}: the console shown

/** A console is offered for a running VM with a VNC screen, when the host has noVNC. */
function canConsole(vm) {
  const caps = capabilities();
  return !!vm && vm.state === 'running' && !!caps && !!caps.console
    && !!vm.graphics && vm.graphics.type === 'vnc';
}

/** The hash of a VM's console: its host in it for another host's VM. Each part is
 * encoded, so a "/" in the hash only ever separates them. */
function consoleHash(ref) {
  const name = encodeURIComponent(ref.name);
  return isRemoteHost(hostOf(ref)) ? `#/console/${encodeURIComponent(ref.host)}/${name}`
    : `#/console/${name}`;
}

/** The VM the hash names, {host, name} (host undefined: the local host's), read from the
 * hash as it is (the router's argument is decoded: a "/" of a name would be ambiguous). */
function consoleRef() {
  const m = /^#\/console\/(?:([^/]+)\/)?([^/]+)$/.exec(location.hash || '');
  if (!m) return null;
  const dec = (x) => {
    try { return decodeURIComponent(x); } catch (e) { return x; }
  };
  return m[1] === undefined ? { name: dec(m[2]) } : { host: dec(m[1]), name: dec(m[2]) };
}

function status(text, kind = 'info') {
  const st = $('console-status');
  st.textContent = text;
  st.dataset.kind = kind;
}

/** The console could not open: ask the server why (a plain GET of the console's address
 * answers the reason it refused the WebSocket, such as a screen another host's loopback
 * only reaches), else say the connection was lost. */
async function sayWhy(mine) {
  const lost = _('The connection was lost. Reopen the console to try again.');
  try {
    await api('GET', `${addressOf(mine.ref)}/console`);
  } catch (e) {
    const code = e.body && e.body.errcode;
    // KCHVM0022E: "not a WebSocket request", i.e. nothing else was wrong
    if (open === mine) status(e.status && code !== 'KCHVM0022E' ? e.message : lost, 'error');
    return;
  }
  if (open === mine) status(lost, 'error');
}

async function show() {
  const ref = consoleRef();
  if (!ref) return;
  const key = consoleHash(ref);
  $('console-title').textContent = _('Console of {ref}', { ref: vmTitle(ref) });
  if (open && open.key === key) return;
  close();
  const mine = { ref, key, rfb: null, closed: false, connected: false };
  open = mine;
  status(_('Connecting…'));
  let RFB;
  try {
    ({ default: RFB } = await import('/ui/novnc/core/rfb.js'));
  } catch (e) {
    status(_('The console needs noVNC on the server (apt-get install novnc).'), 'error');
    return;
  }
  if (open !== mine) return; // left meanwhile
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const rfb = new RFB($('console-screen'), `${scheme}//${location.host}${addressOf(ref)}/console`,
    { wsProtocols: ['binary'] });
  rfb.scaleViewport = true;
  rfb.background = '#111';
  rfb.addEventListener('connect', () => {
    mine.connected = true;
    if (open === mine) status(_('Connected: keys and the mouse go to the VM.'), 'ok');
  });
  rfb.addEventListener('disconnect', (ev) => {
    mine.closed = true; // noVNC complains when a closed one is disconnected again
    if (open !== mine) return;
    if (ev.detail && ev.detail.clean) {
      status(_('Disconnected: the VM stopped or its screen went away.'), 'error');
    } else if (!mine.connected) {
      sayWhy(mine);
    } else {
      status(_('The connection was lost. Reopen the console to try again.'), 'error');
    }
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
  page: {
    id: 'console',
    match: /^#\/console\/(.+)$/,
    title: () => {
      const ref = consoleRef();
      return ref ? _('{vm} · console', { vm: vmTitle(ref) }) : _('Console · console');
    },
    show,
    hide: close,
  },
  init() {
    addVmControl({ key: 'console', text: _('Console'), cls: 'btn-plain', place: 'actions', order: 0,
      shown: canConsole, run: (ref) => { location.hash = consoleHash(ref); } });
    $('console-cad').addEventListener('click', () => {
      if (open && open.rfb) open.rfb.sendCtrlAltDel();
    });
    $('console-full').addEventListener('click', () => {
      const screen = $('console-screen');
      if (screen.requestFullscreen) screen.requestFullscreen().catch(() => {});
    });
  },
};
