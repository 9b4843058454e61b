"""Is a login session still live? Cached in the KV store, with the database as the truth.

Every authenticated request asks, so the answer is cached (`auth:session:<id>` = live/ended)
for a few seconds. Revocation writes "ended" *before* its transaction commits, and readers only
ever fill the cache with `set_if_absent`, so a reader that saw the old row just before the
revocation can never overwrite the "ended" marker with a stale "live". When the KV store is down
every check reads the database: slower, never wrong. A live entry holds the owner's user id,
an ended one `0`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime

from dashtam.core.database import SessionFactory, session_scope
from dashtam.core.kv import KeyValueUnavailable
from dashtam.core.logging import log_event
from dashtam.services.auth import repository
from dashtam.services.auth.toolkit import AuthToolkit

logger = logging.getLogger("dashtam.auth")

_ENDED = b"0"


def cache_key(session_id: uuid.UUID) -> str:
    """The KV key holding one session's cached state."""
    return f"auth:session:{session_id}"


async def is_session_live(
    tk: AuthToolkit,
    factory: SessionFactory,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
) -> bool:
    """Tell whether the session exists, belongs to `user_id`, is not revoked and not expired.

    One KV round trip when cached; otherwise one indexed SELECT, then the answer is cached.
    (Routes that read the caller's profile check the session in that same SELECT instead:
    `profile.load_live_profile`.) The SELECT runs in its own short unit of work, not the
    request's: on SQLite every transaction holds the write lock, and a request that then
    opens its own unit of work (login, password change) would wait on itself.
    """
    key = cache_key(session_id)
    owner = user_id.hex.encode()
    kv_up = True
    try:
        cached = await tk.kv.get(key)
    except KeyValueUnavailable:
        cached, kv_up = None, False
    if cached is not None:
        # A live entry holds its owner's id: a token naming another user never matches it.
        return cached == owner
    async with session_scope(factory) as session:
        row = await repository.get_session_state(session, session_id=session_id)
    live = row is not None and row.revoked_at is None and row.expires_at > now
    if kv_up and row is not None:
        ttl = tk.settings.session_cache_ttl_seconds
        if live:
            # Never cache "live" past the session's absolute expiry.
            ttl = min(ttl, (row.expires_at - now).total_seconds())
        value = row.user_id.hex.encode() if live else _ENDED
        with contextlib.suppress(KeyValueUnavailable):
            await tk.kv.set_if_absent(key, value, ttl=max(ttl, 0.001))
    return live and row is not None and row.user_id == user_id


async def mark_ended(tk: AuthToolkit, session_ids: Iterable[uuid.UUID]) -> None:
    """Mark sessions as ended in the cache (call before the revoking transaction commits).

    The marker outlives every access token that could name the session. If the KV store is
    unreachable, readers are falling back to the database anyway; a stale "live" entry can only
    survive a partial outage, and for at most `session_cache_ttl_seconds`.
    """
    ttl = tk.codec.ttl.total_seconds() + 60
    for session_id in session_ids:
        try:
            await tk.kv.set(cache_key(session_id), _ENDED, ttl=ttl)
        except KeyValueUnavailable:
            log_event(
                logger,
                "auth.session_cache.unavailable",
                logging.WARNING,
                session_id=str(session_id),
            )
