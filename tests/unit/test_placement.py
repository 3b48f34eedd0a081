from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metasched import placement
from metasched.errors import ConfigurationError, PlacementError
from metasched.options import check_options
from metasched.placement import DefaultPolicy, RoundRobinPolicy, assume_unknowns, feasible_sites, policy_named
from metasched.records import (
    Capability,
    CheckpointKind,
    ContainerRuntime,
    Image,
    Resources,
    SiteLoad,
    SiteName,
    TaskId,
    TaskKind,
    TaskSpec,
)
from site_agents.batch.submitting import SUBMIT_AHEAD_S, SUBMIT_THREADS, submission_window


def load(name: str, *, cores: int = 8, gpus: int = 0, inflight: int = 0, max_inflight: int = 10,
         wait: float = 0.0, queues: bool = False) -> SiteLoad:
    return SiteLoad(site=SiteName(name), total_cores=cores, max_cores_per_task=cores, max_memory_mb=16000,
                    gpus=gpus, nodes=1, inflight=inflight, max_inflight=max_inflight, est_wait_s=wait,
                    reports_start=queues)


def task(**res: int) -> TaskSpec:
    sites = res.pop("sites", None)
    return TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(**res),
                    sites=(SiteName("beta"),) if sites else ())


def test_infeasible_everywhere_names_the_requirement_per_site() -> None:
    with pytest.raises(PlacementError) as excinfo:
        feasible_sites(task(gpus=1), [load("alpha"), load("beta", cores=4)])
    message = str(excinfo.value)
    assert "'sim' (t1)" in message
    assert "alpha: needs gpus=1, offers 0" in message
    assert "beta: needs gpus=1, offers 0" in message
    assert excinfo.value.requirement == "needs gpus=1, offers 0"


def test_feasibility_filters_by_cores_and_allowed_sites() -> None:
    assert [s.site for s in feasible_sites(task(cores=6), [load("a", cores=4), load("b", cores=8)])] == ["b"]
    assert [s.site for s in feasible_sites(task(sites=1), [load("alpha"), load("beta")])] == ["beta"]


def test_default_policy_prefers_free_capacity_and_short_waits() -> None:
    policy = DefaultPolicy()
    busy, idle = load("busy", inflight=9), load("idle", inflight=1)
    assert policy.choose(task(), [busy, idle]) == "idle"
    slow = load("slow", wait=600)
    assert policy.choose(task(), [slow, load("fast", inflight=5)]) == "fast"
    assert policy.choose(task(), [load("full", inflight=10)]) is None


def test_round_robin_rotates_among_open_sites() -> None:
    policy = policy_named("round-robin")
    assert isinstance(policy, RoundRobinPolicy)
    sites = [load("a"), load("b"), load("c", inflight=10)]
    picks = [policy.choose(task(), sites) for _ in range(4)]
    assert set(picks) == {"a", "b"}
    assert picks[0] != picks[1]


def test_round_robin_keeps_a_tasks_turn_at_a_batch_site_that_takes_work_as_fast_as_it_submits() -> None:
    policy = RoundRobinPolicy()
    sites = [load("a", max_inflight=100), load("b", max_inflight=100)]
    for site in sites:
        site.intake = 1  # submitting one job, no room for a second yet
    tasks = [TaskSpec(task_id=TaskId(f"t{i}"), name="sim", kind=TaskKind.COMMAND, resources=Resources())
             for i in range(6)]
    picks = []
    for spec in tasks:
        picks.append(policy.choose(spec, sites))
        next(s for s in sites if s.site == picks[-1]).inflight += 1
    assert sorted(picks) == ["a", "a", "a", "b", "b", "b"]  # in turn, not all to the first to take more
    sites[0].intake = 100  # a has room again, b not yet: b's tasks wait for b
    for site in sites:
        site.inflight = 0
    assert [policy.choose(spec, sites) for spec in tasks[2:]] == picks[2:]

def test_round_robin_forgets_the_turns_of_tasks_it_is_no_longer_asked_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "HELD_TURNS", 3)
    policy, site = RoundRobinPolicy(), load("a", max_inflight=100)
    site.intake = 0  # takes nothing yet: every task asked about waits for its turn there
    specs = [TaskSpec(task_id=TaskId(f"t{i}"), name="sim", kind=TaskKind.COMMAND, resources=Resources())
             for i in range(5)]
    for spec in specs[:3]:
        assert policy.choose(spec, [site]) == "a"
    assert policy.choose(specs[0], [site]) == "a"  # asked again (t1 is now the longest not asked about)
    for spec in specs[3:]:  # t1 and t2 cancelled meanwhile: never asked about again
        assert policy.choose(spec, [site]) == "a"
    assert list(policy._waiting) == ["t0", "t3", "t4"]


