"""Prometheus exposition: text rendered from one immutable Published, cached per node.

Every series is derived by its concern (collector.concerns; `node_samples` and
`cluster_samples` here only iterate the registry) and written two ways that must agree
byte for byte (a test checks it):

- `SnapshotCollector`, a prometheus_client custom collector over the view, for anyone
  who wants the series in a registry;
- `Exposition.render_gzip`, what /metrics serves: it writes the text itself and keeps
  each node's lines (NodeText: most of them deflated, family by family) until that
  node's entry changes; formatting may run in a child process (collector.encoder).
  NodeEntry reports are immutable and replaced on every accepted report, so the cache
  key is the entry's report bytes object (plus receipt time, staleness and the node's
  allocatable GPUs, which live outside the report); only a changed node's report is
  decoded. A scrape then copies cached compressed bytes into one gzip member
  (collector.compression.GzipBody) plus the few cluster-wide families, instead of
  formatting every series again while holding the GIL (which gRPC's handlers need too).

Families keep prometheus_client's order and layout: HELP and TYPE once per family,
every family contiguous, labels sorted by name, values formatted like Go.
"""

from __future__ import annotations

import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import chain
from operator import and_, itemgetter, or_
from typing import Protocol, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collector.compression import GzipBody, combined_crc, deflate_fragment
from collector.concerns import CONCERNS, FAMILIES, Family, Sample
from collector.concerns.egress import node_cert_expiries
from collector.concerns.judging import unusable_samples
from collector.isolation import FaultLog
from collector.published import Published
from collector.state import NodeEntry

__all__ = [
    "FAMILIES",
    "Encoded",
    "Encoder",
    "EncoderBatch",
    "Exposition",
    "Family",
    "NodeText",
    "Sample",
    "SnapshotCollector",
    "cluster_samples",
    "encode_node",
    "guarded_node_samples",
    "node_samples",
    "render",
    "render_with_client",
]

# The families, in exposition order, come from the concern registry; each concern's
# module owns its constants (collector.concerns.<name>), named, never positions.
_NODE_FAMILIES = tuple(f for f in FAMILIES if f.per_node)
# Position of each per-node family among them: its slot in a node's NodeText.
_NODE_SLOT = {f: slot for slot, f in enumerate(_NODE_FAMILIES)}
# Every slot's bit set (NodeText.plain).
_ALL_PLAIN = (1 << len(_NODE_FAMILIES)) - 1
_NODE_SAMPLES = tuple(c.node_samples for c in CONCERNS if c.node_samples is not None)
_CLUSTER_SAMPLES = tuple(c.cluster_samples for c in CONCERNS if c.cluster_samples is not None)


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None = None
) -> Iterator[Sample]:
    """Every per-node series of `node`, in exposition order within each family.

    `expected_plan` is the plan version the collector gives the node (None: not known).
    """
    # chain, not `yield from` per concern: the hop from concern to caller stays in C.
    return chain.from_iterable(
        samples(node, allocatable_gpus, expected_plan) for samples in _NODE_SAMPLES
    )


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    """The cluster-wide series; `expiries` are node_cert_expiries of every node."""
    for samples in _CLUSTER_SAMPLES:
        yield from samples(view, expiries)


def guarded_node_samples(
    view: Published, node: NodeEntry, allocatable_gpus: int | None
) -> tuple[list[Sample], dict[str, float]]:
    """(samples, certificate expiries) of one node, or its unusable samples when that raises."""
    samples, expiries, _ = _samples_or_unusable(
        node,
        allocatable_gpus,
        view.plans.version_for(node.name),
        node.name in view.unusable_names,
        view.faults,
    )
    return samples, expiries


def _samples_or_unusable(
    node: NodeEntry, allocatable_gpus: int | None, plan: str | None, marked: bool, faults: FaultLog
) -> tuple[list[Sample], dict[str, float], int]:
    """guarded_node_samples without a view, and 1 when the node's data raised (counted)."""
    if marked:
        return unusable_samples(node), {}, 0
    faulted = 0

    def unusable(_reason: str) -> tuple[list[Sample], dict[str, float]]:
        nonlocal faulted
        faulted = 1
        return unusable_samples(node), {}

    samples, expiries = faults.guard(
        "metrics",
        node.name,
        lambda: (list(node_samples(node, allocatable_gpus, plan)), node_cert_expiries(node)),
        unusable,
    )
    return samples, expiries, faulted


