"""The embedded Ray runtime listens on 127.0.0.1 only, and keeps token authentication on."""

from __future__ import annotations

import os

import psutil
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def test_every_ray_server_listens_on_loopback_only() -> None:
    import ray

    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ray_pids]
    assert len(listening) >= 3, "expected GCS, raylet and worker servers"
    for conn in listening:
        assert conn.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1"), (
            f"{psutil.Process(conn.pid).name()} listens on {conn.laddr}")


def test_token_authentication_is_on() -> None:
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert is_token_auth_enabled()
