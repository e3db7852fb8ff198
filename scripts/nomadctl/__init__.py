"""`nomadctl`: a developer's view of Nomad jobs (issue #26): `ps`, `logs` and `exec` on the HTTP API.

One concern per module: `settings` (where to connect, from NOMAD_* or the stack's outputs), `api`
(python-nomad calls, with errors that say what to fix), `ps` (the allocation table), `logs`,
`remote_exec` (the exec websocket) and `cli` (arguments and exit codes). Run it as
`bin/nomadctl` or `venv/bin/python -m scripts.nomadctl`.
"""
