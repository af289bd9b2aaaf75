"""Formats changed nodes' /metrics text in a child process (collector.child).

Formatting one node's text is ~0.4 ms of Python for an 8-GPU node: after judging, the
largest share of the collector's GIL at 10,000 nodes. Here the child gets the changed
nodes' entries (their report bytes and the few facts the text shows, a few KB each),
formats them with the very function the parent would (collector.exposition.encode_node)
and sends the text back; the parent keeps it, and joins and compresses it on a scrape
as before. Without an answer the parent formats the batch itself: a scrape always has
its text.
"""

from __future__ import annotations

from collector.child import ChildProcess, serve
from collector.exposition import Encoded, EncoderBatch, encode_node
from collector.isolation import FaultLog

__all__ = ["EncoderProcess"]

# A batch (exposition.ENCODER_BATCH_NODES nodes, ~0.1 s of formatting) not answered
# within this means a stuck child.
ANSWER_SECONDS = 10.0
# The child's CPU priority below the collector's (nice, added): none, unlike the
# judging child's. A scrape waits for this child; behind ingest, a saturated collector
# starved it (a 42 s scrape at 10,000 nodes, measured).
ENCODER_NICENESS = 0


class EncoderProcess:
    """exposition.Encoder over one child process."""

    def __init__(self) -> None:
        self.child = ChildProcess("collector.encoder", "metrics encoder")

    def start(self) -> None:
        self.child.start()

    def encode(self, nodes: EncoderBatch) -> list[Encoded] | None:
        """The nodes' text, formatted by the child; None when it could not."""
        batch = list(nodes)
        answer = self.child.call(
            batch, ANSWER_SECONDS, lambda a: isinstance(a, list) and len(a) == len(batch)
        )
        return answer if isinstance(answer, list) else None

    def close(self) -> None:
        self.child.close()


def _serve() -> None:
    faults = FaultLog()  # logs what it catches here; the parent counts the faults

    def handle(message: object) -> list[Encoded]:
        batch: EncoderBatch = message  # type: ignore[assignment]
        return [encode_node(*item, faults) for item in batch]

    serve("metrics encoder", handle, ENCODER_NICENESS)


if __name__ == "__main__":
    _serve()
