/* Networks: the host's virtual networks (made, started, stopped, deleted). A NAT or an
 * isolated network takes a subnet (a free one if left empty); a bridged or a macvtap one,
 * a host interface of GET /interfaces. A network changed elsewhere, or a VM made or
 * deleted (what uses a network), lists them again while the page is shown.
 *
 * With several hosts (see hosts.js) every host's networks are listed, each row saying its
 * host ("on h2") and keyed by host and name (each host has its "default"), with a filter
 * to show one host's; another host's network is started, stopped and deleted at its
 * canonical address (/hosts/<host>/networks/<name>/...). The new-network form offers the
 * host to make it on: another host's is made at /hosts/<host>/networks, from that host's
 * interfaces (/hosts/<host>/interfaces). */

import { $, el, announce, numberFmt, usedByText, actionButton } from '../core/dom.js';
import { api, remove } from '../core/api.js';
import { askConfirm } from '../core/dialogs.js';
import { Listing, showListingState } from '../core/listing.js';
import { isShown } from '../core/router.js';
import { isAdmin, signedIn } from '../core/session.js';
import { fillHostSelect, hostCollectionPath, hostObjectPath, localHost, manyHosts, onHosts,
  replaceHostRowsKeepingFocus } from './hosts.js';
import { _, _n } from '../core/i18n.js';

export const NET_KINDS = { nat: _('NAT'), isolated: _('Isolated'), bridge: _('Bridged'), macvtap: 'macvtap',
  route: _('Routed'), open: _('Open') };

const netErrors = new Map(); // netKey -> why its last action failed
let ifaces = null; // the new network's host's interfaces: what a bridged or macvtap one may use
let ifacesOf = null; // the host whose interfaces ``ifaces`` are (or are being read)
let hostFilter = ''; // '' for every host's networks, else one host's name
let newHost = ''; // the host the new-network form makes its network on ('' until hosts are known)

/** A network's key: its host and its name (one name may be on several hosts). */
const netKey = (n) => `${n.host || ''}\n${n.name}`;
/** The address of a network: the canonical one for another host's. */
const netPath = (n) => hostObjectPath(n.host, 'networks', n.name);
/** " on h2" with several hosts, to tell the networks of one name apart; else nothing. */
const onHost = (n) => (manyHosts() && n.host ? _(' on {host}', { host: n.host }) : '');

const nets = new Listing({
  path: '/networks',
  render: () => renderNetworks(),
  active: () => isShown('networks'),
});

// -- the new-network form ------------------------------------------------------------------------

/** The host the form makes its network on: with several hosts, the one chosen. */
const formHost = () => (manyHosts() && newHost ? newHost : localHost());

/** Read the interfaces of the form's host (once per host chosen). */
async function loadInterfaces() {
  const host = formHost();
  ifacesOf = host;
  ifaces = null;
  fillInterfaces();
  let found;
  try {
    const r = await api('GET', hostCollectionPath(host, 'interfaces'));
    found = Array.isArray(r.data) ? r.data : [];
  } catch (e) {
    found = [];
  }
  if (ifacesOf !== host) return; // another host chosen meanwhile
  ifaces = found;
  fillInterfaces();
}

