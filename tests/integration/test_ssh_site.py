"""A Slurm site reached only over SSH (site omicron, ci/ssh-login): its shared directory is a Docker volume
this machine cannot see, so every job script, input, outcome and output travels through the site's one
multiplexed SSH connection."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import slurmsite
import sshlogin

import metasched as ms
from metasched.sites.preflight import check_site
from metasched.ssh import close_shared
from tests.integration.batch_faults import assert_nothing_lost, attempts, outage_campaign
from tests.integration.cli_helpers import assert_follow_streams
from tests.integration.processes import kill_tree
from tests.integration.ssh_sites import slurm_ssh_site, torque_ssh_site

pytestmark = pytest.mark.slurm

CONTROLLER = "metasched-slurm-omicron-controller"
MASTER_EXIT_S = 10.0  # how long a master told to exit may take to be gone
ODD = "a b;$(touch /tmp/pwned) `id` 'q' \"dq\" * \\ $HOME\nline2"


def _at_site(*argv: str) -> subprocess.CompletedProcess[str]:
    """A command on the login node behind metasched's back (through docker, not ssh)."""
    return subprocess.run(["docker", "exec", CONTROLLER, *argv], capture_output=True, text=True, timeout=60,
                          check=False)


def _masters() -> list[psutil.Process]:
    """This machine's running ssh master processes for omicron.

    Not one that has exited and waits to be reaped (a zombie: `ssh -f` daemonizes the master, so its
    parent is whichever process adopts orphans here, which may reap it later).
    """
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["name"] == "ssh" and {"ControlMaster=yes", sshlogin.alias("omicron")} <= set(cmdline):
            found.append(proc)
    return found


def _no_master_left(message: str) -> None:
    """No master for omicron runs within MASTER_EXIT_S (one told to exit answers first, then exits)."""
    deadline = time.monotonic() + MASTER_EXIT_S
    while _masters() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _masters(), message


def _connections(port: int) -> int:
    """Established TCP connections from this machine to the site's sshd."""
    return sum(1 for c in psutil.net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port)


def _submitted(journal: Path) -> dict[str, str]:
    """The job id of each task's attempts, once the journal has them."""
    try:
        return {row[0]: row[3] for row in attempts(journal) if row[3]}
    except sqlite3.OperationalError:  # not created yet
        return {}


def _where(x: int) -> tuple[int, str, str]:
    import os as node_os

    return x * x, node_os.environ.get("SLURM_JOB_ID", ""), node_os.getcwd()


def test_functions_and_commands_run_over_one_connection(omicron: slurmsite.SiteInfo, ray_local: None,
                                                        tmp_path: Path) -> None:
    assert not Path(omicron.remote_dir).exists()  # only the site's containers have it
    listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == omicron.ssh_port}
    assert listening == {"127.0.0.1"}, f"the login node's sshd listens on {listening}"
    with ms.Campaign("ssh-basic", sites=[slurm_ssh_site(omicron)], journal=tmp_path / "j.db") as c:
        where = c.task(name=f"where {ODD}")(_where)
        squares = [where(i) for i in range(6)]
        odd = c.command(["printf", "%s|%s", ODD, "$WEIRD"], env={"WEIRD": ODD})
        env = c.command(["sh", "-c", 'printf %s "$WEIRD"'], env={"WEIRD": ODD})
        failing = c.command(["sh", "-c", "echo to-stderr >&2; exit 3"])
        big = c.task()(lambda n: b"x" * n)(300_000)  # above the data threshold: stored at the site
        results = [f.result(timeout=180) for f in squares]
        assert odd.result(timeout=120).stdout == f"{ODD}|$WEIRD"
        assert env.result(timeout=120).stdout == ODD
        error = failing.exception(timeout=120)
        ms.wait([big], timeout=120)
        connections = _connections(omicron.ssh_port)
        assert big.result(timeout=120) == b"x" * 300_000  # read by this process, on a connection of its own
    assert [r[0] for r in results] == [i * i for i in range(6)]
    assert len({r[1] for r in results}) == 6
    assert all(r[1] for r in results)
    assert all(r[2].startswith(f"{omicron.remote_dir}/.metasched/attempts/") for r in results)
    assert isinstance(error, ms.RemoteTaskError)
    assert "to-stderr" in str(error)
    assert connections == 1, f"{connections} SSH connections to the site: commands were not multiplexed"
    assert _at_site("test", "-e", "/tmp/pwned").returncode == 1  # nothing in the argv ran as a shell
    listed = set(_at_site("ls", f"{omicron.remote_dir}/.metasched/attempts").stdout.split())
    db = sqlite3.connect(tmp_path / "j.db")
    ours = {attempt_id for (attempt_id,) in db.execute("SELECT attempt_id FROM attempts")}
    db.close()
    assert len(ours) == 10
    assert ours <= listed  # every attempt's directory is at the site
    _no_master_left("the campaign left its SSH master running")


