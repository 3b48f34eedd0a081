"""Globus Compute sites against offline endpoints (a real GlobusComputeEngine; no Globus cloud here)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import metasched as ms
from tests.integration.gc_endpoints import OfflineEndpoint, endpoint_client
from tests.integration.processes import kill_tree

pytestmark = pytest.mark.ray


def _attempts(journal: Path) -> list[tuple[str, str, str, str | None]]:
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute("SELECT task_id, site, state, native_id FROM attempts"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


@pytest.mark.slurm
def test_campaign_across_local_alpha_and_globus_compute_survives_a_restart(
    alpha: object, gc_local: OfflineEndpoint, tmp_path: Path
) -> None:
    """Kill -9 the scheduler while calls are in flight at the endpoint; the resumed campaign re-attaches
    to them (the endpoint never receives a call twice) and reruns nothing that had finished."""
    script = Path(__file__).parent / "scripts" / "gc_campaign.py"
    journal = tmp_path / "gc.db"
    args = [sys.executable, str(script), str(journal), alpha.slurm_conf, alpha.shared_dir,  # type: ignore[attr-defined]
            gc_local.address, gc_local.authkey_file]
    endpoint = endpoint_client(gc_local)
    received_before = endpoint.status()["received"]
    run = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = _attempts(journal)
            in_flight_at_gc = [r for r in rows
                               if r[1] == "gc" and r[3] and r[2] not in ("succeeded", "failed")]
            finished = [r for r in rows if r[2] == "succeeded"]
            if in_flight_at_gc and finished:
                break
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, f"no call in flight at the endpoint in 120 s: {rows}"
            time.sleep(0.1)
    finally:
        kill_tree(run.pid)
    before = _attempts(journal)
    finished_before = {r[0] for r in before if r[2] == "succeeded"}
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"RESUMED {sum(i * i for i in range(48))}" in resumed.stdout
    after = _attempts(journal)
    for task_id in finished_before:
        assert len([r for r in after if r[0] == task_id]) == 1, f"finished task {task_id} ran again"
    assert {r[1] for r in after} >= {"local", "alpha", "gc"}, after
    # Every call the endpoint received has its task id in the journal (ids are journaled before a call
    # is sent), besides the two preflight probes (one per scheduler start).
    gc_ids = [r[3] for r in after if r[1] == "gc" and r[3]]
    received = endpoint.status()["received"] - received_before
    assert received == len(endpoint.known(gc_ids)) + 2, (received, len(gc_ids))
    reattached = [r for r in after if r[1] == "gc" and r[3] in {b[3] for b in before} and r[2] == "succeeded"]
    assert reattached, "no call in flight at the kill was followed to its end"


def test_big_results_travel_as_proxies_and_big_arguments_fail_clearly(
    gc_local: OfflineEndpoint, ray_local: None, tmp_path: Path
) -> None:
    """A 12 MB result (over the service's 10 MiB limit) goes to the site's store; a 12 MB argument with
    the data layer turned off is refused before anything is sent, with the fix."""
    import numpy as np

    site = ms.GlobusComputeSite("gc", offline_endpoint=gc_local.address, authkey_file=gc_local.authkey_file,
                                poll_interval=0.2)
    with ms.Campaign("gc-big", sites=[site], journal=tmp_path / "big.db") as campaign:
        @campaign.task
        def make(n: int) -> np.ndarray:
            return np.arange(n, dtype=np.float64)

        @campaign.task
        def total(a: np.ndarray) -> float:
            return float(a.sum())

        n = 1_500_000  # 12 MB
        big = make(n)
        assert total(big).result(timeout=120) == float(n * (n - 1) / 2)
        stored = big.result(timeout=10)
        assert type(stored).__name__ == "Proxy"  # not pulled through the scheduler
    with ms.Campaign("gc-big-off", sites=[site], journal=tmp_path / "off.db",
                     data_threshold=10**9) as campaign:
        error = campaign.task(len)(b"x" * 12_000_000).exception(timeout=60)
        assert isinstance(error, ms.RemoteTaskError)
        assert "over Globus Compute's 10 MiB limit" in str(error)


def test_wrong_key_and_missing_endpoint_say_so(gc_local: OfflineEndpoint, tmp_path: Path) -> None:
    from metasched.errors import SiteAgentError
    from site_agents.globus_compute import GlobusComputeAgent

    bad_key = tmp_path / "key"
    bad_key.write_text("not-the-key")
    agent = GlobusComputeAgent(ms.GlobusComputeSite("gc", offline_endpoint=gc_local.address,
                                                    authkey_file=str(bad_key)))
    with pytest.raises(SiteAgentError, match="refused the key") as refused:
        agent.start()
    assert "not-the-key" not in str(refused.value)
    closed = GlobusComputeAgent(ms.GlobusComputeSite("gc", offline_endpoint="127.0.0.1:1",
                                                     authkey_file=gc_local.authkey_file))
    with pytest.raises(SiteAgentError, match="no offline endpoint answers at 127.0.0.1:1"):
        closed.start()


_CLOUD = bool(os.environ.get("GLOBUS_COMPUTE_CLIENT_ID") and os.environ.get("METASCHED_GC_ENDPOINT"))


@pytest.mark.skipif(not _CLOUD, reason="globus_cloud: needs GLOBUS_COMPUTE_CLIENT_ID/_SECRET and "
                                       "METASCHED_GC_ENDPOINT (an endpoint id) and the Globus cloud")
@pytest.mark.globus_cloud
def test_real_endpoint_through_the_globus_cloud(ray_local: None, tmp_path: Path) -> None:
    site = ms.GlobusComputeSite("cloud", endpoint_id=os.environ["METASCHED_GC_ENDPOINT"])
    with ms.Campaign("gc-cloud", sites=[site], journal=tmp_path / "cloud.db") as campaign:
        assert campaign.task(pow)(3, 4).result(timeout=600) == 81


def test_sites_check_runs_the_probe_or_says_how_to_fix(gc_local: OfflineEndpoint) -> None:
    import dataclasses

    from metasched.sites.preflight import check_site

    good = ms.GlobusComputeSite("gc", offline_endpoint=gc_local.address, authkey_file=gc_local.authkey_file)
    [check] = check_site(good)
    assert check.passed, check
    assert check.detail.startswith(f"probe task ran: Python {sys.version.split()[0]}, dill ")
    absent = dataclasses.replace(good, offline_endpoint="127.0.0.1:1")
    [check] = check_site(absent)
    assert not check.passed
    assert "no offline endpoint answers at 127.0.0.1:1" in check.detail
    assert check.fix == "see docs/sites/globus-compute.md"


def _another_clients_sleeps(endpoint: OfflineEndpoint, n: int, seconds: float) -> None:
    """What another user of the endpoint sends it: their own function (time.sleep), as Task messages."""
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task

    from site_agents.globus_compute.service import serializer

    serde = serializer(ms.GlobusComputeSite("other", offline_endpoint=endpoint.address,
                                            authkey_file=endpoint.authkey_file))
    call = [serde.serialize(time.sleep), serde.serialize((seconds,)), serde.serialize({})]
    buffer = serde.pack_buffers(call)
    tasks = []
    for _ in range(n):
        task_id = uuid.uuid4()
        tasks.append((str(task_id), bytes(messagepack.pack(Task(task_id=task_id, task_buffer=buffer)))))
    endpoint_client(endpoint).submit(tasks)


def test_an_endpoint_busy_with_another_clients_tasks_is_avoided(ray_local: None, tmp_path: Path) -> None:
    """The endpoint's own report of its load (all clients' tasks) reaches placement: with 12 of another
    client's 60 s tasks on its 2 workers, a campaign over it and a local site of 2 cores sends nothing to
    it (an idle endpoint of 2 workers would get about half)."""
    from metasched.journal import Journal
    from metasched.placement import predicted_wait
    from site_agents.globus_compute.service import endpoint_load
    from tests.integration.gc_endpoints import offline_endpoint

    with offline_endpoint(tmp_path / "busy", "--workers", "2") as endpoint:
        _another_clients_sleeps(endpoint, 12, 60)
        client = endpoint_client(endpoint)
        deadline = time.monotonic() + 60
        while (load := endpoint_load(client.status()["engine"])) is None or load.workers < 2:
            assert time.monotonic() < deadline, f"the endpoint's 2 workers did not start: {client.status()}"
            time.sleep(0.5)
        assert load.outstanding == 12, load
        gc = ms.GlobusComputeSite("gc", offline_endpoint=endpoint.address, authkey_file=endpoint.authkey_file,
                                  cores=2, poll_interval=0.2, preflight_timeout_s=0)  # a probe would queue
        journal = tmp_path / "busy.db"
        with ms.Campaign("gc-busy", sites=[gc, ms.LocalSite("local", cores=2)], journal=journal) as c:
            futures = [c.command(["sleep", "0.5"], name=f"nap-{i}") for i in range(6)]
            ms.wait(futures, timeout=120)
        with Journal(journal).open(read_only=True) as stored:
            placed = [p for f in futures for p in stored.placements_of(f.task_id)]
    assert [site for _, site, _ in placed] == ["local"] * 6, placed
    # each placement weighed the endpoint: 10 of the other client's tasks queued beyond its 2 workers
    for _, _, detail in placed:
        gc_start = float(detail.split("gc ")[1].split(" s")[0])
        assert gc_start >= 5.0, detail
        local_start = predicted_wait(detail)
        assert local_start is not None, detail
        assert local_start < gc_start, detail