# ---------------------------------------------------------------- text writer


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# prometheus_client's own float formatting (Go style), typed for mypy.
_go_float: Callable[[float], str] = floatToGoString

# Formatting is most of a node's render: the same label values (node names, targets,
# paths) and values (counts, sizes, durations) come back in every report, so their
# text is kept. Bounded: emptied when full (timestamps are mostly unique).
_MEMO_MAX = 1 << 14
_escaped: dict[str, str] = {}
_formatted: dict[float, str] = {}


def _escape_memo(value: str) -> str:
    text = _escaped.get(value)
    if text is None:
        text = _escape(value)
        if len(_escaped) >= _MEMO_MAX:
            _escaped.clear()
        _escaped[value] = text
    return text


def _value(v: float) -> str:
    if v == 1.0:
        return "1.0"
    text = _formatted.get(v)
    if text is None:
        text = _go_float(v)
        # Not zero (0.0 and -0.0 are one key but two texts) nor NaN (never found again).
        if v != 0.0 and v == v:
            if len(_formatted) >= _MEMO_MAX:
                _formatted.clear()
            _formatted[v] = text
    return text


def _line(family: Family, values: tuple[str, ...], value: float) -> str:
    # One %-format per line (the label names are in it): formatting ~100 lines is most of
    # a node's text, and this is about twice as fast as joining pieces per label.
    order = family.label_order
    fmt = family.line_format
    if len(order) == 1:
        return fmt % (_escape_memo(values[order[0]]), _value(value))
    if len(order) == 2:
        a, b = order
        return fmt % (_escape_memo(values[a]), _escape_memo(values[b]), _value(value))
    return fmt % (*[_escape_memo(values[i]) for i in order], _value(value))


# A node's text of one family up to this size is kept as it is and compressed at a
# scrape with every other node's (a family of one or a few series per node: ~100-250
# bytes, which deflate would barely shrink on their own); longer, it is kept deflated.
PLAIN_MAX_BYTES = 256


# slots: one of each per node (a per-instance dict would cost more than the fields).
@dataclass(frozen=True, slots=True)
class NodeText:
    """One node's per-node families as /metrics keeps them between scrapes.

    Per family (its _NODE_SLOT): the node's lines as they are when short, compressed at
    a scrape together with every other node's; else deflated on their own
    (compression.deflate_fragment), copied into the body as they are, with their text's
    CRC-32 and size. Uncompressed, the cache was most of what the collector held per
    node (~12 KB for an 8-GPU node; this is ~3 KB).
    """

    parts: tuple[bytes, ...]  # per slot: the lines, or their deflate fragment
    plain: int  # bit `slot` set when parts[slot] is the lines themselves
    sums: array[int]  # per slot the text's CRC-32 and size (0, 0 when plain)

    def __reduce__(self) -> tuple[type[NodeText], tuple[object, ...]]:
        # By position: the encoder child sends one per changed node, and the slots
        # dataclass default reads dataclasses.fields() per instance.
        return (NodeText, (self.parts, self.plain, self.sums))


@dataclass(frozen=True, slots=True)
class _NodeText:
    """One node's rendered text and what it was rendered from."""

    raw: bytes  # the entry's report bytes, compared by identity
    received_at: float
    up: bool
    allocatable_gpus: int | None
    expected_plan: str | None
    text: NodeText
    expiries: dict[str, float]
    marked: bool  # marked unusable by the rules

    def matches(
        self, node: NodeEntry, allocatable_gpus: int | None, plan: str | None, marked: bool
    ) -> bool:
        return (
            self.raw is node.raw
            and self.received_at == node.received_at
            and self.up == node.up
            and self.allocatable_gpus == allocatable_gpus
            and self.expected_plan == plan
            and self.marked == marked
        )


# One node's formatted text, its certificate expiries, and how many faults formatting
# it hit (its data could not be rendered and it shows as unusable). What
# collector.encoder's child sends back.
Encoded = tuple[NodeText, dict[str, float], int]
# What an encoder formats: (entry, allocatable GPUs, expected plan, marked unusable) each.
EncoderBatch = Sequence[tuple[NodeEntry, int | None, str | None, bool]]


