"""``kimchi``, the command-line client of kimchid's REST API (:mod:`kimchi.cli.app`).

It speaks only the public HTTP API, so it needs nothing of the daemon's: requests, click
and rich.
"""
