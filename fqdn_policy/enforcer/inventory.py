"""What the kernel's allow sets hold right now, read back through libnftables.

Used by the agent at start (to adopt what a previous agent allowed) and by `fqdn-policy status` and
`explain`. Each element's comment is the query name it was resolved from (enforcer.ruleset writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.nft import Nft
from fqdn_policy.policy.model import SNI
from fqdn_policy.policy.state.elements import Element


@dataclass(frozen=True, slots=True)
class ListedElement:
    element: Element  # (pod address, destination, protocol or None, port or None)
    timeout: int  # seconds the element was written with
    expires: float  # seconds left
    name: str  # the query name from the element's comment ("" if none)

    @property
    def pod_ip(self) -> str:
        return self.element[0]

    @property
    def destination(self) -> str:
        return self.element[1]

    @property
    def grant(self) -> tuple[str | None, int | None]:
        return self.element[2], self.element[3]


def parse_element(item: dict[str, Any], verifying: bool = False) -> ListedElement:
    """One entry of Nft.list_set for an allow set; `verifying` for the verify-sni sets, whose keys
    have no protocol field (their grants are TCP, verified: policy.model.SNI)."""
    elem = item["elem"]
    values = elem["val"]["concat"]
    if verifying:
        proto: str | None = SNI
        port = int(values[2]) if len(values) > 2 else None
    else:
        proto = values[2] if len(values) > 2 else None
        port = int(values[3]) if len(values) > 3 else None
    timeout = int(elem.get("timeout", 0))
    return ListedElement(
        (values[0], values[1], proto, port),
        timeout,
        float(elem.get("expires", timeout)),
        elem.get("comment", ""),
    )


def allow_elements(nft: Nft, table: str) -> list[ListedElement]:
    """Every element of every allow set of `table` (raises NftError if the table or a set is missing)."""
    return [
        parse_element(item, name.startswith("sni_"))
        for name in ruleset.allow_set_names()
        for item in nft.list_set(table, name)
    ]
