"""xterm.js for the serial console page, from Debian's ``node-xterm`` package.

Debian's browser build of xterm.js 3.8 (``libjs-xterm``'s
``/usr/share/javascript/xterm/xterm.js``) is a stub that calls ``require``, which no
browser has, and the UI has no build step.  So kimchid puts ``node-xterm``'s CommonJS
modules (the same version) into one classic script itself, each module a function
in a table with a small ``require`` of its own, and serves it as
``/ui/xterm/xterm.js``: it defines ``window.Terminal``, with the ``fit`` addon applied.
No ``eval``: the page's Content-Security-Policy (``script-src 'self'``) holds.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

XTERM = Path("/usr/share/nodejs/xterm/lib")  # node-xterm: xterm.js's CommonJS modules
ADDONS = ("fit",)  # the addons applied to Terminal (fit: the terminal fills its box)
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)

_LOADER = """
  var cache = {};
  function resolve(from, name) {
    var parts = from.split('/');
    parts.pop();
    name.split('/').forEach(function (p) {
      if (p === '..') parts.pop();
      else if (p !== '.') parts.push(p);
    });
    var path = parts.join('/');
    if (defs[path + '.js']) return path + '.js';
    if (defs[path + '/index.js']) return path + '/index.js';
    throw new Error('xterm.js: no module ' + name + ' (from ' + from + ')');
  }
  function load(path) {
    if (cache[path]) return cache[path].exports;
    var module = { exports: {} };
    cache[path] = module;
    defs[path].call(module.exports, function (name) { return load(resolve(path, name)); },
      module, module.exports);
    return module.exports;
  }
  var Terminal = load('xterm.js');
"""


def installed(lib: Path = XTERM) -> bool:
    return (lib / "xterm.js").is_file()


def script(lib: Path = XTERM) -> bytes:
    """The one classic script of xterm.js (made once per version of the package)."""
    stamp = (lib / "xterm.js").stat().st_mtime_ns
    return _script(str(lib), stamp)


@lru_cache(maxsize=2)
def _script(lib: str, _stamp: int) -> bytes:
    root = Path(lib)
    # lib/addons is a link to libjs-xterm's addons, which a glob does not follow
    modules = sorted(p for p in root.rglob("*.js") if not p.name.endswith(".test.js")
                     and p.relative_to(root).parts[0] != "addons")
    modules += [root / "addons" / a / f"{a}.js" for a in ADDONS]
    out = ["/* xterm.js (Debian's node-xterm), its CommonJS modules in one script by "
           "kimchid: see kimchid/api/xterm.py */\n(function () {\n  var defs = {\n"]
    for p in modules:
        source = _SOURCE_MAP.sub("", p.read_text(encoding="utf-8"))
        name = json.dumps(p.relative_to(root).as_posix())
        out.append(f"{name}: function (require, module, exports) {{\n{source}\n}},\n")
    out.append("  };\n" + _LOADER)
    out.extend(f"  Terminal.applyAddon(load({json.dumps(f'addons/{a}/{a}.js')}));\n"
               for a in ADDONS)
    out.append("  window.Terminal = Terminal;\n})();\n")
    return "".join(out).encode("utf-8")
