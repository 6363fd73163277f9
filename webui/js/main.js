/* kimchi's web UI: the ISO library, templates, virtual machines, storage, networks, the
 * host, the hosts kimchi manages, debug reports, API tokens and live tasks. No framework
 * and no build step: native ES modules, one per page (webui/js/pages/) over a few shared
 * ones (webui/js/core/).
 *
 * Each module declares what it handles (see core/registry.js); this file only puts them
 * together. The order matters where modules hear the same event: the task store hears a
 * task's events before the pages that follow tasks.
 */

import { register, each } from './core/registry.js';
import { route } from './core/router.js';
import dialogs from './core/dialogs.js';
import session, { checkSession, signedIn } from './core/session.js';
import tasks from './core/tasks.js';
import health from './core/health.js';
import isos from './pages/isos.js';
import templates from './pages/templates.js';
import vms from './pages/vms.js';
import vmThumbs from './pages/vm-thumbs.js';
import vmDialogs from './pages/vm-dialogs.js';
import vmTemplate from './pages/vm-template.js';
import consolePage from './pages/console.js';
import serialPage from './pages/serial.js';
import snapshots from './pages/snapshots.js';
import devices from './pages/devices.js';
import storage from './pages/storage.js';
import networks from './pages/networks.js';
import host from './pages/host.js';
import hosts from './pages/hosts.js';
import reports from './pages/reports.js';
import tokens from './pages/tokens.js';
import audit from './pages/audit.js';

register(dialogs, session, tasks, health, isos, templates, vms, vmThumbs, vmDialogs, vmTemplate, consolePage, serialPage,
  snapshots, devices, storage, networks, host, hosts, reports, tokens, audit);

function init() {
  each('init');
  window.addEventListener('hashchange', () => { if (signedIn()) route(true); });
  checkSession();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