def test_checkpointable_tasks_only_go_where_the_backend_is_offered() -> None:
    criu = TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(),
                    checkpoint=CheckpointKind.CRIU)
    plain = load("plain")
    able = SiteLoad(site=SiteName("able"), total_cores=8, max_cores_per_task=8, max_memory_mb=16000, gpus=0,
                    nodes=1, inflight=0, max_inflight=10,
                    capabilities=frozenset({Capability.CHECKPOINT_CRIU}))
    assert [s.site for s in feasible_sites(criu, [plain, able])] == ["able"]
    with pytest.raises(PlacementError, match="needs checkpoint=criu"):
        feasible_sites(criu, [plain])


def test_container_tasks_only_go_where_a_runtime_of_their_image_is_offered() -> None:
    def with_image(image: Image) -> TaskSpec:
        return TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(),
                        container=image)

    def offering(name: str, *runtimes: str) -> SiteLoad:
        return SiteLoad(site=SiteName(name), total_cores=8, max_cores_per_task=8, max_memory_mb=16000, gpus=0,
                        nodes=1, inflight=0, max_inflight=10,
                        capabilities=frozenset(Capability.container(ContainerRuntime(r))
                                               for r in runtimes))

    sites = [load("plain"), offering("dock", "docker"), offering("hpc", "apptainer")]
    assert [s.site for s in feasible_sites(with_image(Image("app:1")), sites)] == ["dock"]
    both = Image("app:1", docker="app:1", sif="/images/app.sif")
    assert [s.site for s in feasible_sites(with_image(both), sites)] == ["dock", "hpc"]
    sif_only = Image("app", sif="/images/app.sif")
    with pytest.raises(PlacementError) as excinfo:
        feasible_sites(with_image(sif_only), [load("plain"), offering("dock", "docker")])
    assert "plain: needs a container runtime for image 'app' (apptainer), offers none" in str(excinfo.value)
    assert "dock: needs a container runtime for image 'app' (apptainer), offers docker" in str(excinfo.value)


def test_image_records_validate_and_name_their_sources() -> None:
    assert Image("app:1").source(ContainerRuntime.DOCKER) == "app:1"
    assert Image("app:1").source(ContainerRuntime.APPTAINER) is None
    assert Image("app", sif="/i/app.sif").runtimes() == (ContainerRuntime.APPTAINER,)
    with pytest.raises(ConfigurationError, match="digest must be 'sha256:'"):
        Image("app", digest="md5:abc")
    with pytest.raises(ConfigurationError, match="sif must be an absolute path"):
        Image("app", sif="app.sif")
    with pytest.raises(ConfigurationError, match="container must be an ms.Image"):
        check_options({"container": "app:1"}, "task options")
    with pytest.raises(ConfigurationError, match="checkpoint='criu' cannot dump a container"):
        check_options({"container": Image("app:1"), "checkpoint": "criu"}, "command 'x'")


def test_a_sites_wait_grows_with_our_attempts_ahead_of_the_next_one() -> None:
    local = SiteLoad(site=SiteName("local"), total_cores=2, max_cores_per_task=2, max_memory_mb=None, gpus=0,
                     nodes=1, inflight=0, max_inflight=2, cycle_s=4.0)
    assert local.wait_s() == 0.0
    local.inflight = 2  # both cores busy with ours: the next starts when one frees (4 s / 2 cores)
    assert local.wait_s() == pytest.approx(2.0)
    assert local.wait_s(cores=2) == pytest.approx(4.0)
    busy = SiteLoad(site=SiteName("busy"), total_cores=16, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=3, max_inflight=100, est_wait_s=90.0, open_cores=4, cycle_s=8.0)
    assert busy.wait_s() == pytest.approx(90.0)  # other users' jobs first; then 4 cores are ours
    busy.inflight = 6
    assert busy.wait_s() == pytest.approx(90.0 + 3 * 8.0 / 4)


@given(cores=st.integers(0, 64), open_cores=st.none() | st.integers(0, 64), inflight=st.integers(0, 200),
       max_inflight=st.integers(0, 100), ask=st.integers(1, 8), cycle=st.floats(0, 100),
       est=st.floats(0, 1e4))
def test_the_wait_is_the_later_of_a_free_core_and_a_free_slot(
        cores: int, open_cores: int | None, inflight: int, max_inflight: int, ask: int, cycle: float,
        est: float) -> None:
    site = SiteLoad(site=SiteName("s"), total_cores=cores, max_cores_per_task=cores, max_memory_mb=None,
                    gpus=0, nodes=1, inflight=inflight, max_inflight=max_inflight, est_wait_s=est,
                    open_cores=open_cores, cycle_s=cycle)
    free = cores if open_cores is None else open_cores  # the formula wait_s computes without calls
    for_cores = max(0, inflight + ask - free) * cycle / max(1, free)
    slots = min(free, max_inflight) if max_inflight > 0 else free
    for_slot = max(0, inflight + 1 - max_inflight) * cycle / max(1, slots)
    assert site.wait_s(ask) == pytest.approx(est + max(for_cores, for_slot))


