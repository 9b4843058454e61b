"""User accounts and authentication: registration, login, sessions, passwords.

Modules: `repository` (all SQL), `registration`, `login`, `sessions`, `passwords`, `profile`,
`lockout`, `session_state` (the cached "is this session live" check), `security_events`,
`toolkit` (collaborators bundled per app), `errors` (problem codes).
"""
