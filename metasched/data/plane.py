"""The scheduler's side of the data layer: locality, transfer steps and object lifetime.

``DataPlane`` knows every site's store and every stored replica. For a task about to be placed it
tells what moving its inputs to each candidate site would cost; once a site is chosen it says which
copies are missing, starts them, and later hands back the tasks whose inputs have all arrived. It
evicts an object once every task that consumed it is done, unless the object is a campaign output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from metasched.data import DataSettings
from metasched.data.objects import DataContext, DataRef, decode_ref, encode_ref, evict
from metasched.data.stores import StoreSpec
from metasched.data.tracker import DataTracker
from metasched.data.transfers import TransferManager, TransferReport, TransferRunner
from metasched.journal_schema import NewReplica
from metasched.records import SiteName, TaskId, TaskSpec

log = logging.getLogger(__name__)


class MissingInput(Exception):
    """An input object of a task has no replica left anywhere (evicted, or its store lost it)."""


class DataPlane:
    """Replicas, transfers and eviction for one campaign."""

    def __init__(self, settings: DataSettings, site_stores: Mapping[SiteName, StoreSpec],
                 runner: TransferRunner, *, transfer_retries: int = 2) -> None:
        self.settings = settings
        self.site_stores = dict(site_stores)
        self.tracker = DataTracker()
        self.transfers = TransferManager(runner, retries=transfer_retries)
        self._new: list[NewReplica] = []
        self._evicted: list[tuple[str, str]] = []
        self._store_sites: dict[str, str] = {}
        for site, store in self.site_stores.items():
            self._store_sites.setdefault(store.store_id, site)
        self._store_sites.setdefault(settings.home.store_id, "driver")

    # ------------------------------------------------------------------------------------ records
    def restore(self, replicas: Iterable[tuple[DataRef, bool]]) -> None:
        """Known replicas from the journal."""
        for ref, origin in replicas:
            self.tracker.add(ref, origin=origin)

    def result_stored(self, result: bytes) -> DataRef | None:
        """Record the replica behind a task's stored result (None for an inline result)."""
        ref = decode_ref(result)
        if ref is not None:
            self.tracker.add(ref, origin=True)
            self._new.append(NewReplica(ref=ref, origin=True))
        return ref

    def checkpoint_stored(self, ref: DataRef) -> None:
        """Record a checkpoint archive an attempt left in its site's store."""
        self.tracker.add(ref, origin=True)
        self._new.append(NewReplica(ref=ref, origin=True))

    def inputs_added(self, spec: TaskSpec) -> None:
        """Record the driver-side replicas of a new task's big arguments."""
        for ref in spec.inputs:
            if self.tracker.replica(ref.object_id, ref.store.store_id) is None:
                self.tracker.add(ref, origin=True)
                self._new.append(NewReplica(ref=ref, origin=True))

    def take_journal_rows(self) -> tuple[list[NewReplica], list[tuple[str, str]]]:
        """Replicas created and evicted since the last call."""
        new, evicted = self._new, self._evicted
        self._new, self._evicted = [], []
        return new, evicted

    def where(self, store_id: str) -> str:
        """The site (or "driver") a store belongs to, for messages."""
        return self._store_sites.get(store_id, store_id)

    # ----------------------------------------------------------------------------------- placement
    def input_ids(self, spec: TaskSpec, stored_deps: Iterable[TaskId]) -> list[str]:
        """The stored objects `spec` consumes: its big arguments and its dependencies' stored results."""
        return [ref.object_id for ref in spec.inputs] + list(stored_deps)

    def transfer_costs(self, object_ids: Sequence[str], sites: Iterable[SiteName]) -> dict[SiteName, float]:
        """Predicted seconds to bring the inputs to each site (0 where they already are)."""
        if not object_ids:
            return {}
        return {site: self.tracker.transfer_seconds(object_ids, self.site_stores[site].store_id)
                for site in sites}

    def missing(self, object_ids: Sequence[str], site: SiteName) -> list[DataRef]:
        """The replicas to copy so that `site` has every input; MissingInput if one exists nowhere."""
        store_id = self.site_stores[site].store_id
        gone = [o for o in object_ids if o not in self.tracker.replicas]
        if gone:
            raise MissingInput(f"stored object(s) {', '.join(gone)} no longer exist in any store (evicted "
                               "after their consumers finished, or deleted); re-run the tasks that made them")
        return self.tracker.missing(object_ids, store_id)

    def stage(self, task_id: TaskId, sources: Sequence[DataRef], site: SiteName) -> str:
        """Start the copies `task_id` waits for; returns a description for the task's status."""
        target = self.site_stores[site]
        self.transfers.request(task_id, sources, target)
        size = sum(r.size for r in sources)
        origins = sorted({self.where(r.store.store_id) for r in sources})
        return (f"moving {len(sources)} object(s), {size / 1e6:.1f} MB, from {', '.join(origins)} "
                f"to {site}")

    def context(self, object_ids: Sequence[str], site: SiteName) -> DataContext:
        """What a worker at `site` needs: its store, the threshold, and its inputs' local replicas."""
        store = self.site_stores[site]
        inputs: dict[str, DataRef] = {}
        for object_id in object_ids:
            ref = self.tracker.replica(object_id, store.store_id)
            if ref is not None:
                inputs[object_id] = ref
        return DataContext(store=store, threshold=self.settings.threshold, inputs=inputs)

    def local_result(self, result: bytes, site: SiteName) -> bytes:
        """A dependency's result as a worker at `site` should see it: its replica there, if stored."""
        ref = decode_ref(result)
        if ref is None:
            return result
        local = self.tracker.replica(ref.object_id, self.site_stores[site].store_id)
        return encode_ref(local) if local is not None else result

    # ----------------------------------------------------------------------------------- transfers
    def poll(self) -> TransferReport:
        """Finished copies: record new replicas and learn bandwidth."""
        report = self.transfers.poll()
        for source, new, seconds in report.arrived:
            self.tracker.add(new)
            self.tracker.model.observe(source.store.store_id, new.store.store_id, new.size, seconds)
            self._new.append(NewReplica(ref=new, origin=False, transfer_s=seconds))
        return report

    def describe_failure(self, source: DataRef, target: StoreSpec, why: str) -> str:
        """The error for a consumer whose input could not be moved: object, both sites, cause."""
        return (f"could not move {source.describe()} from {self.where(source.store.store_id)} to "
                f"{self.where(target.store_id)}: {why}")

    # ------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop the transfers and close connections to stores (the objects stay)."""
        self.transfers.close()

    def release(self, object_ids: Iterable[str], *, keep_origin: bool) -> None:
        """No unfinished task needs these objects: evict their copies (and the origin unless kept)."""
        for object_id in object_ids:
            origin = self.tracker.origin.get(object_id)
            for store_id in list(self.tracker.replicas.get(object_id, {})):
                if keep_origin and store_id == origin:
                    continue
                ref = self.tracker.remove(object_id, store_id)
                if ref is None:
                    continue
                try:
                    evict(ref)
                except Exception as exc:  # a store that cannot evict keeps a file: log, never fail a step
                    log.warning("could not evict %s: %s", ref.describe(), exc)
                self._evicted.append((object_id, store_id))