function fillInterfaces() {
  const kind = $('net-connection').value;
  const wanted = kind === 'bridge' ? ['bridge'] : ['nic', 'bonding', 'vlan'];
  const sel = $('net-iface');
  const keep = sel.value;
  const opts = (ifaces || []).filter((i) => wanted.includes(i.type)).map((i) => {
    const text = `${i.name}${i.ipaddr ? ` (${i.ipaddr})` : ''}`;
    const o = el('option', null, i.status === 'down' ? _('{iface} — down', { iface: text }) : text);
    o.value = i.name;
    return o;
  });
  if (!opts.length) {
    const on = manyHosts() ? _(' on {host}', { host: formHost() }) : _(' on this host');
    const o = el('option', null, ifaces === null ? _('Loading…')
      : kind === 'bridge' ? _('No bridge{on}', { on }) : _('No interface{on}', { on }));
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
  if (!name) { showNetError(_('Give the network a name.'), 'net-name'); $('net-name').focus(); return; }
  const body = { name, connection };
  if (connection === 'nat' || connection === 'isolated') {
    const subnet = $('net-subnet').value.trim();
    if (subnet) body.subnet = subnet;
  } else {
    const iface = $('net-iface').value;
    if (!iface) {
      const which = manyHosts() ? formHost() : _('This host');
      showNetError(connection === 'bridge' ? _('{which} has no bridge to use.', { which })
        : _('Choose the host interface to share.'), 'net-iface');
      return;
    }
    body.interface = iface;
  }
  // with several hosts, on the host chosen (the root collection is the local host's)
  const host = manyHosts() ? formHost() : '';
  const btn = $('net-create');
  btn.disabled = true;
  try {
    await api('POST', hostCollectionPath(host, 'networks'), body);
    $('net-name').value = '';
    $('net-subnet').value = '';
    announce(host ? _('Network {name} made on {host}', { name, host }) : _('Network {name} made', { name }));
    await nets.load();
  } catch (e) {
    const code = e.body && e.body.errcode;
    showNetError(e.message, ['KCHNET0009E', 'KCHNET0011E'].includes(code) ? 'net-subnet'
      : code === 'KCHNET0010E' || (code === 'KCHNET0004E' && body.interface) ? 'net-iface'
        : 'net-name');
  } finally {
    btn.disabled = false;
  }
}

// -- the list ----------------------------------------------------------------------------------

function networkRow(n) {
  const tr = el('tr');
  tr.dataset.name = n.name;
  const name = el('td', 'cell-name', n.name);
  const on = onHost(n);
  if (on) {
    tr.dataset.host = n.host;
    name.append(el('span', 'obj-host', _('on {host}', { host: n.host })));
  }
  const st = el('td');
  st.append(el('span', `state state-${n.state === 'active' ? 'running' : 'shutoff'}`,
    n.state === 'active' ? _('Active') : _('Inactive')));
  if (n.autostart) st.append(el('span', 'help', ` ${_('autostart')}`));
  const addr = el('td');
  if (n.subnet) {
    addr.append(el('span', 'mono', n.subnet));
    if (n.dhcp && n.dhcp.start) addr.append(el('span', 'net-addr', _('DHCP {start} – {end}', { start: n.dhcp.start, end: n.dhcp.end })));
  } else {
    addr.append(el('span', 'mono', (n.interfaces || []).join(', ') || n.bridge || '—'));
  }
  const act = el('td', 'cell-actions');
  if (isAdmin()) {
    if (n.state === 'active') {
      act.append(actionButton(_('Deactivate'), 'btn-plain', _('Deactivate {name}{on}', { name: n.name, on }),
        (b) => networkAction(n, 'deactivate', b)));
    } else {
      act.append(actionButton(_('Activate'), 'btn-plain', _('Activate {name}{on}', { name: n.name, on }),
        (b) => networkAction(n, 'activate', b)));
      act.append(actionButton(_('Delete'), 'btn-danger-outline net-delete', _('Delete {name}{on}', { name: n.name, on }),
        () => askDeleteNetwork(n)));
    }
  }
  const err = netErrors.get(netKey(n));
  if (err) name.append(el('p', 'row-error', err));
  tr.append(name, st, el('td', null, NET_KINDS[n.connection] || n.connection), addr,
    el('td', null, usedByText(n.used_by)), act);
  return tr;
}

function renderNetworks() {
  const all = nets.items || [];
  const list = manyHosts() && hostFilter ? all.filter((n) => n.host === hostFilter) : all;
  replaceHostRowsKeepingFocus($('net-rows'), list.map(networkRow));
  const activeN = list.filter((n) => n.state === 'active').length;
  showListingState(nets, { prefix: 'net', noun: (n) => _n('{n} network', '{n} networks', n), what: _('networks'),
    emptyText: _('No networks.'), extra: _(' · {activeN} active', { activeN }) });
  if (list.length !== all.length) { // filtered: "1 of 3 networks · 1 active", or none of them
    $('net-count').textContent = _n('{shown} of {n} network · {active} active', '{shown} of {n} networks · {active} active',
      all.length, { shown: numberFmt.format(list.length), active: activeN });
    if (!list.length && !nets.error) {
      $('net-empty-text').textContent = _('No networks on {hostFilter}.', { hostFilter });
      $('net-empty').hidden = false;
    }
  }
}

async function networkAction(n, action, button) {
  button.disabled = true;
  netErrors.delete(netKey(n));
  try {
    await api('POST', `${netPath(n)}/${action}`);
    announce(action === 'activate' ? _('{name}{on} activated', { name: n.name, on: onHost(n) })
      : _('{name}{on} deactivated', { name: n.name, on: onHost(n) }));
  } catch (e) {
    netErrors.set(netKey(n), e.message);
  }
  await nets.load();
}

/** The host filter and the new-network form's host chooser: shown with several hosts. */
function fillHosts() {
  const many = manyHosts();
  $('net-filter-host-field').hidden = !many;
  $('net-new-host-field').hidden = !many;
  const was = formHost();
  if (many) {
    hostFilter = fillHostSelect($('net-filter-host'), hostFilter, _('All hosts'));
    newHost = fillHostSelect($('net-new-host'), newHost || localHost());
  }
  // the host chosen went (or the hosts became known): its interfaces are another's
  if (formHost() !== was && ifacesOf !== null) loadInterfaces();
}

function newHostChanged(e) {
  newHost = e.target.value;
  showNetError('');
  if (isAdmin()) loadInterfaces();
}

function askDeleteNetwork(n) {
  askConfirm({
    title: _('Delete network?'),
    text: n.subnet ? _('The network “{name}”{on} is deleted, with its subnet {subnet}.', { name: n.name, on: onHost(n), subnet: n.subnet })
      : _('The network “{name}”{on} is deleted.', { name: n.name, on: onHost(n) }),
    run: async () => {
      await remove(netPath(n));
      announce(_('Network {name}{n} deleted', { name: n.name, n: onHost(n) }));
      await nets.load();
    },
    back: () => document.querySelector('#net-rows button') || $('net-name'),
  });
}

const netsSoon = () => nets.soon();

export default {
  name: 'networks',
  page: {
    id: 'networks',
    title: _('Networks'),
    show() {
      if (!signedIn()) return;
      nets.load();
      if (isAdmin()) loadInterfaces();
    },
  },
  events: {
    // a network changed elsewhere; a VM made or deleted changes what uses a network
    'network.created network.updated network.deleted': netsSoon,
    'vm.created vm.deleted': netsSoon,
    // a host came, went or changed state: its networks come or go with it
    'host.created host.deleted host.state': () => nets.soon(300),
  },
  init() {
    $('net-form').addEventListener('submit', makeNetwork);
    $('net-connection').addEventListener('change', netKindChanged);
    onHosts(() => {
      fillHosts();
      if (nets.items) renderNetworks(); // the rows' "on <host>" labels
    });
    $('net-filter-host').addEventListener('change', (e) => {
      hostFilter = e.target.value;
      renderNetworks();
    });
    $('net-new-host').addEventListener('change', newHostChanged);
  },
  async resync() {
    await nets.relist();
  },
  stop() {
    nets.forget();
    netErrors.clear();
    ifaces = null;
    ifacesOf = null;
    hostFilter = '';
    newHost = '';
    $('net-filter-host-field').hidden = true;
    $('net-filter-host').replaceChildren();
    $('net-new-host-field').hidden = true;
    $('net-new-host').replaceChildren();
    $('net-rows').replaceChildren();
    $('net-iface').replaceChildren();
    $('net-count').textContent = _('Loading…');
    $('net-empty').hidden = true;
    showNetError('');
    $('net-connection').value = 'nat'; // as the form's reset leaves it
    netKindChanged();
  },
};
