"""fqdn_policy.enforcer.kernelprobe against model kernels: which features it asks for, what it says when one is
missing, and which refresh strategy it picks from what the kernel reads back."""

import errno
import json

import pytest

from fqdn_policy.enforcer import kernelfeatures as kf
from fqdn_policy.enforcer.elementwire import ElementRefused
from fqdn_policy.enforcer.kernelprobe import (
    KernelReport,
    KernelUnsupported,
    choose_refresh,
    probe_kernel,
    scratch_table,
)
from fqdn_policy.enforcer.nft import NftError
from fqdn_policy.enforcer.refresh import Refresh


class ModelKernel:
    """One scratch set's element and what the kernel does with a re-add; libnftables for the rest.

    `refused`: a word that makes any libnftables command containing it fail, as a missing module does."""

    def __init__(self, updates=True, replace_absent_fails=False, refused=None):
        self.updates = updates
        self.replace_absent_fails = replace_absent_fails
        self.refused = refused
        self.tables = set()
        self.expires = None  # the probe element's seconds left, None if absent
        self.writes = []

    # the Nft side
    def run(self, commands):
        text = json.dumps(commands)
        if self.refused and self.refused in text:
            raise NftError(f"Could not process rule: No such file or directory ({self.refused})")
        for command in commands:
            if "add" in command and "table" in command["add"]:
                self.tables.add(command["add"]["table"]["name"])
            if "delete" in command and "table" in command["delete"]:
                self.tables.discard(command["delete"]["table"]["name"])
                self.expires = None
        return []

    def table_exists(self, name):
        return name in self.tables

    def list_set(self, table, name):
        assert table in self.tables
        return [] if self.expires is None else [{"elem": {"val": {}, "timeout": 0, "expires": self.expires}}]

    # the element socket side
    def write(self, changes, refresh):
        (change,) = changes
        self.writes.append((refresh, [w.timeout for w in change.writes], len(change.deletes)))
        if change.deletes:
            if self.expires is None:
                raise ElementRefused(errno.ENOENT, None)
            self.expires = None
        for write in change.writes:
            if refresh is Refresh.REPLACE:
                if self.expires is None and self.replace_absent_fails:
                    raise ElementRefused(errno.ENOENT, None)
                self.expires = write.timeout - 0.2
            elif self.expires is None or self.updates:
                self.expires = write.timeout - 0.2


def test_a_kernel_that_updates_elements_in_place_is_refreshed_by_update():
    kernel = ModelKernel(updates=True)
    assert choose_refresh(kernel, kernel, "t_probe", "6.18") is Refresh.UPDATE
    assert kernel.writes == [(Refresh.UPDATE, [10], 0), (Refresh.UPDATE, [600], 0)]
    assert kernel.tables == set()  # the scratch table is gone


def test_a_kernel_that_ignores_a_re_add_is_refreshed_by_replace_tried_on_present_and_absent_elements():
    kernel = ModelKernel(updates=False)
    assert choose_refresh(kernel, kernel, "t_probe", "6.1.0") is Refresh.REPLACE
    assert kernel.writes == [
        (Refresh.UPDATE, [10], 0),
        (Refresh.UPDATE, [600], 0),  # ignored: still ~10 s left
        (Refresh.REPLACE, [600], 0),  # present
        (Refresh.UPDATE, [], 1),  # gone, as if the kernel expired it
        (Refresh.REPLACE, [600], 0),  # absent: must not fail
    ]
    assert kernel.tables == set()


def test_a_kernel_where_neither_works_refuses_the_start_and_says_why():
    kernel = ModelKernel(updates=False, replace_absent_fails=True)
    with pytest.raises(
        KernelUnsupported, match=r"kernel 6\.1\.0: writing a set element .*\(replace\) failed"
    ):
        choose_refresh(kernel, kernel, "t_probe", "6.1.0")
    assert kernel.tables == set()


