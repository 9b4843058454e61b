"""The simulator's fixed world: instruments, test users and their accounts and holdings.

Everything here is a pure function of the seed, so two simulators with the same seed expose
the same account numbers, hashes and positions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

AccountType = Literal["MARGIN", "CASH"]


@dataclass(frozen=True)
class Instrument:
    """A security the simulated users hold and trade."""

    symbol: str
    cusip: str
    asset_type: str
    type: str
    description: str
    instrument_id: int
    price: Decimal
    net_change: Decimal

    @property
    def price_cents(self) -> int:
        """The reference price in cents (trade prices vary around it)."""
        return int(self.price * 100)


#: The securities of the simulated world. CUSIPs are public identifiers; prices are invented.
INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "AAPL",
        "037833100",
        "EQUITY",
        "COMMON_STOCK",
        "APPLE INC",
        1973757747,
        Decimal("213.49"),
        Decimal("1.54"),
    ),
    Instrument(
        "MSFT",
        "594918104",
        "EQUITY",
        "COMMON_STOCK",
        "MICROSOFT CORP",
        1878252461,
        Decimal("415.27"),
        Decimal("-2.10"),
    ),
    Instrument(
        "VOO",
        "922908363",
        "COLLECTIVE_INVESTMENT",
        "EXCHANGE_TRADED_FUND",
        "VANGUARD S&P 500 ETF",
        1821544381,
        Decimal("420.15"),
        Decimal("-0.62"),
    ),
    Instrument(
        "VTI",
        "922908769",
        "COLLECTIVE_INVESTMENT",
        "EXCHANGE_TRADED_FUND",
        "VANGUARD TOTAL STOCK MARKET ETF",
        1822004561,
        Decimal("241.88"),
        Decimal("0.35"),
    ),
    Instrument(
        "SCHD",
        "808524797",
        "COLLECTIVE_INVESTMENT",
        "EXCHANGE_TRADED_FUND",
        "SCHWAB US DIVIDEND EQUITY ETF",
        1822309951,
        Decimal("27.31"),
        Decimal("0.07"),
    ),
    Instrument(
        "NVDA",
        "67066G104",
        "EQUITY",
        "COMMON_STOCK",
        "NVIDIA CORP",
        1874503621,
        Decimal("121.44"),
        Decimal("3.12"),
    ),
    Instrument(
        "BND",
        "921937835",
        "COLLECTIVE_INVESTMENT",
        "EXCHANGE_TRADED_FUND",
        "VANGUARD TOTAL BOND MARKET ETF",
        1822110021,
        Decimal("72.05"),
        Decimal("-0.04"),
    ),
    Instrument(
        "SWVXX",
        "808515605",
        "CASH_EQUIVALENT",
        "MONEY_MARKET_FUND",
        "SCHWAB VALUE ADVANTAGE MONEY INV",
        1834012551,
        Decimal("1.00"),
        Decimal("0"),
    ),
)
SYMBOL_INDEX: dict[str, int] = {inst.symbol: i for i, inst in enumerate(INSTRUMENTS)}


@dataclass(frozen=True)
class Holding:
    """One position: quantity and average cost of an instrument."""

    instrument: int
    quantity: Decimal
    average_price: Decimal


@dataclass(frozen=True)
class AccountSpec:
    """A simulated brokerage account and how its transaction stream is generated."""

    key: int
    number: str
    hash: str
    type: AccountType
    nickname: str
    color: str
    primary: bool
    history_days: int
    daily_min: int
    daily_max: int
    traded: tuple[int, ...]
    holdings: tuple[Holding, ...]
    cash: Decimal
    max_shares: int
    peer_number: str

    @property
    def display_id(self) -> str:
        """The masked number shown in user preferences (`...365`)."""
        return "..." + self.number[-3:]


@dataclass(frozen=True)
class UserSpec:
    """A test user of the simulated institution."""

    username: str
    password: str
    accounts: tuple[AccountSpec, ...]


def account_number(seed: int, key: int) -> str:
    """A stable 8-digit account number for account `key` under `seed`."""
    digest = hashlib.sha256(f"number:{seed}:{key}".encode()).digest()
    return str(10_000_000 + int.from_bytes(digest[:8], "big") % 89_999_999)


def account_hash(seed: int, number: str) -> str:
    """The 64 upper-case hex `hashValue` that stands for `number` in URLs."""
    return hashlib.sha256(f"hash:{seed}:{number}".encode()).hexdigest().upper()


def _idx(*symbols: str) -> tuple[int, ...]:
    return tuple(SYMBOL_INDEX[s] for s in symbols)


def _hold(symbol: str, quantity: str, average: str) -> Holding:
    return Holding(SYMBOL_INDEX[symbol], Decimal(quantity), Decimal(average))


def build_users(seed: int, *, whale_years: int) -> dict[str, UserSpec]:
    """The three test users: `demo` (two accounts), `whale` (100k+ rows), `empty` (none).

    Args:
        seed: The data seed (`SIMULATOR_SEED`).
        whale_years: Years of history for the whale account.

    Returns:
        Users by username.
    """
    numbers = [account_number(seed, key) for key in range(3)]
    hashes = [account_hash(seed, n) for n in numbers]
    demo_margin = AccountSpec(
        key=0,
        number=numbers[0],
        hash=hashes[0],
        type="MARGIN",
        nickname="Individual",
        color="Green",
        primary=True,
        history_days=730,
        daily_min=0,
        daily_max=1,
        traded=_idx("AAPL", "MSFT", "VOO", "NVDA"),
        holdings=(
            _hold("AAPL", "25", "171.4025"),
            _hold("MSFT", "12", "388.10"),
            _hold("VOO", "20", "412.10"),
            _hold("SWVXX", "1250.37", "1.00"),
        ),
        cash=Decimal("3120.55"),
        max_shares=30,
        peer_number=numbers[1],
    )
    demo_ira = AccountSpec(
        key=1,
        number=numbers[1],
        hash=hashes[1],
        type="CASH",
        nickname="Roth Contributory IRA",
        color="Blue",
        primary=False,
        history_days=730,
        daily_min=0,
        daily_max=1,
        traded=_idx("VTI", "SCHD", "BND"),
        holdings=(
            _hold("VTI", "40", "219.75"),
            _hold("SCHD", "150", "25.12"),
            _hold("BND", "30", "73.40"),
        ),
        cash=Decimal("2500.00"),
        max_shares=40,
        peer_number=numbers[0],
    )
    whale = AccountSpec(
        key=2,
        number=numbers[2],
        hash=hashes[2],
        type="MARGIN",
        nickname="Trading",
        color="Green",
        primary=True,
        history_days=365 * whale_years,
        daily_min=40,
        daily_max=60,
        traded=_idx("AAPL", "MSFT", "VOO", "VTI", "SCHD", "NVDA", "BND"),
        holdings=(
            _hold("AAPL", "1200", "150.02"),
            _hold("MSFT", "800", "301.55"),
            _hold("NVDA", "2500", "45.10"),
            _hold("VOO", "900", "380.00"),
            _hold("SWVXX", "250000", "1.00"),
        ),
        cash=Decimal("184302.17"),
        max_shares=200,
        peer_number=numbers[2],
    )
    return {
        "demo": UserSpec("demo", "demo-password", (demo_margin, demo_ira)),
        "whale": UserSpec("whale", "whale-password", (whale,)),
        "empty": UserSpec("empty", "empty-password", ()),
    }