def _node_text(samples: list[Sample]) -> NodeText:
    lines: list[list[str]] = [[] for _ in _NODE_FAMILIES]
    for family, values, value in samples:
        lines[_NODE_SLOT[family]].append(_line(family, values, value))
    parts = []
    plain = 0
    sums = array("I")
    for slot, text in enumerate(map(_joined, lines)):
        if len(text) <= PLAIN_MAX_BYTES:
            parts.append(text)
            plain |= 1 << slot
            sums.extend((0, 0))
        else:
            parts.append(deflate_fragment(text))
            sums.extend((zlib.crc32(text), len(text)))
    return NodeText(tuple(parts), plain, sums)


def _joined(lines: list[str]) -> bytes:
    return "".join(lines).encode() if lines else b""


def encode_node(
    node: NodeEntry,
    allocatable_gpus: int | None,
    plan: str | None,
    marked: bool,
    faults: FaultLog,
) -> Encoded:
    """Formats one node's per-node families; a fault is recorded in `faults` and counted.

    Depends only on its arguments (no view): the encoder process runs it on entries
    sent over a pipe, and the parent formats the same bytes with it when the child is
    not there.
    """
    samples, expiries, faulted = _samples_or_unusable(node, allocatable_gpus, plan, marked, faults)

    def unusable_text(_reason: str) -> NodeText:
        nonlocal faulted
        faulted += 1
        return _node_text(unusable_samples(node))

    # Formatting can raise too (it is where a bad value would show): same fallback.
    text = faults.guard("metrics", node.name, lambda: _node_text(samples), unusable_text)
    return text, expiries, faulted


# Equal certificate expiry maps, kept once: every node of a cluster sees the same
# certificates, so 10,000 nodes hold a handful of maps. Bounded: emptied when full.
_EXPIRY_MAPS: dict[tuple[tuple[str, float], ...], dict[str, float]] = {}


def _shared_expiries(expiries: dict[str, float]) -> dict[str, float]:
    key = tuple(sorted(expiries.items()))
    shared = _EXPIRY_MAPS.get(key)
    if shared is None:
        if len(_EXPIRY_MAPS) >= _MEMO_MAX:
            _EXPIRY_MAPS.clear()
        shared = _EXPIRY_MAPS[key] = expiries
    return shared


# A scrape sums the fragments' CRC-32s of a family in runs of this many nodes, and
# keeps each run's sum for the next scrape (Exposition._runs).
RUN_NODES = 256
# (slot, first node's position) -> (the run's fragments, their texts' CRC-32 and size).
# Equal fragments are equal texts (inflating is deterministic): a kept sum is never wrong.
_Runs = dict[tuple[int, int], tuple[tuple[bytes, ...], int, int]]


# Background pre-encoding (Exposition.prepare) renders this many changed nodes in
# process, then pauses: gRPC's handler threads get the GIL between slices instead of
# waiting behind a render of thousands of nodes.
PREPARE_SLICE_NODES = 32
PREPARE_PAUSE_SECONDS = 0.002
# Changed nodes sent to an encoder in one message: ~0.1 s of its formatting, ~1 MB of
# report bytes, so that a scrape waiting on a batch never waits long.
ENCODER_BATCH_NODES = 256


class Encoder(Protocol):
    """Formats many nodes at once (collector.encoder.EncoderProcess: in a child process).

    Returns None when it cannot (the child is gone or stuck): the caller formats them
    itself. Faults it found are counted in its own process; the caller adds them up.
    """

    def encode(self, nodes: EncoderBatch) -> list[Encoded] | None: ...


