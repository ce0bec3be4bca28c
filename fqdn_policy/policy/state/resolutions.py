"""What each pod was answered with through an allowed lookup: pod -> name -> addresses with the time
each allowance ends, and the reverse, pod -> address -> the names that resolved to it.

Kept compact because it holds one entry per live set element (100,000 in the benchmark): per pod, a
name maps to one bare `(until, address, name)` tuple (nearly every name has one address at a time; a
dict costs 128 bytes more) or, with several addresses, a dict; an address maps to one bare name, or a set of
names when several resolved to it. No tuple keys: the pod level is a dict of its own, which saves the
56-byte (pod, name) and (pod, address) key tuples per element (docs/benchmarks.md, "Memory").

Invariant: `name in names_of(pod, dst)` exactly when `dst in addresses(pod, name)`, and `entries_of(pod)`
is the number of (name, address) pairs of the pod.

Per pod, a heap of (until, address, name) items says which entry ends first, exactly: for the expiry
sweep and for the entry budgets (policy.state.budget), which evict a pod's soonest-ending entries. It is lazy:
an extended allowance keeps its old item, which is filed again under the new end when it comes to the
top, so a repeated answer costs no heap operation. Every live entry has an item whose key is at most its
end. A single address's item is its held tuple itself (why the tuple carries the name), so the heap
costs a list slot per entry, not a 64-byte tuple (bench.entrymem: 589 -> B per entry).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

# A heap item, and one name's only address as it is held: (until, address, name).
Item = tuple[float, str, str]
# One name's addresses: a bare Item when there is one, a dict address -> until when there are several.
Held = Item | dict[str, float]
# One address's names: a bare name when there is one, a set when there are several.
Names = str | set[str]


class Resolutions:
    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Held]] = {}
        self._by_dst: dict[str, dict[str, Names]] = {}
        # pod -> its entries by when they end, lazily (see the module docstring).
        self._heaps: dict[str, list[Item]] = {}
        self._counts: dict[str, int] = {}  # pod -> its (name, address) entries
        self.total = 0  # entries of every pod

    def __len__(self) -> int:
        """(pod, name) pairs with at least one address."""
        return sum(len(names) for names in self._by_name.values())

    def entries_of(self, pod: str) -> int:
        """The pod's (name, address) entries."""
        return self._counts.get(pod, 0)

    def largest(self) -> list[tuple[int, str]]:
        """(entries, pod) of every pod, the most entries first."""
        return sorted(((n, pod) for pod, n in self._counts.items()), reverse=True)

    def count(self, pod: str, qname: str) -> int:
        held = self._by_name.get(pod, {}).get(qname)
        if held is None:
            return 0
        return 1 if type(held) is tuple else len(held)

    def addresses(self, pod: str, qname: str) -> dict[str, float]:
        """address -> allowance end, a copy."""
        return _as_dict(self._by_name.get(pod, {}).get(qname))

    def until(self, pod: str, qname: str, dst: str) -> float | None:
        held = self._by_name.get(pod, {}).get(qname)
        if type(held) is tuple:
            return held[0] if held[1] == dst else None
        return held.get(dst) if held is not None else None

    def names_of(self, pod: str, dst: str) -> set[str]:
        """The names of `pod` that resolved to `dst`, a copy."""
        held = self._by_dst.get(pod, {}).get(dst)
        if held is None:
            return set()
        return {held} if type(held) is str else set(held)

    def pods(self) -> list[str]:
        return list(self._by_name)

    def names(self, pod: str) -> list[str]:
        return list(self._by_name.get(pod, ()))

    def entries(self, pod: str) -> Iterator[tuple[str, str, float]]:
        """(name, address, allowance end) of one pod, grouped by name."""
        for qname, held in self._by_name.get(pod, {}).items():
            if type(held) is tuple:
                yield qname, held[1], held[0]
            else:
                for dst, until in held.items():
                    yield qname, dst, until

    def items(self) -> Iterator[tuple[str, str, str, float]]:
        """(pod, name, address, allowance end) of every resolution."""
        for pod, by_name in self._by_name.items():
            for qname, held in by_name.items():
                if type(held) is tuple:
                    yield pod, qname, held[1], held[0]
                else:
                    for dst, until in held.items():
                        yield pod, qname, dst, until

    def record(self, pod: str, qname: str, resolved: dict[str, float], evicted: Iterable[str] = ()) -> None:
        """An answer's addresses (an allowance is only ever extended), minus those the cap evicted."""
        by_name = self._by_name.get(pod)
        if by_name is None:
            by_name = self._by_name[pod] = {}
            self._by_dst[pod] = {}
        by_dst = self._by_dst[pod]
        held = by_name.get(qname)
        evicted = tuple(evicted)
        if not evicted and len(resolved) == 1:  # the common answer: one address, no eviction
            ((dst, until),) = resolved.items()
            if held is None:
                item = by_name[qname] = (until, dst, qname)
                _add_name(by_dst, dst, qname)
                self._added(pod, item)
                return
            if type(held) is tuple and held[1] == dst:
                if held[0] < until:
                    by_name[qname] = (until, dst, qname)  # filed again when the old item comes up
                return
        known = held if type(held) is dict else _as_dict(held)
        for dst in evicted:
            if known.pop(dst, None) is not None:
                _discard_name(by_dst, dst, qname)
                self._removed(pod, 1)
        for dst, until in resolved.items():
            previous = known.get(dst)
            if previous is None:
                known[dst] = until
                _add_name(by_dst, dst, qname)
                self._added(pod, (until, dst, qname))
            elif previous < until:
                known[dst] = until
        self._put(pod, qname, known)

    def remove(self, pod: str, qname: str, dst: str) -> bool:
        """Forget one entry (a budget evicted it); whether it was held."""
        held = self._by_name.get(pod, {}).get(qname)
        if held is None or (held[1] != dst if type(held) is tuple else dst not in held):
            return False
        known = _as_dict(held)
        del known[dst]
        _discard_name(self._by_dst[pod], dst, qname)
        self._removed(pod, 1)
        self._put(pod, qname, known)
        return True

    def soonest(self, pod: str, count: int, skip: Callable[[str, str], bool]) -> list[tuple[str, str, float]]:
        """Up to `count` (name, address, until) of the pod's entries that end first, leaving out those
        `skip(name, address)` accepts. Changes nothing but the heap's filing: the entries stay."""
        heap = self._heaps.get(pod)
        if not heap or count <= 0:
            return []
        taken: list[tuple[float, str, str]] = []
        out: list[tuple[str, str, float]] = []
        seen: set[tuple[str, str]] = set()
        while heap and len(out) < count:
            item = heapq.heappop(heap)
            until, dst, qname = item
            now_until = self.until(pod, qname, dst)
            if now_until is None or now_until < until or (qname, dst) in seen:
                continue  # gone, or a duplicate item
            if now_until > until:
                heapq.heappush(heap, self._item(pod, qname, dst, now_until))  # extended: filed again
                continue
            taken.append(item)
            seen.add((qname, dst))
            if not skip(qname, dst):
                out.append((qname, dst, until))
        for item in taken:
            heapq.heappush(heap, item)
        return out

    def _item(self, pod: str, qname: str, dst: str, until: float) -> Item:
        """The heap item for an entry: a single address's held tuple itself, else a new one."""
        held = self._by_name[pod][qname]
        return held if type(held) is tuple else (until, dst, qname)

    def _added(self, pod: str, item: Item) -> None:
        heap = self._heaps.get(pod)
        if heap is None:
            heap = self._heaps[pod] = []
        heapq.heappush(heap, item)
        self._counts[pod] = self._counts.get(pod, 0) + 1
        self.total += 1

    def _removed(self, pod: str, n: int) -> None:
        self._counts[pod] -= n
        self.total -= n

    def extend(self, pod: str, qname: str, dst: str, until: float) -> None:
        """`record(pod, qname, {dst: until})`, without the dict: a covered repeat's one address."""
        by_name = self._by_name.get(pod)
        held = by_name.get(qname) if by_name is not None else None
        if type(held) is tuple and held[1] == dst:
            if held[0] < until:
                by_name[qname] = (until, dst, qname)  # type: ignore[index]
            return
        self.record(pod, qname, {dst: until})

    def retain(self, pod: str, keep: Callable[[str, str, float], bool]) -> None:
        """Keep only the (name, address, allowance end) of `pod` that `keep` accepts."""
        by_name = self._by_name.get(pod)
        if by_name is None:
            return
        by_dst = self._by_dst[pod]
        for qname, held in list(by_name.items()):
            if type(held) is tuple:
                if not keep(qname, held[1], held[0]):
                    del by_name[qname]
                    _discard_name(by_dst, held[1], qname)
                    self._removed(pod, 1)
                continue
            known = dict(held)
            gone = [dst for dst, until in known.items() if not keep(qname, dst, until)]
            if not gone:
                continue
            for dst in gone:
                del known[dst]
                _discard_name(by_dst, dst, qname)
            self._removed(pod, len(gone))
            self._put(pod, qname, known)
        if not by_name:
            self.drop_pod(pod)

    def expire_due(self, now: float, limit: int | None = None) -> list[tuple[str, str, str, float]]:
        """Forget every allowance that ended by `now`, at most `limit` heap items per call; returns them
        as (pod, name, address, end). Only items at the top of a pod's heap are looked at, so the cost
        is what expired (and the extended items filed again), not what lives."""
        expired: list[tuple[str, str, str, float]] = []
        budget = limit if limit is not None else -1
        for pod, heap in list(self._heaps.items()):
            while heap and heap[0][0] <= now and budget != 0:
                budget -= 1
                until, dst, qname = heapq.heappop(heap)
                held = self._by_name.get(pod, {}).get(qname)
                current = None if held is None else _until_of(held, dst)
                if current is None or current < until:
                    continue  # gone already (a reconcile, an eviction), or a duplicate item
                if current > until:
                    heapq.heappush(heap, self._item(pod, qname, dst, current))  # extended since filed
                    continue
                known = _as_dict(held)
                del known[dst]
                _discard_name(self._by_dst[pod], dst, qname)
                self._removed(pod, 1)
                expired.append((pod, qname, dst, until))
                self._put(pod, qname, known)
            if budget == 0:
                break
        return expired

    def has_due(self, now: float) -> bool:
        return any(heap and heap[0][0] <= now for heap in self._heaps.values())

    def drop_pod(self, pod: str) -> None:
        self._by_name.pop(pod, None)
        self._by_dst.pop(pod, None)
        self._heaps.pop(pod, None)
        self.total -= self._counts.pop(pod, 0)

    def _put(self, pod: str, qname: str, known: dict[str, float]) -> None:
        by_name = self._by_name[pod]
        if len(known) > 1:
            by_name[qname] = known
        elif known:
            dst, until = next(iter(known.items()))
            by_name[qname] = (until, dst, qname)  # in the heap already, under this end or earlier
        else:
            by_name.pop(qname, None)
            if not by_name:
                self.drop_pod(pod)


def _until_of(held: Held, dst: str) -> float | None:
    if type(held) is tuple:
        return held[0] if held[1] == dst else None
    return held.get(dst)


def _as_dict(held: Held | None) -> dict[str, float]:
    if held is None:
        return {}
    if type(held) is tuple:
        return {held[1]: held[0]}
    return dict(held)


def _add_name(by_dst: dict[str, Names], dst: str, name: str) -> None:
    held = by_dst.get(dst)
    if held is None:
        by_dst[dst] = name
    elif type(held) is str:
        if held != name:
            by_dst[dst] = {held, name}
    else:
        held.add(name)


def _discard_name(by_dst: dict[str, Names], dst: str, name: str) -> None:
    held = by_dst.get(dst)
    if held is None:
        return
    if type(held) is str:
        if held == name:
            del by_dst[dst]
    else:
        held.discard(name)
        if len(held) == 1:
            by_dst[dst] = next(iter(held))
