"""Login, roles and TLS: the building blocks the HTTP layer puts together.

* :mod:`kimchid.auth.policy` — the pure rules: roles, admin-only routes, VM visibility,
  security headers, the Origin check.
* :mod:`kimchid.auth.pam` — passwords checked by PAM on a bounded pool of threads.
* :mod:`kimchid.auth.sessions` — login sessions in Redis, shared by every daemon.
* :mod:`kimchid.auth.tokens` — API tokens for scripts, stored hashed.
* :mod:`kimchid.auth.throttle` — growing delays after failed logins.
* :mod:`kimchid.auth.tls` — the self-signed certificate and the TLS context.
"""