class Exposition:
    """Renders /metrics, reusing each node's text until that node's entry changes.

    One instance per collector. Safe to call from several worker threads at once:
    the cache is replaced as a whole, never mutated in place, and it keeps only the
    nodes of the latest view, so nodes that left take their series and memory along.
    `prepare` fills the cache ahead of a scrape (the service calls it about once a
    second while someone scrapes), so that a scrape is mostly a copy of cached bytes.
    """

    def __init__(self, encoder: Encoder | None = None) -> None:
        self._nodes: dict[str, _NodeText] = {}
        # The last scrape's runs of fragments: a run whose fragments are equal at the
        # next scrape (families such as GPU info rarely change) is not summed again.
        self._runs: _Runs = {}
        self.runs_kept = 0  # runs whose sum a scrape took from the last one
        self._lock = threading.Lock()
        # Formats changed nodes elsewhere (another process) when given; else in process.
        self.encoder = encoder
        self.hits = 0
        self.misses = 0

    def _refresh(self, view: Published, pause: Callable[[], None] | None = None) -> list[_NodeText]:
        """Every node's text for `view`, rendering only what changed; `pause` is called
        after every PREPARE_SLICE_NODES nodes rendered in process (background pre-encoding)."""
        allocatable = dict(view.allocatable_gpus)
        previous = self._nodes
        marked = view.unusable_names
        version_for = view.plans.version_for
        current: dict[str, _NodeText | None] = {}
        changed: list[tuple[NodeEntry, int | None, str | None, bool]] = []
        for node in view.state.nodes:
            name = node.name
            gpus = allocatable.get(name)
            plan = version_for(name)
            text = previous.get(name)
            is_marked = name in marked
            if text is None or not text.matches(node, gpus, plan, is_marked):
                changed.append((node, gpus, plan, is_marked))
                text = None
            current[name] = text
        for start in range(0, len(changed), ENCODER_BATCH_NODES):
            batch = changed[start : start + ENCODER_BATCH_NODES]
            encoded = self.encoder.encode(batch) if self.encoder is not None else None
            if encoded is None:
                encoded = self._encode_here(view, batch, pause)
            else:
                view.faults.add("metrics", sum(faulted for *_, faulted in encoded))
            for (entry, its_gpus, its_plan, its_mark), (packed, expiries, _) in zip(
                batch, encoded, strict=True
            ):
                current[entry.name] = _NodeText(
                    raw=entry.raw,
                    received_at=entry.received_at,
                    up=entry.up,
                    allocatable_gpus=its_gpus,
                    expected_plan=its_plan,
                    text=packed,
                    expiries=_shared_expiries(expiries),
                    marked=its_mark,
                )
        texts = cast(dict[str, _NodeText], current)
        with self._lock:
            self._nodes = texts
            self.hits += len(texts) - len(changed)
            self.misses += len(changed)
        return list(texts.values())

    @staticmethod
    def _encode_here(
        view: Published,
        batch: EncoderBatch,
        pause: Callable[[], None] | None,
    ) -> list[Encoded]:
        out = []
        for done, (node, gpus, plan, is_marked) in enumerate(batch, 1):
            out.append(encode_node(node, gpus, plan, is_marked, view.faults))
            if pause is not None and done % PREPARE_SLICE_NODES == 0:
                pause()
        return out

    def prepare(self, view: Published) -> None:
        """Renders the nodes whose entries changed since their text was cached, in slices.

        CPU-bound: call it from a worker thread. The next render of a view with the
        same entries then formats nothing per node.
        """
        self._refresh(view, pause=lambda: time.sleep(PREPARE_PAUSE_SECONDS))

    def render_gzip(self, view: Published) -> tuple[bytes, int]:
        """(the exposition of `view` as one gzip member, its size uncompressed).

        Per family in order: where every node's part is plain (and for the cluster-wide
        families), the text joined and compressed on the compression threads; where
        every node's is a fragment, the fragments copied as they were cached, their
        CRC-32s combined (per run of RUN_NODES, kept from the last scrape while equal);
        a family mixing both (a node with more series than the others) is made the kind
        most of its nodes have (_mixed_column), the only place where cached text is
        inflated or compressed again. The text is never held whole.
        """
        cached = self._refresh(view)
        texts = [c.text for c in cached]
        cluster: dict[Family, list[str]] = {f: [] for f in FAMILIES if not f.per_node}
        # Each distinct expiry map once (they are shared, _shared_expiries): the earliest
        # expiry per target is the same over 10 maps as over 10,000 references to them.
        distinct = {id(c.expiries): c.expiries for c in cached}.values()
        for family, values, value in cluster_samples(view, distinct):
            cluster[family].append(_line(family, values, value))
        # Slots plain at every node, and at some node.
        every = reduce(and_, (t.plain for t in texts), _ALL_PLAIN)
        some = reduce(or_, (t.plain for t in texts), 0)
        # One column per family: map(itemgetter) picks a slot from every node in C.
        parts = [t.parts for t in texts]
        sums = [t.sums for t in texts]
        previous: _Runs = self._runs
        runs: _Runs = {}
        body = GzipBody()
        for fam in FAMILIES:
            body.text(fam.header)
            if not fam.per_node:
                body.text("".join(cluster[fam]).encode())
                continue
            slot = _NODE_SLOT[fam]
            bit = 1 << slot
            if every & bit:
                body.text(b"".join(map(itemgetter(slot), parts)))
            elif not some & bit:
                self._fragment_column(body, slot, parts, sums, previous, runs)
            else:
                _mixed_column(body, texts, slot)
        self._runs = runs
        return body.finish(), body.size

    def _fragment_column(
        self,
        body: GzipBody,
        slot: int,
        parts: list[tuple[bytes, ...]],
        sums: list[array[int]],
        previous: _Runs,
        runs: _Runs,
    ) -> None:
        """A family deflated at every node, in runs of RUN_NODES nodes; a run equal to
        the last scrape's (compared in C) keeps its CRC-32 instead of summing it again."""
        fragments = tuple(map(itemgetter(slot), parts))
        for start in range(0, len(fragments), RUN_NODES):
            run = fragments[start : start + RUN_NODES]
            kept = previous.get((slot, start))
            if kept is not None and kept[0] == run:
                crc, size = kept[1], kept[2]
                self.runs_kept += 1
            else:
                chosen = sums[start : start + RUN_NODES]
                crc, size = combined_crc(
                    list(map(itemgetter(2 * slot), chosen)),
                    list(map(itemgetter(2 * slot + 1), chosen)),
                )
            runs[slot, start] = (run, crc, size)
            body.run_of_fragments(run, crc, size)

    def render(self, view: Published) -> bytes:
        """The text exposition of `view`; CPU-bound, call it from a worker thread."""
        return zlib.decompress(self.render_gzip(view)[0], wbits=31)


