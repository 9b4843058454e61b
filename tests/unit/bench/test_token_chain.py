"""Token chains: single-use tokens relayed from each answer to the next request."""

from __future__ import annotations

import pytest
from bench.runner import chain_seeds
from bench.scenarios.auth import NEXT_REFRESH_TOKEN, refresh_chain_load
from bench.scenarios.base import HttpLoad, HttpRequest, TokenChain
from bench.wrk import lua_script, lua_string

TEMPLATE = HttpRequest("POST", "/refresh", body='{"refresh_token":"{token}"}')


def chained(seeds: tuple[str, ...]) -> HttpLoad:
    return HttpLoad((TEMPLATE,), probe=False, chain=TokenChain(seeds=seeds, next_token="x"))


class TestTokenChain:
    def test_seeds_are_required_and_distinct(self) -> None:
        with pytest.raises(ValueError, match="needs seed tokens"):
            TokenChain(seeds=(), next_token="x")
        with pytest.raises(ValueError, match="distinct"):
            TokenChain(seeds=("a", "b", "a"), next_token="x")

    def test_warm_up_and_measurement_get_disjoint_halves(self) -> None:
        chain = TokenChain(seeds=("a", "b", "c", "d", "e"), next_token="x")
        warm, measure = chain.halves(warmup=True)
        assert warm == ("a", "b")
        assert measure == ("c", "d", "e")
        assert chain.halves(warmup=False) == ((), chain.seeds)

    def test_a_chained_load_has_one_template_with_the_placeholder_once_and_no_probe(self) -> None:
        chain = TokenChain(seeds=("a",), next_token="x")
        with pytest.raises(ValueError, match="exactly one request"):
            HttpLoad((TEMPLATE, TEMPLATE), probe=False, chain=chain)
        with pytest.raises(ValueError, match="placeholder once"):
            HttpLoad((HttpRequest("POST", "/r", body="{}"),), probe=False, chain=chain)
        with pytest.raises(ValueError, match="placeholder once"):
            HttpLoad((HttpRequest("POST", "/r", body="{token}{token}"),), probe=False, chain=chain)
        with pytest.raises(ValueError, match="cannot be probed"):
            HttpLoad((TEMPLATE,), chain=chain)


class TestChainSeeds:
    def test_plain_loads_have_no_seeds(self) -> None:
        assert chain_seeds(HttpLoad((TEMPLATE,)), True, 10, 2) == (None, None)

    def test_each_run_gets_its_half(self) -> None:
        seeds = tuple(f"t{n}" for n in range(8))
        assert chain_seeds(chained(seeds), True, 2, 2) == (seeds[:4], seeds[4:])
        assert chain_seeds(chained(seeds), False, 2, 2) == (None, seeds)

    def test_a_run_needs_a_seed_per_connection_plus_one_per_thread(self) -> None:
        # wrk's script check takes one token on the first thread that is never sent.
        seeds = tuple(f"t{n}" for n in range(8))
        with pytest.raises(ValueError, match="need at least 5"):
            chain_seeds(chained(seeds), True, 4, 1)
        assert chain_seeds(chained(seeds), False, 6, 2)[1] == seeds
        with pytest.raises(ValueError, match="need at least 9"):
            chain_seeds(chained(seeds), False, 7, 2)


class TestChainScript:
    def test_script_queues_seeds_per_thread_and_relays_tokens_from_answers(self) -> None:
        load = refresh_chain_load(["seed-1", "seed-2", "seed-3"])
        script = lua_script(load, threads=2, seeds=["seed-2", "seed-3"])
        assert "local threads = 2" in script
        assert '"seed-2"' in script and '"seed-3"' in script
        assert '"seed-1"' not in script  # only this run's seeds
        # The body is split around the placeholder and re-assembled with each token.
        prefix, suffix = '{"refresh_token":"', '"}'
        assert "local prefix = " + lua_string(prefix) in script
        assert "local suffix = " + lua_string(suffix) in script
        assert "prefix .. token .. suffix" in script
        assert f"local pattern = {lua_string(NEXT_REFRESH_TOKEN)}" in script
        assert "function response(status, headers, body)" in script
        assert "if (i - 1) % threads == id then" in script
        assert "done = function" in script

    def test_defaults_to_every_seed(self) -> None:
        script = lua_script(chained(("a", "b")), threads=1)
        assert '"a"' in script and '"b"' in script
        assert f"local exhausted = {lua_string('bench-chain-exhausted')}" in script

    def test_refresh_pattern_matches_a_token_response(self) -> None:
        # Lua's `%s` and `[^"]` behave like these regex classes for this pattern.
        import re

        regex = NEXT_REFRESH_TOKEN.replace("%s", r"\s")
        body = '{"access_token":"a.b.c","refresh_token":"Zx_-9","expires_in":1800}'
        match = re.search(regex, body)
        assert match is not None and match.group(1) == "Zx_-9"
