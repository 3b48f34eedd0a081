"""Shared fixtures: containerized Slurm sites for integration tests (session scoped).

The sites come from ci/slurm-cluster/slurmsite.py. A test marked ``slurm`` that runs where the Docker
engine or the host Slurm client is missing is skipped with the reason printed; CI (`make test`) installs
and starts both, so nothing is skipped there. Set METASCHED_KEEP_SITES=1 to leave the sites running
after the session (handy when debugging by hand).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# the helper modules' asserts say what they compared (as the test modules' do)
pytest.register_assert_rewrite("tests.integration", "tests.contract", "tests.pilot")

from tests.pilot.listeners import listening  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ci"))
sys.path.insert(0, str(ROOT / "ci" / "slurm-cluster"))
sys.path.insert(0, str(ROOT / "ci" / "gridengine"))
sys.path.insert(0, str(ROOT / "ci" / "torque-wrappers"))
sys.path.insert(0, str(ROOT / "ci" / "slurm-campus"))
sys.path.insert(0, str(ROOT / "ci" / "ssh-login"))

import campussite  # noqa: E402  (ci/slurm-campus/campussite.py)
import gesite  # noqa: E402  (ci/gridengine/gesite.py)
import netns  # noqa: E402  (ci/netns.py)
import slurmsite  # noqa: E402  (ci/slurm-cluster/slurmsite.py)
import torquesite  # noqa: E402  (ci/torque-wrappers/torquesite.py)

SITE_NAMES = ("alpha", "beta")


@pytest.fixture(scope="session", autouse=True)
def _campaign_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the campaign catalog of the tests (and of the CLIs they start) out of ~/.metasched."""
    previous = os.environ.get("METASCHED_HOME")
    os.environ["METASCHED_HOME"] = str(tmp_path_factory.mktemp("metasched-home"))
    yield
    if previous is None:
        del os.environ["METASCHED_HOME"]
    else:
        os.environ["METASCHED_HOME"] = previous


def _docker_unavailable_reason() -> str | None:
    if shutil.which("docker") is None:
        return "docker client not installed (make test installs docker.io)"
    proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        return "Docker engine not running (make test starts it with ci/docker-engine.sh)"
    return None


def _slurm_unavailable_reason() -> str | None:
    reason = _docker_unavailable_reason()
    if reason is None and shutil.which("sbatch") is None:
        reason = "host Slurm client not installed (make test installs slurm-client)"
    return reason


@pytest.fixture(scope="session")
def slurm_sites() -> Iterator[dict[str, slurmsite.SiteInfo]]:
    """Bring up the sites `alpha` and `beta` (fresh state) and return their SiteInfo by name."""
    reason = _slurm_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    sites = {name: slurmsite.up(name, fresh=True) for name in SITE_NAMES}
    yield sites
    if not os.environ.get("METASCHED_KEEP_SITES"):
        for name in SITE_NAMES:
            slurmsite.down(name)


@pytest.fixture
def alpha(slurm_sites: dict[str, slurmsite.SiteInfo]) -> slurmsite.SiteInfo:
    return slurm_sites["alpha"]


@pytest.fixture
def beta(slurm_sites: dict[str, slurmsite.SiteInfo]) -> slurmsite.SiteInfo:
    return slurm_sites["beta"]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One embedded Ray for the session's in-process campaigns, offering the site `local` (2 cores)."""
    from metasched.runtime import init_embedded_ray

    ray = init_embedded_ray(num_cpus=2, resources={"site:local": 2.0}, object_store_mb=256,
                            namespace="metasched")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def task_image() -> str:
    """The tag of containers/task on this machine's Docker engine (built if missing); skip with why."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    import images  # ci/images.py

    return images.ensure_task().tag


@pytest.fixture(scope="session")
def delta() -> Iterator[slurmsite.SiteInfo]:
    """The site `delta`: Slurm 26.05 with Apptainer (sid image); its client runs in its controller, which
    is also its SSH login node (its volume `remote_dir` is the shared directory when reached over SSH)."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    info = slurmsite.up("delta", fresh=True, flavor="sid", ssh=True)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("delta")