def _mixed_column(body: GzipBody, texts: list[NodeText], slot: int) -> None:
    """A family whose part is plain at some nodes and deflated at others, made all one
    kind, the kind most nodes have: the few others inflated, or deflated, here."""
    bit = 1 << slot
    plain = [bool(t.plain & bit) for t in texts]
    if 2 * sum(plain) >= len(texts):
        body.text(
            b"".join(
                t.parts[slot] if is_plain else zlib.decompressobj(-15).decompress(t.parts[slot])
                for t, is_plain in zip(texts, plain, strict=True)
            )
        )
        return
    fragments, crcs, sizes = [], [], []
    for t, is_plain in zip(texts, plain, strict=True):
        part = t.parts[slot]
        if is_plain:
            fragments.append(deflate_fragment(part))
            crcs.append(zlib.crc32(part))
            sizes.append(len(part))
        else:
            fragments.append(part)
            crcs.append(t.sums[2 * slot])
            sizes.append(t.sums[2 * slot + 1])
    body.fragments(fragments, crcs, sizes)


_default = Exposition()


def render(view: Published) -> bytes:
    """The text exposition of `view`, through a process-wide node cache.

    Kept for callers that hold no Exposition of their own; a collector should own one
    (several collectors in one process would otherwise evict each other's nodes).
    """
    return _default.render(view)


# ---------------------------------------------------------------- prometheus_client


class SnapshotCollector(Collector):
    """The same series as a prometheus_client collector (e.g. to add to a registry)."""

    def __init__(self, data: Published) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        allocatable = dict(self.data.allocatable_gpus)
        nodes = self.data.state.nodes
        families: dict[Family, GaugeMetricFamily | CounterMetricFamily] = {}
        for f in FAMILIES:
            if f.type == "counter":
                base = f.name.removesuffix("_total")
                families[f] = CounterMetricFamily(base, f.help, labels=list(f.labels))
            else:
                families[f] = GaugeMetricFamily(f.name, f.help, labels=list(f.labels))
        per_node = [guarded_node_samples(self.data, n, allocatable.get(n.name)) for n in nodes]
        samples: list[Iterable[Sample]] = [cluster_samples(self.data, [e for _, e in per_node])]
        samples.extend(s for s, _ in per_node)
        for source in samples:
            for family, values, value in source:
                families[family].add_metric(list(values), value)
        yield from families.values()


def render_with_client(data: Published) -> bytes:
    """SnapshotCollector through prometheus_client's generate_latest (the reference)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(data))
    return generate_latest(registry)
