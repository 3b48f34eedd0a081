"""What the scheduler knows about stored objects: where each replica is, and what moving one costs.

Pure bookkeeping (no I/O): the service feeds it replicas and observed transfers, and asks it which
inputs a site lacks and how long moving them would take.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from metasched.data.objects import DataRef

DEFAULT_BYTES_PER_S = 200e6
DEFAULT_LATENCY_S = 0.5
_SMOOTHING = 0.3


@dataclass(slots=True)
class _Link:
    bytes_per_s: float = DEFAULT_BYTES_PER_S
    latency_s: float = DEFAULT_LATENCY_S
    samples: int = 0


class BandwidthModel:
    """Per store pair: time = latency + bytes / bandwidth, both learned from observed transfers."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], _Link] = {}

    def estimate(self, source: str, target: str, size: int) -> float:
        """Predicted seconds to move `size` bytes from store `source` to store `target`."""
        link = self._links.get((source, target)) or _Link()
        return link.latency_s + size / link.bytes_per_s

    def observe(self, source: str, target: str, size: int, seconds: float) -> None:
        """Learn from one finished transfer (small objects teach latency, big ones bandwidth)."""
        link = self._links.setdefault((source, target), _Link())
        weight = 1.0 if link.samples == 0 else _SMOOTHING
        if size < 1_000_000:
            link.latency_s += weight * (seconds - link.latency_s)
        else:
            rate = size / max(seconds - min(link.latency_s, seconds / 2), 1e-6)
            link.bytes_per_s += weight * (rate - link.bytes_per_s)
        link.samples += 1


class DataTracker:
    """Replicas of every object the campaign stored, by store."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict[str, DataRef]] = {}
        self.origin: dict[str, str] = {}
        self.model = BandwidthModel()

    def add(self, ref: DataRef, *, origin: bool = False) -> None:
        """Record a replica (the first one of an object is its origin)."""
        stores = self.replicas.setdefault(ref.object_id, {})
        stores[ref.store.store_id] = ref
        if origin or ref.object_id not in self.origin:
            self.origin[ref.object_id] = ref.store.store_id

    def replica(self, object_id: str, store_id: str) -> DataRef | None:
        """The replica of `object_id` in `store_id`, if there is one."""
        return self.replicas.get(object_id, {}).get(store_id)

    def source(self, object_id: str, store_id: str) -> DataRef | None:
        """The replica to copy `object_id` from to reach `store_id` (the cheapest one); None if unknown."""
        stores = self.replicas.get(object_id)
        if not stores:
            return None
        return min(stores.values(), key=lambda r: self.model.estimate(r.store.store_id, store_id, r.size))

    def missing(self, object_ids: Iterable[str], store_id: str) -> list[DataRef]:
        """For each known object not yet in `store_id`: the replica to copy it from."""
        out = []
        for object_id in dict.fromkeys(object_ids):
            if self.replica(object_id, store_id) is None:
                source = self.source(object_id, store_id)
                if source is not None:
                    out.append(source)
        return out

    def transfer_seconds(self, object_ids: Iterable[str], store_id: str) -> float:
        """Predicted time to bring every object in `object_ids` to `store_id` (one after the other)."""
        return sum(self.model.estimate(ref.store.store_id, store_id, ref.size)
                   for ref in self.missing(object_ids, store_id))

    def remove(self, object_id: str, store_id: str) -> DataRef | None:
        """Forget one replica (after evicting it); returns it."""
        stores = self.replicas.get(object_id, {})
        ref = stores.pop(store_id, None)
        if not stores:
            self.replicas.pop(object_id, None)
            self.origin.pop(object_id, None)
        return ref