def test_default_policy_waits_for_a_full_site_that_frees_sooner_than_the_others_start() -> None:
    policy = DefaultPolicy()
    local = SiteLoad(site=SiteName("local"), total_cores=1, max_cores_per_task=1, max_memory_mb=None, gpus=0,
                     nodes=1, inflight=1, max_inflight=1, cycle_s=2.0)
    busy = SiteLoad(site=SiteName("busy"), total_cores=16, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=0, max_inflight=100, est_wait_s=90.0, open_cores=4, cycle_s=2.0)
    assert policy.choose(task(), [local, busy]) == "local"  # full: the task waits for it (2 s, not 90 s)
    local.inflight = 50  # 49 of ours already wait for it: 98 s
    assert policy.choose(task(), [local, busy]) == "busy"
    local.inflight, local.accepting = 1, False  # a site that takes no work is never waited for
    assert policy.choose(task(), [local, busy]) == "busy"
    busy.inflight = 100
    assert policy.choose(task(), [local, busy]) is None  # nowhere with a free slot: wait, for no site


def test_default_policy_prefers_a_site_with_room_among_equals() -> None:
    full = load("full", inflight=10)
    assert DefaultPolicy().choose(task(), [full, load("open", inflight=9)]) == "open"


def test_a_site_out_of_slots_waits_for_one_of_ours_to_end_even_with_idle_cores() -> None:
    capped = SiteLoad(site=SiteName("capped"), total_cores=16, max_cores_per_task=8, max_memory_mb=None,
                      gpus=0, nodes=2, inflight=2, max_inflight=2, cycle_s=3.0)  # max_jobs=2, both taken
    assert capped.wait_s() == pytest.approx(1.5)
    spare = load("spare")
    assert DefaultPolicy().choose(task(), [capped, spare]) == "spare"


def test_a_site_slow_to_queue_jobs_takes_what_it_is_submitting_and_counts_the_time_in_its_wait() -> None:
    slow = SiteLoad(site=SiteName("alpha"), total_cores=16, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=0, max_inflight=100, reports_start=True, intake=4)
    local = SiteLoad(site=SiteName("local"), total_cores=2, max_cores_per_task=2, max_memory_mb=None, gpus=0,
                     nodes=1, inflight=2, max_inflight=2, cycle_s=0.5)
    policy = DefaultPolicy(tie_s=0.0)
    placed = []  # a first step: alpha has answered no submission yet
    while (chosen := policy.choose(task(), [slow, local])) is not None:
        placed.append(chosen)
        slow.inflight += chosen == "alpha"
    assert placed == ["alpha"] * 4  # its intake; the rest waits, free to go where a core frees first
    assert slow.free_slots == 0
    assert slow.wait_s() == 0.0
    slow.submit_s, slow.intake = 6.0, 8  # its 4 submissions answered after 6 s: a new one's job queues 6 s on
    assert slow.wait_s() == pytest.approx(6.0)
    slow.shape_starts = {Resources(): 2.0}  # the controller's start is counted from now, not after that
    assert slow.wait_s(1, Resources()) == pytest.approx(6.0)
    assert slow.free_slots == 4
    assert policy.choose(task(), [slow, local]) == "local"  # full, but a core frees in 0.25 s, not 6 s


def test_equal_sites_share_the_work_whatever_their_pace_of_submission() -> None:
    fast, slow = load("fast", max_inflight=200), load("slow", max_inflight=200)
    fast.intake, slow.intake = 100, 8  # sbatch answers in 40 ms at one, 0.5 s at the other
    placed = Counter[str]()
    for _ in range(10):
        chosen = DefaultPolicy().choose(task(), [fast, slow])
        assert chosen is not None
        placed[chosen] += 1
        (fast if chosen == "fast" else slow).inflight += 1
    assert placed == {"fast": 5, "slow": 5}
    fast.inflight, slow.intake = 6, 5  # slow is still submitting its five: its turn is kept, the task waits
    assert slow.free_slots == 0
    assert DefaultPolicy().choose(task(), [fast, slow]) == "slow"


def test_a_site_takes_about_a_second_of_submissions_at_its_recent_pace_and_a_few_before_any() -> None:
    assert submission_window(None) == SUBMIT_THREADS  # one per submitting thread
    assert submission_window(6.0) == SUBMIT_THREADS
    assert submission_window(0.05) == pytest.approx(SUBMIT_THREADS * SUBMIT_AHEAD_S / 0.05, abs=1)
    assert submission_window(0.0) >= 1000  # a site that answers at once is not held back


