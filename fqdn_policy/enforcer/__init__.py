"""The only code that speaks nftables.

Everything the agent asks of nf_tables goes through libnftables' JSON API (enforcer.nft: the table, its
chains, rules, counters and sets, policy changes, the restart adoption's listing), with two exceptions
made for cost, each a few small netlink messages written by hand on enforcer.netlink:

- the answers' allow-set element writes (elementwire encodes them, elementsocket sends them): a
  libnftables call rebuilds its cache and parses its input each time. Measured side by side
  (bench/nftwrite.py, docs/benchmarks.md): one element 0.24-0.26 ms through libnftables, 26-31 µs as
  a netlink batch; 64 elements 1.15 ms against 0.35-0.45 ms. Every answer waits for its write, so
  this is the hot path;
- reading one named counter (nftcounter): libnftables would fetch every set element first.

The element messages are those libnftables sends for the same JSON (tests/unit/test_elementwire.py
holds its bytes), so what either path writes lists the same (`nft list set`, enforcer.inventory).
"""
