"""`dashtam export`: CSV with exact decimals and OFX that ofxtools parses back."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

from ofxtools.Parser import OFXTree
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from dashtam.core.database import session_scope
from dashtam.core.kv import KeyValueStore
from dashtam.models.user import User
from dashtam.services.sync.export import load_rows, to_csv, to_ofx
from tests.integration.sync.rig import SyncRig, sync_rig


async def user_email(rig: SyncRig) -> str:
    async with session_scope(rig.resources.session_factory) as session:
        user = await session.get(User, rig.user_id)
        assert user is not None
        return user.email


class TestExport:
    async def test_csv_and_ofx_carry_every_transaction_exactly(
        self, tmp_root: Path, engine: AsyncEngine, kv_store: KeyValueStore
    ) -> None:
        async with sync_rig(tmp_root, engine, kv_store) as rig:
            await rig.sync()
            truth = await rig.truth()
            email = await user_email(rig)
            async with session_scope(rig.resources.session_factory) as session:
                rows = await load_rows(session, email=email.upper())

            parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
            assert len(parsed) == sum(count for count, _ in truth.values())
            total = sum((Decimal(r["amount"]) for r in parsed), Decimal(0))
            assert total == sum((s for _, s in truth.values()), Decimal(0))
            assert all("e" not in r["amount"].lower() for r in parsed)

            tree = OFXTree()
            tree.parse(io.BytesIO(to_ofx(rows).encode()))
            ofx = tree.convert()
            statements = ofx.invstmtmsgsrsv1
            assert len(statements) == 2
            amounts = [
                tran.stmttrn.trnamt for trnrs in statements for tran in trnrs.invstmtrs.invtranlist
            ]
            assert len(amounts) == len(parsed)
            assert sum(amounts, Decimal(0)) == total

    def test_cli_rejects_a_bad_format_and_an_unknown_user(self, tmp_root: Path) -> None:
        from dashtam.cli import app

        runner = CliRunner()
        bad = runner.invoke(app, ["export", "--user", "a@example.com", "--format", "xls"])
        assert bad.exit_code == 2
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_root / 'cli-export.db'}",
            "VAR_DIR": str(tmp_root / "cli-var"),
            "ENVIRONMENT": "test",
        }
        from dashtam.core.migrations import upgrade_to_head

        upgrade_to_head(env["DATABASE_URL"])
        out = tmp_root / "out.csv"
        missing = runner.invoke(
            app, ["export", "--user", "nobody@example.com", "--output", str(out)], env=env
        )
        assert missing.exit_code == 2
        assert not out.exists()