MB100 = 100 * 2**20


def _made(seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(256)) * (MB100 // 256)


def _digest(data: bytes) -> str:
    import hashlib as node_hashlib

    return node_hashlib.sha256(bytes(data)).hexdigest()


def test_stored_data_stays_where_it_was_made_and_moves_verified_both_ways(
        omicron: slurmsite.SiteInfo, alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """100 MB made at the SSH site and consumed here and at a Slurm site sharing this machine's
    filesystem, 100 MB made here and consumed there, a stored argument read there: each object stays in
    the store it was made in (at the site: its shared directory) until a consumer elsewhere needs it, each
    copy is verified, the scheduler never holds the bytes, and the driver reads a result left at the site
    through SSH."""
    import hashlib

    alpha_site = ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir,
                              poll_interval=0.3)
    with ms.Campaign("ssh-data", sites=[slurm_ssh_site(omicron), ms.LocalSite("local", cores=2), alpha_site],
                     journal=tmp_path / "j.db", store=ms.FileStore(str(tmp_path / "home"))) as c:
        baseline = c._client.call("peak_memory_mb")
        there = c.task(sites=["omicron"])(_made)(1)
        here = c.task(sites=["local"])(_made)(2)
        read_here = c.task(sites=["local"])(_digest)(there)
        read_alpha = c.task(sites=["alpha"])(_digest)(there)
        read_there = c.task(sites=["omicron"])(_digest)(here)
        argument = c.task(sites=["omicron"])(len)(b"y" * 300_000)  # stored by the driver, read at the site
        left = c.task(sites=["omicron"])(_made)(3)  # consumed by nobody: stays at the site
        assert read_here.result(timeout=300) == hashlib.sha256(_made(1)).hexdigest()
        assert read_alpha.result(timeout=300) == hashlib.sha256(_made(1)).hexdigest()
        assert read_there.result(timeout=300) == hashlib.sha256(_made(2)).hexdigest()
        assert argument.result(timeout=120) == 300_000
        assert bytes(left.result(timeout=300)) == _made(3)  # the driver reads it over SSH
        peak = c._client.call("peak_memory_mb")
    print(f"scheduler peak memory: {baseline:.0f} MB before, {peak:.0f} MB after 3 x 100 MB transfers")
    assert peak - baseline < 20, (baseline, peak)
    store = f"{omicron.remote_dir}/.metasched/store"
    db = sqlite3.connect(tmp_path / "j.db")
    objects = list(db.execute("SELECT object_id, store_id, origin, size, transfer_s, evicted FROM objects"))
    db.close()
    remote_id = f"ssh:{sshlogin.alias('omicron')}:{store}"
    origins = {oid: sid for oid, sid, origin, *_ in objects if origin}
    assert origins[there.task_id] == remote_id
    assert origins[left.task_id] == remote_id
    assert origins[here.task_id] == f"file:{tmp_path / 'home'}"
    copies = {(oid, sid): (size, seconds, evicted) for oid, sid, origin, size, seconds, evicted in objects
              if not origin}
    assert set(copies) == {(there.task_id, f"file:{tmp_path / 'home'}"),  # the local site's store is the home
                           (there.task_id, f"file:{alpha.shared_dir}/.metasched/store"),
                           (here.task_id, remote_id), (f"{argument.task_id}.arg0", remote_id)}
    assert all(size > MB100 and seconds > 0 for (oid, _), (size, seconds, _) in copies.items()
               if oid in (there.task_id, here.task_id))
    # at the site: the objects made there, and nothing left of the copy its consumer no longer needs
    files = set(_at_site("ls", store).stdout.split())
    assert sum(1 for f in files if f.endswith(".ready")) >= 2
    assert copies[(here.task_id, remote_id)][2] is not None  # evicted, through SSH
    assert not Path(omicron.remote_dir).exists()  # nothing was written here at the site's paths
    _no_master_left("an SSH master outlived the campaign")


def test_an_object_made_at_one_site_over_ssh_moves_verified_to_another(
        omicron: slurmsite.SiteInfo, xi: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """100 MB made at omicron (Slurm over SSH) and consumed at xi (Torque wrappers over SSH): neither host
    reaches the other, so the transfer worker streams it from one SSH master to the other, hashing it on
    the way; the copy is journaled at xi's store and evicted once its consumer is done."""
    import hashlib

    with ms.Campaign("ssh-hosts", sites=[slurm_ssh_site(omicron), torque_ssh_site(xi, poll_interval=0.3)],
                     journal=tmp_path / "j.db") as c:
        made = c.task(sites=["omicron"])(_made)(4)
        read = c.task(sites=["xi"])(_digest)(made)
        assert read.result(timeout=300) == hashlib.sha256(_made(4)).hexdigest()
    db = sqlite3.connect(tmp_path / "j.db")
    rows = list(db.execute("SELECT store_id, origin, size, transfer_s, evicted FROM objects "
                           "WHERE object_id = ?", (made.task_id,)))
    db.close()
    omicron_store = f"ssh:{sshlogin.alias('omicron')}:{omicron.remote_dir}/.metasched/store"
    xi_store = f"ssh:{sshlogin.alias('xi')}:{xi.remote_dir}/.metasched/store"
    by_store = {store: (origin, size, seconds, evicted) for store, origin, size, seconds, evicted in rows}
    assert set(by_store) == {omicron_store, xi_store}
    assert by_store[omicron_store][0]  # made there
    origin, size, seconds, evicted = by_store[xi_store]
    assert not origin
    assert size > MB100
    assert seconds > 0
    assert evicted is not None
    print(f"100 MB omicron -> xi through this machine: {seconds:.2f} s")
    assert not Path(xi.remote_dir).exists()


def test_copies_to_and_from_the_site_refuse_bytes_that_are_not_the_object(
        omicron: slurmsite.SiteInfo, tmp_path: Path) -> None:
    """A replica whose bytes do not hash to what was recorded is not copied, either way, and the copy
    started at the target is removed; a missing object is reported as missing."""
    from dataclasses import replace

    from metasched.data.objects import copy_object, evict, exists, put_blob

    remote = slurm_ssh_site(omicron).default_store()
    assert isinstance(remote, ms.SshFileStore)
    here = ms.FileStore(str(tmp_path / "here"))
    blob = os.urandom(3_000_000)
    there = put_blob(remote, blob, object_id="o1")  # through SSH: this process is not at the site
    assert exists(there)
    back = copy_object(there, here)
    assert back.ref is not None
    assert (tmp_path / "here" / back.ref.key.filename).read_bytes() == blob
    store_dir = f"{remote.path}/"
    before = set(_at_site("ls", store_dir).stdout.split())
    for source, target in ((replace(there, digest="0" * 32), here),
                           (replace(back.ref, digest="0" * 32), remote)):
        result = copy_object(source, target)
        assert result.ref is None
        assert "expected 3000000 bytes, hash 000" in result.error, result.error
    assert set(_at_site("ls", store_dir).stdout.split()) == before  # the refused copy was removed there
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == sorted(
        [back.ref.key.filename, back.ref.key.filename + ".ready"])  # and here
    missing = copy_object(replace(there, key=type(there.key)(filename="nothing-here")), here)
    assert missing.ref is None
    assert "FileNotFoundError" in missing.error, missing.error
    evict(there)
    assert not exists(there)
    assert there.key.filename not in _at_site("ls", store_dir).stdout
    close_shared()  # this process's master to the site (its exit would close it too)
    _no_master_left("close_shared() left this process's master running")


def test_logs_follow_prints_a_running_tasks_output_at_the_site_over_ssh(
        omicron: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """The CLI in another process reads the running attempt's output at the site (tail -c through SSH)."""
    assert_follow_streams(slurm_ssh_site(omicron), tmp_path / "f.db")
    _no_master_left("the follower's SSH master outlived it")


def test_a_site_that_fails_to_start_closes_the_connection_another_site_opened(
        omicron: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """The campaign's sites start at once; one that fails (its login command fails) fails the start, and
    the SSH site that had started is closed again: its master does not outlive the failed start."""
    assert not _masters(), "a master from an earlier test is still running"
    gone = ms.SlurmSite("gone", login=("false",), shared_dir=str(tmp_path))
    campaign = ms.Campaign("ssh-start-fails", sites=[slurm_ssh_site(omicron), gone],
                           journal=tmp_path / "f.db")
    with pytest.raises(ms.SiteAgentError, match="site gone"):
        campaign.start()
    _no_master_left("the SSH site that had started kept its master after the campaign's start failed")


def test_a_killed_master_is_opened_again_and_nothing_is_lost(omicron: slurmsite.SiteInfo, ray_local: None,
                                                              tmp_path: Path) -> None:
    journal = tmp_path / "m.db"
    with ms.Campaign("ssh-master", sites=[slurm_ssh_site(omicron)], journal=journal) as c:
        futures = [c.command(["sleep", "2"], name=f"s{i}") for i in range(8)]
        deadline = time.monotonic() + 60
        while not any(row[3] for row in attempts(journal)):
            assert time.monotonic() < deadline, "no job was submitted"
            c.flush()
            time.sleep(0.2)
        [first] = _masters()
        os.kill(first.pid, signal.SIGKILL)
        assert all(f.result(timeout=180).returncode == 0 for f in futures)
        later = _masters()
    assert len(later) == 1
    assert later[0].pid != first.pid
    rows = attempts(journal)
    assert sorted(row[2] for row in rows).count("succeeded") == 8
    assert len(rows) == 8, f"attempts beyond one per task: {rows}"


def test_sshd_stopped_for_30_s_loses_nothing_and_gets_no_work(omicron: slurmsite.SiteInfo, ray_local: None,
                                                               tmp_path: Path) -> None:
    journal = tmp_path / "o.db"
    config = str(sshlogin.ssh_dir(omicron.directory) / "sshd_config")
    sites = [ms.LocalSite("local", cores=1), slurm_ssh_site(omicron)]
    with ms.Campaign("ssh-outage", sites=sites, journal=journal) as c:
        outage = outage_campaign(
            c, journal, "omicron",
            stop=lambda: _at_site("pkill", "-x", "sshd"),  # the listener and the master's session
            start=lambda: _at_site("/usr/sbin/sshd", "-f", config, "-E", f"{omicron.directory}/log/sshd.log"),
            down_s=30)
    assert_nothing_lost(journal, "omicron", outage)


def test_a_resumed_campaign_reattaches_to_its_jobs_over_ssh(omicron: slurmsite.SiteInfo,
                                                            tmp_path: Path) -> None:
    """The scheduler SIGKILLed with jobs running at the SSH site, and this machine's copy of the attempt
    directories lost: the resumed campaign gets them back from the site, follows the same jobs (through a
    connection of its own) and submits nothing again."""
    script = Path(__file__).parent / "scripts" / "reattach_campaign.py"
    journal = tmp_path / "r.db"
    args = [sys.executable, str(script), str(journal), omicron.slurm_conf, omicron.remote_dir]
    ssh = [sshlogin.alias("omicron"), str(sshlogin.client_config(omicron.directory))]
    run = subprocess.Popen([*args, "run", *ssh], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_submitted(journal)) < 6:
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, "jobs were not submitted in 60 s"
            time.sleep(0.2)
    finally:
        kill_tree(run.pid)
    before = _submitted(journal)
    orphans = _masters()  # the killed scheduler's master outlives it (ControlPersist), then exits alone
    copies = list((Path(os.environ["METASCHED_HOME"]) / "sites").glob("remote-*"))
    assert len(copies) == 1
    shutil.rmtree(copies[0])  # resumed on another machine: the attempts come back from the site
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=300, check=False)
    for master in orphans:
        master.kill()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "RESUMED 0 1 2 3 4 5" in resumed.stdout
    rows = attempts(journal)
    assert _submitted(journal) == before, "the resumed campaign submitted again"
    assert {row[2] for row in rows} == {"succeeded"}


def test_sites_check_reaches_the_site_over_ssh_or_says_how_to_fix_it(omicron: slurmsite.SiteInfo,
                                                                     tmp_path: Path) -> None:
    checks = {c.check: c for c in check_site(slurm_ssh_site(omicron))}
    assert list(checks) == ["reachable", "smoke task", "python"]
    assert all(c.passed for c in checks.values()), checks
    _no_master_left("sites check left its SSH master running")
    bad_dir = {c.check: c for c in check_site(slurm_ssh_site(omicron, shared_dir="/nonexistent/scratch"))}
    assert not bad_dir["shared_dir"].passed
    assert "/nonexistent/scratch is not a writable directory at omicron-login" in bad_dir["shared_dir"].detail
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")  # a host key nobody has accepted: refused, never accepted silently
    stranger = check_site(slurm_ssh_site(omicron, ssh_options=(
        "-F", str(sshlogin.client_config(omicron.directory)), "-o", f"UserKnownHostsFile={known_hosts}")))
    assert [(c.check, c.passed) for c in stranger] == [("reachable", False)]
    assert "Host key verification failed" in stranger[0].detail
    assert "host key in known_hosts" in stranger[0].fix


def test_a_master_the_user_opened_is_used_and_left_to_them(omicron: slurmsite.SiteInfo, ray_local: None,
                                                           tmp_path: Path) -> None:
    """A site that asks for a one-time code: the user opens the master in a terminal (here the key answers),
    metasched runs through it, opens none of its own and leaves it open; once it is gone, the site says how
    to open it again."""
    control = tmp_path / "cm"
    ssh = ["ssh", "-F", str(sshlogin.client_config(omicron.directory)), "-S", str(control)]
    host = sshlogin.alias("omicron")
    subprocess.run([*ssh, "-M", "-fN", host], check=True, timeout=30, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        site = slurm_ssh_site(omicron, ssh_control_path=str(control))
        with ms.Campaign("ssh-users-master", sites=[site], journal=tmp_path / "u.db") as c:
            assert c.command(["echo", "through yours"]).result(timeout=120).stdout == "through yours\n"
            assert not _masters(), "metasched opened a master of its own"
        assert subprocess.run([*ssh, "-O", "check", host], capture_output=True, timeout=30).returncode == 0
    finally:
        subprocess.run([*ssh, "-O", "exit", host], capture_output=True, timeout=30, check=False)
    checks = check_site(slurm_ssh_site(omicron, ssh_control_path=str(control)))
    assert [(c.check, c.passed) for c in checks] == [("reachable", False)]
    assert f"open it again with `ssh -M -S {control} -fN {host}`" in checks[0].detail
