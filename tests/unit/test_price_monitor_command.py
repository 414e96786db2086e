"""Argument checks of `storefleet prices deals|watch`: refused before any database is asked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner

from storefleet.cli import main
from storefleet.prices.monitor import check_discount, check_months

NO_DSN = {"STOREFLEET_PG_DSN": ""}


@pytest.mark.parametrize("command", ["deals", "watch"])
@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--months", "0", "--discount", "10"], "--months", "between 1 and 60, got 0"),
        (["--months", "61", "--discount", "10"], "--months", "between 1 and 60, got 61"),
        (["--months", "abc", "--discount", "10"], "--months", "whole number, got 'abc'"),
        (["--months", "2.5", "--discount", "10"], "--months", "whole number, got '2.5'"),
        (["--months", "3", "--discount", "120"], "--discount", "less than 100, got 120"),
        (["--months", "3", "--discount", "0"], "--discount", "more than 0"),
        (["--months", "3", "--discount", "100"], "--discount", "less than 100, got 100"),
        (["--months", "3", "--discount", "-5"], "--discount", "more than 0"),
        (["--months", "3", "--discount", "ten"], "--discount", "number of percent, got 'ten'"),
        (["--months", "3", "--discount", "nan"], "--discount", "more than 0"),
        (["--discount", "10"], "--months", "Missing option"),
        (["--months", "3"], "--discount", "Missing option"),
    ],
)
def test_bad_input_is_refused_naming_the_option(command, args, option, message) -> None:
    result = CliRunner().invoke(main, ["prices", command, *args], env=NO_DSN)
    assert result.exit_code == 2
    assert option in result.output and message in result.output


def test_bad_limit_is_refused() -> None:
    result = CliRunner().invoke(main, ["prices", "deals", "-m", "3", "-d", "5", "--limit", "0"],
                                env=NO_DSN)
    assert result.exit_code == 2 and "--limit" in result.output


def test_good_input_without_a_database_asks_for_the_dsn() -> None:
    result = CliRunner().invoke(main, ["prices", "deals", "-m", "3", "-d", "12.5"], env=NO_DSN)
    assert result.exit_code == 2 and "STOREFLEET_PG_DSN" in result.output


def test_checks_accept_the_edges_and_keep_the_discount_exact() -> None:
    assert check_months(1) == 1 and check_months("60") == 60 and check_months(12.0) == 12
    assert check_discount("0.01") == Decimal("0.01")
    assert check_discount(99.99) == Decimal("99.99")
    assert check_discount("12.5") == Decimal("12.5")
    for bad in (True, 0, 61, "", "1e400x"):
        with pytest.raises(ValueError):
            check_months(bad)
    for bad in ("inf", "-inf", "", "0", 100):
        with pytest.raises(ValueError):
            check_discount(bad)
