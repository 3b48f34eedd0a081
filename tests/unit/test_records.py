from __future__ import annotations

import pytest

from metasched.errors import ConfigurationError
from metasched.options import parse_memory
from metasched.records import Resources, parse_walltime


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:10:00", 600.0), ("1:00", 60.0), ("1-02:00:00", 93600.0), ("59:59", 3599.0), (90, 90.0), (None, None),
])
def test_parse_walltime(text: str | int | None, seconds: float | None) -> None:
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("bad", ["10 minutes", "1:2:3:4", "", "-5"])
def test_bad_walltime_names_the_value(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="walltime"):
        parse_walltime(bad)


@pytest.mark.parametrize(("text", "mb"), [("4G", 4096), ("500M", 500), ("2GB", 2048), (123, 123), (None, 0)])
def test_parse_memory(text: str | int | None, mb: int) -> None:
    assert parse_memory(text) == mb


def test_resources_reject_nonsense() -> None:
    with pytest.raises(ConfigurationError, match="cores must be at least 1"):
        Resources(cores=0)
    with pytest.raises(ConfigurationError, match="walltime must be positive"):
        Resources(walltime_s=0)