def test_a_missing_feature_refuses_the_start_naming_the_feature_its_version_and_the_kernel_error():
    kernel = ModelKernel(refused="reject")
    with pytest.raises(KernelUnsupported) as raised:
        probe_kernel(kernel, kernel, "fqdn_policy", kf.Needs(), release="5.15.0-test")
    message = str(raised.value)
    assert message.startswith("kernel 5.15.0-test lacks what fqdn-policy needs (Linux 5.6 or later")
    assert (
        "reject with a TCP reset or ICMP administratively prohibited (Linux 3.14+, for the fast failure"
        in (message)
    )
    assert "No such file or directory (reject)" in message
    assert "NFLOG" not in message  # only what failed is named
    assert kernel.writes == []  # nothing is written to a kernel that cannot run the ruleset
    assert kernel.tables == set()


def test_every_missing_feature_is_named_not_only_the_first():
    kernel = ModelKernel(refused="interval")  # no pipapo (Linux < 5.6)
    with pytest.raises(KernelUnsupported, match=r"interval sets with concatenated keys \(Linux 5\.6\+"):
        probe_kernel(kernel, kernel, "t", kf.Needs(), release="5.4")


def test_a_kernel_with_everything_reports_its_release_and_strategy():
    kernel = ModelKernel(updates=False)
    report = probe_kernel(kernel, kernel, "t", kf.Needs(dns_redirect=True), release="6.1.0-57-cloud-amd64")
    assert (report.release, report.refresh) == ("6.1.0-57-cloud-amd64", Refresh.REPLACE)


@pytest.mark.parametrize(
    ("needs", "present", "absent"),
    [
        (kf.Needs(), {kf.REJECT, kf.NFLOG, kf.LIMIT_OVER, kf.META_MARK}, {kf.INET_NAT}),
        (kf.Needs(reject=False, guard_mark=False), set(), {kf.REJECT, kf.META_MARK}),
        (kf.Needs(nflog=False), set(), {kf.NFLOG, kf.LIMIT_OVER}),
        (kf.Needs(dns_redirect=True), {kf.INET_NAT}, set()),
    ],
)
def test_only_the_features_this_configuration_uses_are_required(needs, present, absent):
    features = set(kf.required_features(needs))
    always = {kf.BASE_CHAIN, kf.CONCAT_TIMEOUT, kf.ELEMENT_COMMENT, kf.CONCAT_INTERVAL, kf.CT_STATE}
    assert always | present <= features
    assert not features & absent


def test_the_stated_minimum_is_the_newest_required_feature():
    newest = max(kf.ALL_FEATURES, key=lambda f: tuple(int(p) for p in f.since.split(".")))
    assert newest.since == kf.MINIMUM_KERNEL


def test_each_probe_runs_in_the_scratch_table_only():
    for feature in kf.ALL_FEATURES:
        for command in feature.commands("x_probe"):
            (body,) = command.values()
            (thing,) = body.values()
            assert thing.get("table", thing.get("name")) == "x_probe", (feature.name, command)
    assert scratch_table("fqdn_policy") == "fqdn_policy_probe"


def test_no_interval_set_is_looked_up_with_a_protocol_field():
    """Linux 7.2 refuses a lookup of `meta l4proto` in an interval set (EOPNOTSUPP, seen in the VM lane);
    NetworkPolicy port ranges go in a set per protocol instead, and the probe looks its sets up."""
    from fqdn_policy.enforcer.ruleset import IPBLOCK_PROTOCOLS, base_ruleset

    commands = base_ruleset("t")
    interval = {
        c["add"]["set"]["name"]: c["add"]["set"]["type"]
        for c in commands
        if "set" in c.get("add", {}) and "interval" in c["add"]["set"].get("flags", [])
    }
    assert {f"ipblock_v4_{p}" for p in IPBLOCK_PROTOCOLS} <= interval.keys()
    assert all("inet_proto" not in key for key in interval.values()), interval
    probe = json.dumps(kf.CONCAT_INTERVAL.commands("x"))
    assert '"right": "@s"' in probe and "l4proto" not in probe