@pytest.fixture(scope="session")
def epsilon() -> Iterator[gesite.GESiteInfo]:
    """The site `epsilon`: Grid Engine 8.1.9 (bookworm) in one container, clients through docker exec;
    also reached over SSH (sshd per connection through the client's ProxyCommand), `remote_dir` then
    its shared directory."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    gesite.down("epsilon")
    info = gesite.up("epsilon", slots=4, ssh=True)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        gesite.down("epsilon")


@pytest.fixture(scope="session")
def eta() -> Iterator[slurmsite.SiteInfo]:
    """The site `eta`: Slurm 24.11 (trixie) with slurmdbd + MariaDB, so sacct answers; its client runs in
    its controller container; its nodes run bookworm's Python 3.11 as `python3.11` for the worker."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # MinJobAge 2 s: finished jobs leave squeue within ~10 s, so a test can reach sacct's answers quickly
    info = slurmsite.up("eta", fresh=True, flavor="trixie", cpus=4, min_job_age=2)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("eta")


@pytest.fixture(scope="session")
def omicron() -> Iterator[slurmsite.SiteInfo]:
    """The site `omicron`: Slurm 22.05 reached only over SSH (sshd on 127.0.0.1 in its controller container,
    ci/ssh-login); its shared directory is a Docker volume this machine does not mount."""
    reason = _docker_unavailable_reason() or (None if shutil.which("ssh") else "ssh client not installed "
                                              "(make test installs openssh-client)")
    if reason is not None:
        pytest.skip(reason)
    info = slurmsite.up("omicron", fresh=True, ssh=True, cpus=4)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("omicron")


@pytest.fixture(scope="session")
def xi() -> Iterator[slurmsite.SiteInfo]:
    """The site `xi`: Slurm 22.05 behind Debian's Torque-style wrappers (the PBS agent's Torque dialect),
    reached only over SSH like omicron."""
    reason = _docker_unavailable_reason() or (None if shutil.which("ssh") else "ssh client not installed "
                                              "(make test installs openssh-client)")
    if reason is not None:
        pytest.skip(reason)
    info = slurmsite.up("xi", fresh=True, flavor="torque", ssh=True, cpus=4)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("xi")


@pytest.fixture(scope="session")
def zeta() -> Iterator[slurmsite.SiteInfo]:
    """The site `zeta`: Slurm 22.05 with Debian's Torque-style wrappers (qsub/qstat/qdel/pbsnodes) and
    spank_pbs; the wrappers run in its controller container. Not Torque: a compatibility layer."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    info = torquesite.up("zeta", cpus=4)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        torquesite.down("zeta")


@pytest.fixture(scope="session")
def iota() -> Iterator[campussite.CampusSiteInfo]:
    """The site `iota`: a Slurm 22.05 cluster built by hand (ci/slurm-campus: its own slurm.conf, munge key
    and users, in a loopback-only namespace); metasched reaches it as alice through `docker exec -u`."""
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    info = campussite.up("iota")
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        campussite.down("iota")


@pytest.fixture(scope="session")
def task_sif(task_image: str, delta: slurmsite.SiteInfo) -> str:
    """containers/task as a SIF where delta's nodes read it (built from `docker save`, cached by tag)."""
    import images  # ci/images.py

    return images.ensure_sif(task_image, Path(delta.directory) / "images").tag


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Redis (Debian's redis-server) on 127.0.0.1 and a free port; yields the port."""
    from tests.integration.processes import free_port, wait_for_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (make test installs it with ci/install-system.sh)")
    port = free_port()
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(log.parent)], stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(proc, port, log, timeout_s=10)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def proxystore_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real ProxyStore endpoint on 127.0.0.1; yields (its UUID, its configuration directory)."""
    from tests.integration.endpoints import running_endpoint

    home = tmp_path_factory.mktemp("proxystore-home")
    with running_endpoint(home) as endpoint:
        yield endpoint, str(home)


@pytest.fixture(scope="session")
def gc_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An offline Globus Compute endpoint: a GlobusComputeEngine whose workers run on this machine."""
    from tests.integration.gc_endpoints import offline_endpoint

    with offline_endpoint(tmp_path_factory.mktemp("gc-local"), "--workers", "4") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")  # its worker job holds an alpha node: gone before tests that need alpha idle
