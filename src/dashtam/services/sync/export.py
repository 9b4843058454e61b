"""Export a user's transactions as CSV (exact decimals) or OFX 2.2 (via ofxtools).

CSV has one row per live transaction with every normalised field; money is written as exact
decimal text (never through a float). OFX carries one investment statement per account
(`INVSTMTRS`), each transaction as an `INVBANKTRAN` (the cash movement, `TRNAMT` = signed
amount); the security, quantity and price of trades go into the memo, because OFX's
buy/sell aggregates would need a security list Dashtam does not keep.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.types import utcnow
from dashtam.models.financial import Account, Transaction
from dashtam.models.user import User

ExportFormat = Literal["csv", "ofx"]

CSV_COLUMNS = (
    "account_id",
    "account_name",
    "account_number",
    "transaction_id",
    "external_id",
    "posted_at",
    "trade_date",
    "settlement_date",
    "type",
    "subtype",
    "status",
    "description",
    "amount",
    "currency",
    "symbol",
    "quantity",
    "price",
    "fees",
)

_accounts = Account.__table__  # type: ignore[attr-defined]
_transactions = Transaction.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]


class UnknownUser(LookupError):
    """No user has that email address."""


@dataclass(frozen=True)
class ExportRow:
    """One transaction with its account, as exported."""

    account_id: uuid.UUID
    account_name: str
    masked_number: str | None
    currency_of_account: str
    id: uuid.UUID
    external_id: str
    posted_at: datetime
    trade_date: object
    settlement_date: object
    type: str
    subtype: str | None
    status: str
    description: str | None
    amount: Decimal
    currency: str
    symbol: str | None
    quantity: Decimal | None
    price: Decimal | None
    fees: Decimal


def plain(value: Decimal | None, *, min_places: int = 0) -> str:
    """Exact decimal text without exponent or needless trailing zeros (`-10.5` → `-10.50`)."""
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    if min_places:
        places = len(text.partition(".")[2])
        if places < min_places:
            text = (text if "." in text else text + ".") + "0" * (min_places - places)
    return text


async def load_rows(session: AsyncSession, *, email: str) -> list[ExportRow]:
    """Every live transaction of the user with `email`, by account then time.

    Raises:
        UnknownUser: No such user.
    """
    user_id = (
        await session.execute(
            select(_users.c.id).where(func.lower(_users.c.email) == email.strip().lower())
        )
    ).scalar_one_or_none()
    if user_id is None:
        raise UnknownUser(email)
    t = _transactions.c
    a = _accounts.c
    stmt = (
        select(
            a.id.label("account_id"),
            a.name.label("account_name"),
            a.masked_number,
            a.currency.label("currency_of_account"),
            t.id,
            t.external_id,
            t.posted_at,
            t.trade_date,
            t.settlement_date,
            t.type,
            t.subtype,
            t.status,
            t.description,
            t.amount,
            t.currency,
            t.symbol,
            t.quantity,
            t.price,
            t.fees,
        )
        .select_from(_transactions.join(_accounts, _accounts.c.id == t.account_id))
        .where(t.user_id == user_id, t.removed_at.is_(None))
        .order_by(a.name, a.id, t.posted_at, t.id)
    )
    return [ExportRow(**row._mapping) for row in (await session.execute(stmt)).all()]


def to_csv(rows: Sequence[ExportRow]) -> str:
    """CSV text with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            (
                r.account_id,
                r.account_name,
                r.masked_number or "",
                r.id,
                r.external_id,
                r.posted_at.isoformat(),
                r.trade_date or "",
                r.settlement_date or "",
                r.type,
                r.subtype or "",
                r.status,
                r.description or "",
                plain(r.amount, min_places=2),
                r.currency,
                r.symbol or "",
                plain(r.quantity),
                plain(r.price),
                plain(r.fees, min_places=2),
            )
        )
    return out.getvalue()


def _trntype(row: ExportRow) -> str:
    return {
        "dividend": "DIV",
        "interest": "INT",
        "fee": "FEE",
        "deposit": "DEP",
        "withdrawal": "DEBIT",
        "transfer": "XFER",
    }.get(row.type, "CREDIT" if row.amount >= 0 else "DEBIT")


def _acctid(account_id: uuid.UUID) -> str:
    # OFX allows 22 characters: exactly the unpadded base64url of the 16-byte id.
    return base64.urlsafe_b64encode(account_id.bytes).decode().rstrip("=")


def to_ofx(rows: Sequence[ExportRow], *, now: datetime | None = None) -> str:
    """An OFX 2.2 document: one investment statement per account."""
    from ofxtools.header import make_header
    from ofxtools.models import (
        INVACCTFROM,
        INVBANKTRAN,
        INVSTMTMSGSRSV1,
        INVSTMTRS,
        INVSTMTTRNRS,
        INVTRANLIST,
        SIGNONMSGSRSV1,
        SONRS,
        STATUS,
        STMTTRN,
    )
    from ofxtools.models.ofx import OFX

    now = now or utcnow()
    by_account: dict[uuid.UUID, list[ExportRow]] = {}
    for row in rows:
        by_account.setdefault(row.account_id, []).append(row)
    statements = []
    for index, (account_id, items) in enumerate(by_account.items(), start=1):
        banktrans = []
        for r in items:
            memo_parts = [r.status]
            if r.symbol:
                memo_parts.append(r.symbol)
            if r.quantity is not None:
                memo_parts.append(f"qty {plain(r.quantity)}")
            if r.price is not None:
                memo_parts.append(f"@ {plain(r.price)}")
            stmttrn = STMTTRN(
                trntype=_trntype(r),
                dtposted=r.posted_at,
                trnamt=r.amount,
                fitid=r.external_id[:255],
                name=(r.description or r.type)[:32],
                memo=" ".join(memo_parts)[:255],
            )
            banktrans.append(INVBANKTRAN(stmttrn=stmttrn, subacctfund="CASH"))
        first = items[0]
        statement = INVSTMTRS(
            dtasof=now,
            curdef=first.currency_of_account,
            # Never the plain account number: our account id identifies it.
            invacctfrom=INVACCTFROM(brokerid="dashtam", acctid=_acctid(account_id)),
            invtranlist=INVTRANLIST(
                *banktrans,
                dtstart=min(r.posted_at for r in items),
                dtend=max(r.posted_at for r in items),
            ),
        )
        statements.append(
            INVSTMTTRNRS(
                trnuid=str(index), status=STATUS(code=0, severity="INFO"), invstmtrs=statement
            )
        )
    signon = SIGNONMSGSRSV1(
        sonrs=SONRS(status=STATUS(code=0, severity="INFO"), dtserver=now, language="ENG")
    )
    document = OFX(signonmsgsrsv1=signon, invstmtmsgsrsv1=INVSTMTMSGSRSV1(*statements))
    return str(make_header(version=220)) + ET.tostring(document.to_etree()).decode()


def render(rows: Sequence[ExportRow], fmt: ExportFormat) -> str:
    """The export in `fmt`."""
    return to_csv(rows) if fmt == "csv" else to_ofx(rows)
