"""What each pod was answered with through an allowed lookup: pod -> name -> addresses with the time
each allowance ends, and the reverse, pod -> address -> the names that resolved to it.

Kept compact because it holds one entry per live set element (100,000 in the benchmark): per pod, a
name maps to one bare `(address, until)` tuple (nearly every name has one address at a time; a dict
costs 128 bytes more) or, with several addresses, a dict; an address maps to one bare name, or a set of
names when several resolved to it. No tuple keys: the pod level is a dict of its own, which saves the
56-byte (pod, name) and (pod, address) key tuples per element (docs/benchmarks.md, "Memory").

Invariant: `name in names_of(pod, dst)` exactly when `dst in addresses(pod, name)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from policy.expirywheel import ExpiryWheel

# One name's addresses: a bare (address, until) when there is one, a dict when there are several.
Held = tuple[str, float] | dict[str, float]
# One address's names: a bare name when there is one, a set when there are several.
Names = str | set[str]


class Resolutions:
    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Held]] = {}
        self._by_dst: dict[str, dict[str, Names]] = {}
        # (pod, name) by when its earliest allowance ends, filed when the name appears: `expire_due`.
        self._wheel: ExpiryWheel[tuple[str, str]] = ExpiryWheel()

    def __len__(self) -> int:
        """(pod, name) pairs with at least one address."""
        return sum(len(names) for names in self._by_name.values())

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
            return held[1] if held[0] == dst else None
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
                yield qname, held[0], held[1]
            else:
                for dst, until in held.items():
                    yield qname, dst, until

    def items(self) -> Iterator[tuple[str, str, str, float]]:
        """(pod, name, address, allowance end) of every resolution."""
        for pod, by_name in self._by_name.items():
            for qname, held in by_name.items():
                if type(held) is tuple:
                    yield pod, qname, held[0], held[1]
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
                by_name[qname] = (dst, until)
                _add_name(by_dst, dst, qname)
                self._wheel.file((pod, qname), until)
                return
            if type(held) is tuple and held[0] == dst:
                if held[1] < until:
                    by_name[qname] = (dst, until)
                return
        known = held if type(held) is dict else _as_dict(held)
        for dst in evicted:
            if known.pop(dst, None) is not None:
                _discard_name(by_dst, dst, qname)
        for dst, until in resolved.items():
            previous = known.get(dst)
            if previous is None:
                known[dst] = until
                _add_name(by_dst, dst, qname)
                self._wheel.file((pod, qname), until)  # it may end before what the name was filed for
            elif previous < until:
                known[dst] = until
        self._put(pod, qname, known)

    def extend(self, pod: str, qname: str, dst: str, until: float) -> None:
        """`record(pod, qname, {dst: until})`, without the dict: a covered repeat's one address."""
        by_name = self._by_name.get(pod)
        held = by_name.get(qname) if by_name is not None else None
        if type(held) is tuple and held[0] == dst:
            if held[1] < until:
                by_name[qname] = (dst, until)  # type: ignore[index]
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
                if not keep(qname, held[0], held[1]):
                    del by_name[qname]
                    _discard_name(by_dst, held[0], qname)
                continue
            known = dict(held)
            gone = [dst for dst, until in known.items() if not keep(qname, dst, until)]
            if not gone:
                continue
            for dst in gone:
                del known[dst]
                _discard_name(by_dst, dst, qname)
            self._put(pod, qname, known)
        if not by_name:
            self.drop_pod(pod)

    def expire_due(self, now: float, limit: int | None = None) -> list[tuple[str, str, str, float]]:
        """Forget every allowance that ended by `now`; returns them as (pod, name, address, end).

        Only names whose earliest allowance may have ended are looked at (the wheel's slots that are
        over), so the cost is what expired, not what lives."""
        expired: list[tuple[str, str, str, float]] = []
        for pod, qname in self._wheel.due(now, limit):
            held = self._by_name.get(pod, {}).get(qname)
            if held is None:
                continue  # gone already (a reconcile, an eviction, the pod left)
            known = _as_dict(held)
            gone = [(dst, until) for dst, until in known.items() if until <= now]
            for dst, until in gone:
                del known[dst]
                _discard_name(self._by_dst[pod], dst, qname)
                expired.append((pod, qname, dst, until))
            if gone:
                self._put(pod, qname, known)
            if known:
                self._wheel.file((pod, qname), min(known.values()))
        return expired

    def has_due(self, now: float) -> bool:
        return self._wheel.has_due(now)

    def drop_pod(self, pod: str) -> None:
        self._by_name.pop(pod, None)
        self._by_dst.pop(pod, None)

    def _put(self, pod: str, qname: str, known: dict[str, float]) -> None:
        by_name = self._by_name[pod]
        if len(known) > 1:
            by_name[qname] = known
        elif known:
            by_name[qname] = next(iter(known.items()))
        else:
            by_name.pop(qname, None)
            if not by_name:
                self.drop_pod(pod)


def _as_dict(held: Held | None) -> dict[str, float]:
    if held is None:
        return {}
    if type(held) is tuple:
        return {held[0]: held[1]}
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
