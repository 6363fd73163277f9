/* The UI's language: its strings come from GET /i18n (the gettext catalogues of po/,
 * compiled), in the language the server picks for this browser — the user's choice (the
 * kimchi_lang cookie the language menu sets), else the browser's Accept-Language, else
 * English.
 *
 * Every module that shows words imports _ (and _n for a count): _('Delete {name}?',
 * { name }) is the translation of its English text, {placeholders} filled in;
 * _n('{n} VM', '{n} VMs', count) the form the count asks for. The page's
 * own texts (index.html) are translated here, once, before any module starts: this
 * module awaits its catalogue at the top level, so every module importing it — and its
 * constants — sees the translations. A change of language reloads the page.
 */

export const COOKIE = 'kimchi_lang';
export const DEFAULT = 'en';

let language = DEFAULT;
let languages = [{ tag: DEFAULT, name: 'English' }];
let messages = {};
let chosen = '';

// gettext's plural forms of each language, as in po/<locale>.po's Plural-Forms header
const PLURAL = {
  en: (n) => (n === 1 ? 0 : 1),
  'pt-BR': (n) => (n > 1 ? 1 : 0),
  'zh-CN': () => 0,
};
const numberFmt = new Intl.NumberFormat();

const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

function fill(text, params) {
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, key) => (has(params, key) ? String(params[key]) : whole));
}

/** The translation of ``msgid`` (its English text), ``{name}``s filled from ``params``. */
export function _(msgid, params) {
  const found = has(messages, msgid) ? messages[msgid] : null;
  return fill(typeof found === 'string' && found ? found : msgid, params);
}

/** ``one`` or ``many`` (English) as the count ``n`` asks, translated; ``{n}`` is the count
 * formatted for the reader unless ``params`` gives it. */
export function _n(one, many, n, params) {
  const forms = has(messages, one) ? messages[one] : null;
  let text;
  if (Array.isArray(forms) && forms.length) {
    const i = (PLURAL[language] || PLURAL.en)(n);
    text = forms[Math.min(i, forms.length - 1)];
  } else {
    text = n === 1 ? one : many;
  }
  return fill(text, { n: numberFmt.format(n), ...(params || {}) });
}

/** A task's message — of a task record or a task.progress event — in the UI's language:
 * its template (``message_id``) or, for an error, its ``errcode``'s message translated,
 * filled from ``message_args``; the server's (English) ``message`` when the catalogue has
 * no translation. Events are shared by every watcher, so the server sends them in English. */
export function taskMessage(rec) {
  const english = rec && typeof rec.message === 'string' ? rec.message : '';
  if (!rec) return english;
  const args = rec.message_args && typeof rec.message_args === 'object' ? rec.message_args : {};
  const translated = (key) => (typeof key === 'string' && key && has(messages, key)
    && typeof messages[key] === 'string' && messages[key] ? messages[key] : null);
  if (typeof rec.errcode === 'string' && rec.errcode) {
    const found = translated(rec.errcode);
    return found ? `${rec.errcode}: ${fill(found, args)}` : english;
  }
  const found = translated(rec.message_id);
  return found ? fill(found, args) : english;
}

/** The language the UI shows (a BCP 47 tag: en, pt-BR, zh-CN). */
export const currentLanguage = () => language;

/** The languages kimchi speaks: [{tag, name}], each name in its own language. */
export const knownLanguages = () => languages;

/** The user's choice ('' when the browser's languages decide). */
export const chosenLanguage = () => chosen;

let keep = async () => {}; // keeps a choice with the account (set by the session)

/** ``fn(tag)`` keeps a language chosen in the menu with the signed-in person's account
 * (PUT /preferences), so it follows them to every browser. */
export function onLanguageChosen(fn) { keep = fn; }

function setCookie(tag) {
  const secure = window.location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = tag
    ? `${COOKIE}=${encodeURIComponent(tag)}; Path=/; Max-Age=31536000; SameSite=Strict${secure}`
    : `${COOKIE}=; Path=/; Max-Age=0; SameSite=Strict${secure}`;
}

