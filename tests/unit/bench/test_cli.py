"""Command-line parsing and listing (no scenario is run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.cli import build_parser, format_listing, main, repeat_config
from bench.scenarios import discover
from bench.tools import parse_runnable

from tests.unit.bench.support import run_config


class TestParser:
    def test_defaults(self) -> None:
        args = build_parser().parse_args([])
        assert (args.duration, args.warmup, args.connections, args.threads) == (10, 3, 50, 2)
        assert (args.backend, args.scenarios, args.json, args.list) == (
            "embedded",
            None,
            None,
            False,
        )

    def test_repeat_defaults_to_one_run_and_refuses_zero(self) -> None:
        assert build_parser().parse_args([]).repeat == 1
        assert build_parser().parse_args(["--repeat", "3"]).repeat == 3
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--repeat", "0"])

    def test_repeated_runs_keep_their_files_apart(self, tmp_path: Path) -> None:
        config = run_config(tmp_path)
        assert repeat_config(config, 0, 1) is config
        dirs = [repeat_config(config, i, 3).results_dir for i in range(3)]
        assert dirs == [config.results_dir / f"run-{i}" for i in (1, 2, 3)]

    def test_scenario_is_repeatable(self) -> None:
        args = build_parser().parse_args(["--scenario", "a", "--scenario", "b"])
        assert args.scenarios == ["a", "b"]

    @pytest.mark.parametrize(
        "argv", [["--duration", "0"], ["--backend", "mysql"], ["--connections", "-1"]]
    )
    def test_bad_values_exit_with_usage_error(self, argv: list[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 2


class TestMain:
    def test_list_prints_every_scenario_and_runs_nothing(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--list"]) == 0
        out = capsys.readouterr().out
        assert out.strip() == format_listing(dict(discover()))
        assert "health_live" in out and "http_vs_http" in out

    def test_unknown_scenario_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--scenario", "nope"])
        assert exit_info.value.code == 2
        assert "unknown scenario(s): nope" in capsys.readouterr().err


class TestTools:
    def test_runnable_count_from_proc_loadavg(self) -> None:
        assert parse_runnable("2.60 1.05 0.46 3/456 18971\n") == 3
