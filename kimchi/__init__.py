"""kimchi's shared core: what the daemon (``kimchid``) and the workers (``workers``) both
use, so that neither imports the other.

* :mod:`kimchi.bus`: the message bus's one contract (keys, the Lua scripts, the task and
  event shapes), its Twisted client (:mod:`kimchi.bus.twisted`, the daemon's), its
  blocking client (:mod:`kimchi.bus.sync`), the job registry (:mod:`kimchi.bus.jobs`), the
  job context (:mod:`kimchi.bus.context`) and the worker loop (:mod:`kimchi.bus.worker`);
* :mod:`kimchi.config`, :mod:`kimchi.errors`, :mod:`kimchi.logs`, :mod:`kimchi.gcpause`:
  the configuration, the error codes, the log formats and the garbage-collector policy of
  every process;
* :mod:`kimchi.isoinfo`, :mod:`kimchi.outbound`, :mod:`kimchi.reports`: what both sides
  know of ISO images, of outbound connections and of debug-report files.
"""

__version__ = "0.1.0"