/** Choose the UI's language ('' for the browser's): kept with the account when someone is
 * signed in, and in this browser (a cookie the server reads too, so errors are in it);
 * then show the page again in it. */
export async function chooseLanguage(tag) {
  try {
    await keep(tag);
  } catch (e) {
    // not kept with the account (the server is away): this browser keeps it all the same
  }
  setCookie(tag);
  window.location.reload();
}

/** The signed-in person's language, kept with their account (``null``: none chosen): make
 * it this browser's, and show the page again in it unless it already is. True when the
 * page reloads. */
export function followAccount(tag) {
  if (typeof tag !== 'string' || !languages.some((l) => l.tag === tag)) return false;
  if (cookieChoice() !== tag) setCookie(tag);
  if (tag === language) return false;
  window.location.reload();
  return true;
}

function cookieChoice() {
  const m = document.cookie.match(new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]*)`));
  return m ? decodeURIComponent(m[1]) : '';
}

const ATTRS = ['placeholder', 'title', 'aria-label', 'alt'];

/** Translate the texts and attributes under ``root`` that are English msgids (the page's
 * own, from index.html), but under translate="no"; the contents of its <template>s too
 * (a task's Cancel button, a VM's CPU and Memory), which the pages clone later. */
export function translateTree(root) {
  if (!Object.keys(messages).length) return;
  const skip = (node) => node && node.closest && node.closest('[translate="no"], script, style');
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) texts.push(n);
  for (const node of texts) {
    const raw = node.nodeValue;
    const key = raw.split(/\s+/).filter(Boolean).join(' ');
    if (!key || !has(messages, key) || typeof messages[key] !== 'string') continue;
    if (skip(node.parentElement)) continue;
    const lead = raw.match(/^\s*/)[0];
    const trail = raw.match(/\s*$/)[0];
    node.nodeValue = `${lead}${messages[key]}${trail}`;
  }
  const sel = ATTRS.map((a) => `[${a}]`).join(',');
  const all = [...(root.matches && root.matches(sel) ? [root] : []), ...root.querySelectorAll(sel)];
  for (const e of all) {
    if (skip(e)) continue;
    for (const a of ATTRS) {
      const v = e.getAttribute(a);
      const key = v && v.split(/\s+/).filter(Boolean).join(' ');
      if (key && has(messages, key) && typeof messages[key] === 'string') e.setAttribute(a, messages[key]);
    }
  }
  for (const t of root.querySelectorAll('template')) translateTree(t.content);
}

async function load() {
  if (typeof document === 'undefined' || typeof fetch !== 'function') return; // node's tests
  chosen = cookieChoice();
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 5000);
  try {
    const resp = await fetch('/i18n', { headers: { Accept: 'application/json' },
      credentials: 'same-origin', signal: stop.signal });
    if (resp.ok) {
      const body = await resp.json();
      if (body && typeof body.language === 'string') language = body.language;
      if (body && Array.isArray(body.languages)) languages = body.languages;
      if (body && body.messages && typeof body.messages === 'object') messages = body.messages;
    }
  } catch (e) {
    // no answer: the UI stays in English, the words it is written in
  } finally {
    clearTimeout(timer);
  }
  document.documentElement.lang = language;
  if (document.title && has(messages, document.title)) document.title = messages[document.title];
  translateTree(document.body);
}

/** Fill the language menu of the top bar (#language): the browser's, then each language. */
function languageMenu() {
  const menu = document.getElementById('language');
  if (!menu) return;
  const auto = document.createElement('option');
  auto.value = '';
  auto.textContent = _('Browser language');
  menu.append(auto);
  for (const l of languages) {
    const o = document.createElement('option');
    o.value = l.tag;
    o.lang = l.tag;
    o.textContent = l.name;
    menu.append(o);
  }
  menu.value = chosen && languages.some((l) => l.tag === chosen) ? chosen : '';
  menu.addEventListener('change', () => chooseLanguage(menu.value));
}

await load();
if (typeof document !== 'undefined') languageMenu();