def test_element_refresh_auto_keeps_the_probe_replace_is_granted_and_update_is_refused_where_ignored():
    old, new = KernelReport("6.1.0", Refresh.REPLACE), KernelReport("6.12.0", Refresh.UPDATE)
    assert old.insisting_on("auto") == old and new.insisting_on("auto") == new
    assert new.insisting_on("replace") == KernelReport("6.12.0", Refresh.REPLACE)
    with pytest.raises(KernelUnsupported, match=r"--element-refresh update: kernel 6\.1\.0 ignores"):
        old.insisting_on("update")


OPENED = []  # the ModelQueues the last _queues() factory made


class ModelQueue:
    """An NFQUEUE socket whose bind does what `outcome` says: None binds, an exception is raised."""

    def __init__(self, queue, outcome=None):
        self.queue, self.outcome, self.closed = queue, outcome, False
        OPENED.append(self)

    def bind(self):
        if self.outcome is not None:
            raise self.outcome

    def close(self):
        self.closed = True


def _queues(outcome=None):
    OPENED.clear()
    return lambda queue: ModelQueue(queue, outcome)


def test_sni_verification_on_a_kernel_with_the_queue_statement_starts():
    kernel = ModelKernel(updates=False)
    report = probe_kernel(kernel, kernel, "t", kf.Needs(sni_queue=True), release="6.1.0", queues=_queues())
    assert report.refresh is Refresh.REPLACE
    (queue,) = OPENED  # the binding was tried, and let go again
    assert queue.closed
    assert kf.NFT_QUEUE in kf.required_features(kf.Needs(sni_queue=True))


def test_sni_verification_without_nft_queue_refuses_the_start_naming_the_feature_and_its_module():
    kernel = ModelKernel(refused='"queue"')  # CONFIG_NFT_QUEUE unset, as on the machine these tests run on
    with pytest.raises(KernelUnsupported) as raised:
        probe_kernel(kernel, kernel, "t", kf.Needs(sni_queue=True), release="6.18.44", queues=_queues())
    message = str(raised.value)
    assert "queue statement (nft_queue) (Linux 3.14+, for SNI/Host verification" in message
    assert "kernel option CONFIG_NFT_QUEUE, module nft_queue" in message
    assert "reject" not in message and "nfnetlink_queue" not in message  # only what failed is named
    assert kernel.writes == [] and kernel.tables == set()


def test_without_sni_verification_the_queue_statement_is_not_probed():
    kernel = ModelKernel(updates=False, refused='"queue"')

    def no_queue(queue):
        raise AssertionError("a queue was bound")

    probe_kernel(kernel, kernel, "t", kf.Needs(), release="6.18.44", queues=no_queue)
    assert kf.NFT_QUEUE not in kf.required_features(kf.Needs(dns_redirect=True))


def test_a_kernel_that_cannot_bind_a_queue_refuses_sni_verification_naming_nfnetlink_queue():
    kernel = ModelKernel(updates=False)
    missing = _queues(OSError(errno.EOPNOTSUPP, "Operation not supported"))
    with pytest.raises(KernelUnsupported) as raised:
        probe_kernel(kernel, kernel, "t", kf.Needs(sni_queue=True), release="6.1.0", queues=missing)
    message = str(raised.value)
    assert "binding an NFQUEUE queue (nfnetlink_queue)" in message
    assert "CONFIG_NETFILTER_NETLINK_QUEUE, module nfnetlink_queue" in message
    assert "Operation not supported" in message
    assert OPENED[0].closed


def test_a_queue_another_socket_holds_shows_that_queues_can_be_bound():
    from fqdn_policy.enforcer.kernelprobe import queue_binding
    from fqdn_policy.enforcer.nfqueuesocket import QueueBusy

    assert queue_binding(_queues(QueueBusy(errno.EBUSY, "bound by another socket"))) == []
    assert OPENED[0].closed
