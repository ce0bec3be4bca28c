"""What this kernel can do, tried once at start in a scratch table beside the agent's own.

Two questions. Does the kernel have every feature the ruleset uses (enforcer.kernelfeatures)? Each is
tried on its own, so a refusal names the feature, and the agent refuses to start rather than half-apply
its tables; with SNI verification, binding an NFQUEUE queue for a moment is tried too. And how does an
existing element get a new timeout (fqdn_policy.enforcer.refresh)? An element is
written with a short timeout, re-added with a long one, and its expiry read back: kept long, the kernel
updates in place; still short, the re-add was ignored and the agent replaces elements instead (which
is then tried too, on an element that exists and on one that does not).

A scratch table, not a set in the agent's table: listing a set makes libnftables fetch its table,
which at 100,000 allow elements takes seconds; the scratch table holds one element. It is deleted
before and after, so a probe cut short by a crash leaves nothing that the next start does not remove.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fqdn_policy.enforcer.elementwire import ElementChange
from fqdn_policy.enforcer.kernelfeatures import (
    MINIMUM_KERNEL,
    NFLOG,
    NFQUEUE_BIND,
    NFT_QUEUE,
    KernelFeature,
    Needs,
    required_features,
)
from fqdn_policy.enforcer.nfqueuesocket import NfqueueSocket, QueueBusy
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.enforcer.ruleset import FAMILY, Command, delete_table, set_name
from fqdn_policy.policy.state.elements import Element, ElementWrite

SHORT, LONG = 10, 600  # seconds: a kept re-add reads back far above SHORT, an ignored one below it
PROBE_ELEMENT = ("192.0.2.1", "192.0.2.2", None, None)
PROBE_SET = set_name(4, None, None)
PROBE_QUEUE = 65535  # bound for a moment and closed; no rule queues to it


class QueueBinder(Protocol):
    def bind(self) -> None: ...
    def close(self) -> None: ...


class ElementWriter(Protocol):
    def write(self, changes: Sequence[ElementChange], refresh: Refresh) -> None: ...


class KernelUnsupported(RuntimeError):
    """This kernel lacks something the agent needs; the message names it."""


@dataclass(frozen=True, slots=True)
class MissingFeature:
    feature: KernelFeature
    error: str  # what libnftables said


@dataclass(frozen=True, slots=True)
class KernelReport:
    release: str
    refresh: Refresh

    def insisting_on(self, chosen: str) -> KernelReport:
        """This report with `--element-refresh` applied: "auto" keeps what was probed; replace works
        on every kernel; update where the kernel ignores updates is refused (KernelUnsupported)."""
        if chosen == "auto" or chosen == self.refresh:
            return self
        if chosen == Refresh.UPDATE:
            raise KernelUnsupported(
                f"--element-refresh update: kernel {self.release} ignores element updates "
                "(Linux 6.10+); use auto or replace"
            )
        return KernelReport(self.release, Refresh(chosen))


def scratch_table(table: str) -> str:
    return f"{table}_probe"


def probe_kernel(
    nft: Nft,
    elements: ElementWriter,
    table: str,
    needs: Needs,
    release: str | None = None,
    queues: Callable[[int], QueueBinder] = NfqueueSocket,
) -> KernelReport:
    """Every needed feature, then the refresh strategy; KernelUnsupported naming what is missing."""
    release = release or os.uname().release
    missing = missing_features(nft, scratch_table(table), required_features(needs))
    if needs.sni_queue:
        missing += queue_binding(queues)
    if missing:
        raise KernelUnsupported(unsupported_message(release, missing))
    return KernelReport(release, choose_refresh(nft, elements, scratch_table(table), release))


def unsupported_message(release: str, missing: list[MissingFeature]) -> str:
    lacks = "; ".join(f"{m.feature.describe()}: {m.error}" for m in missing)
    return (
        f"kernel {release} lacks what fqdn-policy needs (Linux {MINIMUM_KERNEL} or later with nf_tables "
        f"and its modules; docs/kernels.md): {lacks}"
    )


def missing_features(nft: Nft, scratch: str, features: list[KernelFeature]) -> list[MissingFeature]:
    _drop(nft, scratch)
    missing = []
    for feature in features:
        try:
            nft.run([_add_table(scratch), *feature.commands(scratch)])
        except NftError as error:
            missing.append(MissingFeature(feature, str(error)))
            continue
        nft.run(delete_table(scratch))
    return missing


def queue_binding(queues: Callable[[int], QueueBinder]) -> list[MissingFeature]:
    """Whether a queue can be bound: the nft queue statement is no use without nfnetlink_queue.

    A queue another socket holds answers QueueBusy, which says the subsystem is there."""
    try:
        queue = queues(PROBE_QUEUE)
    except OSError as error:
        return [MissingFeature(NFQUEUE_BIND, str(error))]
    try:
        queue.bind()
    except QueueBusy:
        return []
    except OSError as error:
        return [MissingFeature(NFQUEUE_BIND, str(error))]
    finally:
        queue.close()
    return []


def choose_refresh(nft: Nft, elements: ElementWriter, scratch: str, release: str) -> Refresh:
    _drop(nft, scratch)
    probe_set = {"family": FAMILY, "table": scratch, "name": PROBE_SET, "type": ["ipv4_addr", "ipv4_addr"]}
    nft.run([_add_table(scratch), {"add": {"set": {**probe_set, "flags": ["timeout"]}}}])
    try:
        return _refresh_by_trial(lambda: _held(nft, scratch), elements, scratch, release)
    finally:
        _drop(nft, scratch)


def _refresh_by_trial(
    held: Callable[[], float | None], elements: ElementWriter, scratch: str, release: str
) -> Refresh:
    short = ElementWrite(PROBE_ELEMENT, SHORT, 0.0, "refresh.probe")
    long = short._replace(timeout=LONG)

    def write(refresh: Refresh, *writes: ElementWrite, deletes: tuple[Element, ...] = ()) -> float | None:
        try:
            elements.write([ElementChange(scratch, writes, deletes)], refresh)
        except (OSError, ValueError) as error:
            failed = f"kernel {release}: writing a set element over netlink ({refresh}) failed: {error}"
            raise KernelUnsupported(failed) from error
        return held()

    write(Refresh.UPDATE, short)
    if _kept(write(Refresh.UPDATE, long)):
        return Refresh.UPDATE
    if _kept(write(Refresh.REPLACE, long)):
        write(Refresh.UPDATE, deletes=(PROBE_ELEMENT,))
        if _kept(write(Refresh.REPLACE, long)):  # the element expired meanwhile: the replace must not fail
            return Refresh.REPLACE
    raise KernelUnsupported(
        f"kernel {release}: an allow element's timeout can be refreshed neither in place nor by replacing it"
    )


def _kept(expires: float | None) -> bool:
    return expires is not None and expires > (SHORT + LONG) / 2


def _held(nft: Nft, scratch: str) -> float | None:
    """Seconds the probe element has left, as the kernel says; None if it is absent."""
    for item in nft.list_set(scratch, PROBE_SET):
        elem = item["elem"]
        if isinstance(elem, dict) and "expires" in elem:
            return float(elem["expires"])
    return None


def _add_table(name: str) -> Command:
    return {"add": {"table": {"family": FAMILY, "name": name}}}


def _drop(nft: Nft, scratch: str) -> None:
    if nft.table_exists(scratch):
        nft.run(delete_table(scratch))


def sni_queue_missing(
    nft: Nft, table: str, release: str | None = None, queues: Callable[[int], QueueBinder] = NfqueueSocket
) -> str | None:
    """Why the verify-sni datapath cannot queue on this kernel, or None when it can: asked when a
    verifying policy turns the datapath on without --verify-sni (which insists on it at start)."""
    missing = missing_features(nft, scratch_table(table), [NFT_QUEUE, NFLOG]) + queue_binding(queues)
    return unsupported_message(release or os.uname().release, missing) if missing else None
