"""The Trader API (`/trader/v1`): account numbers, accounts, transactions, user preference.

Bodies are rendered by `render.py` from the deterministic dataset at the simulator clock.
Parameter checks answer with the Trader API's `{"message", "errors"}` body (reference §2-§3).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from dashtam.simulator.catalog import AccountSpec
from dashtam.simulator.data import TRANSACTION_TYPES, Txn, epoch
from dashtam.simulator.deps import CallerDep, StateDep
from dashtam.simulator.errors import trader_error
from dashtam.simulator.render import (
    account_json,
    account_numbers_json,
    detail_body,
    dumps,
    transaction_json,
    transactions_json_bytes,
    user_preference_json,
)
from dashtam.simulator.state import SimulatorState

router = APIRouter(prefix="/trader/v1", tags=["trader"])

#: At most this many rows per transactions response (no pagination exists).
MAX_TRANSACTIONS = 3000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$")
_HASH = re.compile(r"^[0-9A-F]{64}$")


def _json(payload: Any) -> Response:
    return Response(dumps(payload), media_type="application/json")


def _positions_flag(fields: str | None) -> bool:
    if fields is None or fields == "":
        return False
    values = {v.strip() for v in fields.split(",") if v.strip()}
    unknown = values - {"positions"}
    if unknown:
        raise trader_error(400, f"'{sorted(unknown)[0]}' is not a valid value for fields")
    return "positions" in values


def _account(caller: CallerDep, account_hash: str) -> AccountSpec:
    # Only the caller's own 64-hex hashes work; plain numbers and others' hashes do not.
    if _HASH.match(account_hash):
        for acct in caller.user.accounts:
            if acct.hash == account_hash:
                return acct
    raise trader_error(400, "Invalid account number")


def _parse_date(name: str, value: str | None) -> datetime:
    if value is None or value == "":
        raise trader_error(400, f"{name} is required")
    if not _DATE.match(value):
        raise trader_error(400, f"'{value}' is not a valid value for {name}")
    try:
        parsed = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise trader_error(400, f"'{value}' is not a valid value for {name}") from None
    millis = int(value[20:-1].ljust(3, "0")) if "." in value else 0
    return parsed.replace(tzinfo=UTC, microsecond=millis * 1000)


def _one_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


def _types(value: str | None) -> frozenset[str]:
    if value is None or value.strip() == "":
        raise trader_error(400, "types is required")
    requested = frozenset(v.strip() for v in value.split(",") if v.strip())
    unknown = requested - TRANSACTION_TYPES
    if unknown:
        raise trader_error(400, f"'{sorted(unknown)[0]}' is not a valid value for types")
    return requested


@router.get("/accounts/accountNumbers")
async def account_numbers(caller: CallerDep) -> Response:
    """List the caller's plain account numbers with their hashes."""
    return _json(account_numbers_json(caller.user))


@router.get("/accounts")
async def accounts(caller: CallerDep, fields: str | None = None) -> Response:
    """All of the caller's accounts with balances (positions with `fields=positions`)."""
    with_positions = _positions_flag(fields)
    return _json([account_json(a, positions=with_positions) for a in caller.user.accounts])


@router.get("/accounts/{account_hash}")
async def account(caller: CallerDep, account_hash: str, fields: str | None = None) -> Response:
    """One account by hash."""
    acct = _account(caller, account_hash)
    return _json(account_json(acct, positions=_positions_flag(fields)))


@router.get("/accounts/{account_hash}/transactions")
async def transactions(
    request: Request, caller: CallerDep, state: StateDep, account_hash: str
) -> Response:
    """Transactions of one account in a window of at most a year; at most 3000 rows, newest first.

    Query: `startDate` and `endDate` (`YYYY-MM-DDTHH:MM:SS[.sss]Z`, required), `types` (one or
    a comma list of `TransactionType`s, required), `symbol` (optional).
    """
    acct = _account(caller, account_hash)
    params = request.query_params
    start = _parse_date("startDate", params.get("startDate"))
    end = _parse_date("endDate", params.get("endDate"))
    if end < start:
        raise trader_error(400, "endDate must not be before startDate")
    if end > _one_year_after(start):
        raise trader_error(400, "The date range between startDate and endDate cannot exceed 1 year")
    types = _types(params.get("types"))
    symbol = params.get("symbol") or None
    now = state.clock.now_epoch()
    include_cancelled = state.options.cancelled_transactions == "invalid"

    def build() -> bytes:
        rows = state.dataset.window(
            acct,
            epoch(start),
            epoch(end),
            now,
            include_cancelled=include_cancelled,
            limit=MAX_TRANSACTIONS,
            types=types,
            symbol=symbol,
        )
        return transactions_json_bytes(rows, acct, now)

    # Up to 3000 rows per reply, generated and rendered: keep that work off the event loop.
    return Response(await asyncio.to_thread(build), media_type="application/json")


def _visible(state: SimulatorState, txn: Txn | None, now: int) -> Txn | None:
    if txn is None:
        return None
    if txn.cancelled(now) and state.options.cancelled_transactions == "hide":
        return None
    return txn


@router.get("/accounts/{account_hash}/transactions/{transaction_id}")
async def transaction(
    caller: CallerDep, state: StateDep, account_hash: str, transaction_id: str
) -> Response:
    """One transaction by `activityId` (a one-element array by default, as in the spec)."""
    acct = _account(caller, account_hash)
    if not transaction_id.isdigit() or len(transaction_id) > 18:
        raise trader_error(400, f"'{transaction_id}' is not a valid value for transactionId")
    now = state.clock.now_epoch()
    txn = _visible(state, state.dataset.find(acct, int(transaction_id), now), now)
    if txn is None:
        raise trader_error(404, "Transaction not found")
    body = transaction_json(txn, acct, now)
    return _json(detail_body(body, state.options.transaction_detail_shape))


@router.get("/userPreference")
async def user_preference(caller: CallerDep, state: StateDep) -> Response:
    """The caller's preferences: accounts, streamer info, offers (a single object)."""
    customer = hashlib.sha256(f"{state.dataset.seed}:{caller.user.username}".encode())
    return _json(user_preference_json(caller.user, customer.hexdigest(), str(uuid.uuid4())))
