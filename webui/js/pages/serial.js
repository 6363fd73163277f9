/* The VM's serial console: #/serial/<name> (the local host's VM) or #/serial/<host>/<name>
 * (another host's) shows a terminal (xterm.js, Debian's node-xterm, served by kimchid as
 * one classic script under /ui/xterm/) on kimchid's WebSocket to the VM's serial console,
 * at the VM's address (/hosts/<host>/vms/<name>/serial for another host's).
 *
 * The guest's bytes arrive as binary messages and are decoded as one UTF-8 stream (a
 * character may be split between two messages); keys typed are sent as text. The newest
 * client takes a console over (see docs/api.md): a console taken by another window is
 * not reopened by itself, or two windows would take it from each other forever. */

import { $ } from '../core/dom.js';
import { api, capabilities } from '../core/api.js';
import { isRemoteHost } from './hosts.js';
import { addVmControl, addressOf, hostOf, vmTitle } from './vms.js';
import { _ } from '../core/i18n.js';

let open = null; // {ref, key, ws, decoder, opened}: the console shown
let term = null; // the one terminal (xterm.js), kept between consoles
let loading = null; // the promise of xterm.js loaded

/** A serial console is offered for a running VM that has one, when the host serves
 * xterm.js. */
function canSerial(vm) {
  const caps = capabilities();
  return !!vm && vm.state === 'running' && !!vm.serial_console && !!caps && !!caps.serial_console;
}

/** The hash of a VM's serial console: its host in it for another host's VM. */
function serialHash(ref) {
  const name = encodeURIComponent(ref.name);
  return isRemoteHost(hostOf(ref)) ? `#/serial/${encodeURIComponent(ref.host)}/${name}`
    : `#/serial/${name}`;
}

/** The VM the hash names, {host, name}, read from the hash as it is (see console.js). */
function serialRef() {
  const m = /^#\/serial\/(?:([^/]+)\/)?([^/]+)$/.exec(location.hash || '');
  if (!m) return null;
  const dec = (x) => {
    try { return decodeURIComponent(x); } catch (e) { return x; }
  };
  return m[1] === undefined ? { name: dec(m[2]) } : { host: dec(m[1]), name: dec(m[2]) };
}

function status(text, kind = 'info') {
  const st = $('serial-status');
  st.textContent = text;
  st.dataset.kind = kind;
}

/** xterm.js is no ES module: a classic script from kimchid (the page's CSP allows its own
 * scripts, not inline ones), and its style sheet; both loaded once, when first needed. */
function loadXterm() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/ui/xterm/xterm.css';
      document.head.append(css);
      const script = document.createElement('script');
      script.src = '/ui/xterm/xterm.js';
      script.onload = () => (window.Terminal ? resolve(window.Terminal) : reject(new Error('no Terminal')));
      script.onerror = () => reject(new Error('xterm.js did not load'));
      document.head.append(script);
    });
    loading.catch(() => { loading = null; }); // another try on the next visit
  }
  return loading;
}

/** Size the terminal to its box: once the page is laid out (the next frame), and again
 * whenever the window changes. */
function fit() {
  requestAnimationFrame(() => {
    if (term && !$('serial').hidden) {
      try { term.fit(); } catch (e) { /* not laid out */ }
    }
  });
}

/** The socket closed before it opened: ask the server why (a plain GET of the address
 * answers the reason it refused the WebSocket: not running, not yours...). */
async function sayWhy(mine) {
  const lost = _('Closed: the connection was lost. Reconnect to try again.');
  try {
    await api('GET', `${addressOf(mine.ref)}/serial`);
  } catch (e) {
    const code = e.body && e.body.errcode;
    // KCHVM0022E: "not a WebSocket request", i.e. nothing else was wrong
    if (open === mine) status(e.status && code !== 'KCHVM0022E' ? _('Closed: {reason}', { reason: e.message }) : lost, 'error');
    return;
  }
  if (open === mine) status(lost, 'error');
}

function connect() {
  const ref = serialRef();
  if (!ref || !term) return;
  disconnect();
  const mine = { ref, key: serialHash(ref), ws: null, decoder: new TextDecoder(), opened: false };
  open = mine;
  $('serial-reconnect').hidden = true;
  status(_('Connecting…'));
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${addressOf(ref)}/serial`);
  ws.binaryType = 'arraybuffer';
  mine.ws = ws;
  ws.onopen = () => {
    mine.opened = true;
    if (open !== mine) return;
    status(_('Connected: keys typed go to the VM.'), 'ok');
    term.focus();
  };
  ws.onmessage = (ev) => {
    if (open !== mine) return;
    term.write(typeof ev.data === 'string' ? ev.data
      : mine.decoder.decode(new Uint8Array(ev.data), { stream: true }));
  };
  ws.onclose = (ev) => {
    if (open !== mine) return;
    $('serial-reconnect').hidden = false;
    if (!mine.opened) sayWhy(mine);
    else if (ev.reason) status(_('Closed: {reason}.', { reason: ev.reason }), 'error');
    else status(_('Closed: the connection was lost. Reconnect to try again.'), 'error');
  };
}

function disconnect() {
  const c = open;
  open = null;
  if (c && c.ws && c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
}

async function show() {
  const ref = serialRef();
  if (!ref) return;
  const key = serialHash(ref);
  $('serial-title').textContent = _('Serial console of {ref}', { ref: vmTitle(ref) });
  if (open && open.key === key) return;
  disconnect();
  status(_('Connecting…'));
  $('serial-reconnect').hidden = true;
  let Terminal;
  try {
    Terminal = await loadXterm();
  } catch (e) {
    status(_('The serial console needs xterm.js on the server (apt-get install node-xterm).'), 'error');
    return;
  }
  if (serialRef() === null || serialHash(serialRef()) !== key) return; // left meanwhile
  if (!term) {
    // screenReaderMode: the rows' text is also kept in the page (the canvas alone says
    // nothing to a screen reader)
    term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14,
      screenReaderMode: true, theme: { background: '#111111' } });
    term.open($('serial-screen'));
    term.on('data', (data) => {
      if (open && open.ws && open.ws.readyState === WebSocket.OPEN) open.ws.send(data);
    });
  } else {
    term.reset();
  }
  fit();
  connect();
}

function hide() {
  disconnect();
}

export default {
  name: 'serial',
  page: {
    id: 'serial',
    match: /^#\/serial\/(.+)$/,
    title: () => {
      const ref = serialRef();
      return ref ? _('{vm} · serial console', { vm: vmTitle(ref) }) : _('Serial console · serial console');
    },
    show,
    hide,
  },
  init() {
    addVmControl({ key: 'serial', text: _('Serial'), cls: 'btn-plain', place: 'actions', order: 1,
      shown: canSerial, run: (ref) => { location.hash = serialHash(ref); } });
    $('serial-reconnect').addEventListener('click', () => {
      if (term) term.write('\r\n');
      connect();
    });
    window.addEventListener('resize', fit);
  },
};