def gc_alpha(slurm_sites: dict[str, slurmsite.SiteInfo]) -> Iterator[object]:
    """An offline Globus Compute endpoint whose engine's workers run in a Slurm job at site alpha."""
    from tests.integration.gc_endpoints import offline_endpoint

    alpha = slurm_sites["alpha"]
    directory = Path(alpha.shared_dir) / f"gc-endpoint-{os.getpid()}"
    with offline_endpoint(directory, "--provider", "slurm", "--slurm-conf", alpha.slurm_conf, "--partition",
                          alpha.partition, "--worker-python", "python3", "--stage-into", alpha.shared_dir,
                          "--workers", "4") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def criu_ready(slurm_sites: dict[str, slurmsite.SiteInfo]) -> None:
    """The CRIU backend's gate on both sites (a job dumps and restores a process); skip with why if not."""
    import metasched as ms
    from metasched.sites.preflight import check_site

    for info in slurm_sites.values():
        checks = check_site(ms.SlurmSite(info.name, slurm_conf=info.slurm_conf, shared_dir=info.shared_dir,
                                         checkpoint_dir=slurmsite.SCRATCH))
        result = checks[-1]
        if result.check != "criu" or not result.passed:
            pytest.skip(f"CRIU does not work at site {info.name}: {result.detail} ({result.fix})")

# ---------------------------------------------------------------------------------------------- pilots
# Pilot nodes join the campaign's Ray head, and Ray then listens on every interface; on this machine that
# happens only inside the namespace of a ``--network none`` holder container (ci/netns.py). ``make test``
# runs the pilot tests (tests/pilot, and the contract suite's pilot variants) through ``python
# ci/netns.py run -- pytest -m pilot ...``; run anywhere else, they skip and say so. The pilot sites'
# compute nodes mount this machine's Python and virtualenv read-only at the same paths, so the pilots run
# the very Ray (and Python, to the patch level) of the head, as a shared filesystem gives them on a real
# cluster.


@pytest.fixture(scope="session")
def holder() -> str:
    """The holder container whose namespace this process runs in; skip (with how to run) elsewhere."""
    name = os.environ.get(netns.HOLDER_ENV, "")
    if not name or not netns.inside(name):
        pytest.skip("pilot tests run inside the loopback-only network namespace: "
                    "`python ci/netns.py run -- pytest tests/pilot` (part of `make test`)")
    return name


@pytest.fixture(scope="session")
def host_listeners(holder: str) -> set[tuple[str, str, int]]:
    """What listens in the machine's own namespace before any pilot test."""
    return listening()


@pytest.fixture(scope="session")
def kappa(holder: str) -> Iterator[slurmsite.SiteInfo]:
    """A 2-node Slurm 22.05 site in the holder's namespace, compute nodes with this Python mounted; its
    controller is also an SSH login node (in the namespace), its volume `remote_dir` the shared directory
    when reached over SSH."""
    info = slurmsite.up("kappa", fresh=True, nodes=2, cpus=4, network=f"container:{holder}",
                        binds=netns.this_python(), ssh=True)
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("kappa")


@pytest.fixture(scope="session")
def theta(holder: str) -> Iterator[slurmsite.SiteInfo]:
    """A 1-node Slurm 26.05 site with Apptainer (sid image, as delta) in the holder's namespace, its compute
    node with this Python mounted: container tasks in pilot blocks."""
    info = slurmsite.up("theta", fresh=True, nodes=1, cpus=4, flavor="sid", network=f"container:{holder}",
                        binds=netns.this_python())
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        slurmsite.down("theta")


@pytest.fixture(scope="session")
def mu(holder: str) -> Iterator[slurmsite.SiteInfo]:
    """A Torque-wrapper site (qsub/qstat/qdel over Slurm) in the holder's namespace, for the PBS dialect."""
    info = torquesite.up("mu", cpus=4, network=f"container:{holder}",
                         binds=netns.this_python())
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        torquesite.down("mu")


@pytest.fixture(scope="session")
def nu(holder: str) -> Iterator[gesite.GESiteInfo]:
    """A Grid Engine 8.1.9 cell in the holder's namespace, this Python mounted, for pilot blocks."""
    info = gesite.up("nu", slots=4, network=f"container:{holder}",
                     binds=netns.this_python())
    yield info
    if not os.environ.get("METASCHED_KEEP_SITES"):
        gesite.down("nu")