def test_a_campaigns_first_step_spreads_in_proportion_to_open_cores() -> None:
    sites = [load("small", cores=4, max_inflight=200), load("big", cores=12, max_inflight=200)]
    assume_unknowns(sites)  # no attempt has ended anywhere yet
    assert [s.cycle_s for s in sites] == [1.0, 1.0]
    policy, placed = DefaultPolicy(tie_s=0.0), Counter[str]()
    for _ in range(160):
        chosen = policy.choose(task(), sites)
        assert chosen is not None
        placed[chosen] += 1
        next(s for s in sites if s.site == chosen).inflight += 1
    assert placed == {"small": 40, "big": 120}
    sites[0].cycle_s, sites[1].cycle_s = 3.0, 0.0
    assume_unknowns(sites)
    assert sites[1].cycle_s == 3.0  # the mean of the sites that know theirs


def test_a_batch_site_not_used_yet_is_assumed_to_start_jobs_as_late_as_the_used_ones() -> None:
    used = SiteLoad(site=SiteName("used"), total_cores=16, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=0, max_inflight=100, est_wait_s=3.0, learns=True, learned_s=3.0)
    new = SiteLoad(site=SiteName("new"), total_cores=16, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                   nodes=2, inflight=0, max_inflight=100, est_wait_s=0.0, learns=True)
    local = load("local")  # learns nothing: its wait is no guess
    assume_unknowns([used, new, local])
    assert (used.est_wait_s, new.est_wait_s, local.est_wait_s) == (3.0, 3.0, 0.0)
    # so a task whose data is at the used site still goes there (ties go to the least data moved)
    assert DefaultPolicy().choose(task(), [used, new], {SiteName("new"): 0.5}) == "used"


def test_policies_by_name_and_as_objects() -> None:
    from metasched.placement import as_policy

    assert isinstance(as_policy("default"), DefaultPolicy)
    assert isinstance(as_policy("round-robin"), RoundRobinPolicy)
    with pytest.raises(ValueError, match=r"policy 'fastest'; known: 'default', 'round-robin'"):
        as_policy("fastest")

    class First:
        def choose(self, spec: object, candidates: list[SiteLoad], transfer_s: object = None) -> str:
            return candidates[0].site

    mine = First()
    assert as_policy(mine) is mine
    with pytest.raises(ValueError, match="an object with a choose"):
        as_policy(object())  # type: ignore[arg-type]


def test_a_campaign_refuses_an_unknown_policy_before_starting_anything() -> None:
    import metasched as ms

    with pytest.raises(ConfigurationError, match="campaign 'p': unknown placement policy 'nope'"):
        ms.Campaign("p", policy="nope")


def test_default_policy_hedges_an_overdue_wait_only_where_it_starts_soon() -> None:
    policy = DefaultPolicy(hedge_after_s=10.0, move_after_s=4.0)
    assert not policy.overdue(4.0, 0.5)  # 0.5 s predicted + 4 s
    assert policy.overdue(5.0, 0.5)
    spec = task()
    queueing = [load("busy", wait=300.0, queues=True), load("full", inflight=10, queues=True),
                load("soon", wait=2.0, queues=True)]
    assert policy.hedge(spec, 9.0, 0.5, queueing, {}) is None  # queued twice only past 0.5 s + 10 s
    assert policy.hedge(spec, 11.0, 0.5, queueing, {}) == "soon"  # "full" has no slot, "busy" starts late
    assert policy.hedge(spec, 50.0, 30.0, queueing, {}) is None  # predicted 30 s: only after 60 s
    assert policy.hedge(spec, 61.0, 30.0, queueing, {}) == "soon"
    assert policy.hedge(spec, 61.0, 30.0, queueing, {"soon": 20.0}) is None  # inputs too slow to move
    assert policy.hedge(spec, 600.0, 0.0, queueing[:1], {}) is None
    free_core = load("local")  # starts what it accepts: a move there is not a second place in a queue
    assert policy.hedge(spec, 5.0, 0.5, [*queueing, free_core], {}) == "local"
    assert policy.hedge(spec, 5.0, 0.5, [load("local", inflight=10)], {}) is None  # no core free


def test_the_hedge_budget_is_a_fraction_of_the_campaign_rounded_up_and_zero_turns_it_off() -> None:
    assert DefaultPolicy().hedge_budget(24) == 3  # 10 % by default
    assert DefaultPolicy(hedge_budget=0.0).hedge_budget(1000) == 0
    assert DefaultPolicy(hedge_budget=0.01).hedge_budget(1) == 1
    with pytest.raises(ValueError, match="hedge_budget"):
        DefaultPolicy(hedge_budget=1.5)
    with pytest.raises(ValueError, match="move_after_s"):
        DefaultPolicy(hedge_after_s=5.0, move_after_s=10.0)
