"""The gRPC side of the collector: the Report servicer and the standard health service.

Report runs on the synchronous gRPC server, its handler on a small pool of threads
(GRPC_THREADS), not on the asyncio event loop: an empty grpc.aio handler alone cost
~400 us of server CPU per call against ~175 us here (docs/performance.md, "The floor
under ingest"), and no Report waits behind the HTTP API, the Kubernetes watcher or the
judging's await points. What the handler touches is thread-safe: ClusterState and the
rate limiter hold a lock, the plans and the known-nodes cache are immutable values
swapped whole, and authentication answers from its cache on the thread (only a token
not yet reviewed waits on the event loop, bounded).

Report is registered with a raw-bytes handler so that a malformed or oversized
message is rejected with a reason and counted, instead of dying inside gRPC's
deserializer where nobody sees it. It is registered as request-streaming (the wire
is the same for a unary client): a message beyond gRPC's own ceiling then still
reaches the handler, as a call without any message, and is counted too. Only the
first message of a call is read. A call holds its thread while it waits for that
message: MessageWatch cancels one that has not sent it within MESSAGE_WAIT_SECONDS.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.auth import ANY_NODE, Authenticator, AuthFailure, Identity, NoAuth
from collector.ratelimit import RateLimiter
from collector.state import ClusterState, Rejected
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = "preflight.v1.Collector"
# gRPC's own ceiling sits above the configured limit so oversize reports reach
# our handler, get a reason and are counted; beyond it gRPC refuses by itself.
GRPC_CEILING_FACTOR = 4
LOG_EVERY_SECONDS = 10.0
# Handler threads. Python code holds one GIL, so more threads add switching, not
# throughput (measured 2 … 64: docs/performance.md, "Report on a synchronous gRPC
# server"); but a call holds its thread while it waits for its message or for a
# TokenReview, so a few slow callers must not take every thread.
GRPC_THREADS = 8
# A call whose message has not arrived this long after it reached a handler thread is
# cancelled and counted `malformed` (the HTTP side closes a connection that has not sent
# its headers after as long: collector/web.py HEADER_TIMEOUT_SECONDS).
MESSAGE_WAIT_SECONDS = 10.0
# Calls in progress or queued for a thread; beyond it gRPC answers RESOURCE_EXHAUSTED at
# once ("Concurrent RPC limit exceeded", before any handler: not counted here; the agent
# backs off and retries) instead of queueing without bound. About a second of reports at
# what this VM accepts (~800-1,000/s): 256 refused hundreds of reports a second in
# bench_ingest at 5,000 nodes while the collector was starved for CPU.
MAX_CONCURRENT_RPCS = 1024
# A report whose token is not in the cache waits at most the TokenReview's own timeout
# plus this for the event loop to answer; then UNAVAILABLE, as an unanswered review.
AUTH_WAIT_MARGIN_SECONDS = 1.0
# How long stop() waits past its grace for gRPC to say it has stopped.
STOP_WAIT_SECONDS = 5.0

# The answer to each refusal: a retry cannot help INVALID_ARGUMENT; the others may
# succeed later (a rotated token, a slower pace), so the agent backs off and retries.
STATUS_OF_REASON = {
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "identity_mismatch": grpc.StatusCode.PERMISSION_DENIED,
    "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# Names of the Kubernetes nodes when the API is readable, else None (standalone).
KnownNodes = Callable[[], Collection[str] | None]

# ReportAck's field 1 (collector_time, a length-delimited message): its key byte.
_COLLECTOR_TIME_KEY = b"\x0a"
# Plans whose ack tail is kept; more only after profile reloads (each makes two plans).
_ACK_TAILS_KEPT = 16


class AckEncoder:
    """The ReportAck of one call as bytes, assembled instead of built and serialized.

    What every node with the same plan is answered (the heartbeat interval and the plan,
    ~450 bytes) is serialized once per plan; per call only the collector's clock is
    encoded and put in front, where protobuf's own serialization puts field 1. Building
    the message (copying the plan into it, GetCurrentTime through a datetime) and
    serializing it cost ~5 us a call; this ~1.5 us. The plans are immutable values
    swapped whole (collector.plan.PlanBook), so one is recognised by identity.
    """

    def __init__(self, heartbeat_interval: float) -> None:
        self.heartbeat_interval = heartbeat_interval
        # id(plan) -> (the plan, kept so that its id is not reused; the serialized tail).
        self._tails: dict[int, tuple[pb.ProbePlan | None, bytes]] = {}

    def encode(self, plan: pb.ProbePlan | None, now_ns: int) -> bytes:
        held = self._tails.get(id(plan))
        if held is None or held[0] is not plan:
            tail = pb.ReportAck(heartbeat_interval_seconds=self.heartbeat_interval)
            if plan is not None:
                tail.plan.CopyFrom(plan)
            if len(self._tails) >= _ACK_TAILS_KEPT:
                self._tails.clear()  # handler threads race here harmlessly: both encode
            held = self._tails[id(plan)] = (plan, tail.SerializeToString())
        seconds, nanos = divmod(now_ns, 1_000_000_000)
        clock = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
        # A Timestamp is at most 22 bytes: its length is one byte of varint.
        return _COLLECTOR_TIME_KEY + bytes((len(clock),)) + clock + held[1]


class MessageWatch:
    """Cancels the calls that have waited longer than `limit` for their message.

    One thread for all calls, waking every `limit / 10`: a call costs a dict entry
    while it waits, not a timer thread of its own. No lock: every call does one store
    and one pop, each a single dict operation and atomic under the GIL (as `next` on the
    key counter is), and whichever of `done` and the watch pops a call's entry first
    decides its fate. The watch reads a copy (one C-level step) of the calls, never the
    dict that handler threads change while it looks.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._calls: dict[int, tuple[float, grpc.ServicerContext]] = {}
        self._keys = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, context: grpc.ServicerContext) -> int:
        key = next(self._keys)
        self._calls[key] = (time.monotonic() + self.limit, context)
        return key

    def done(self, key: int) -> bool:
        """Stops watching; False when the watch had already cancelled the call."""
        return self._calls.pop(key, None) is not None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="grpc-message-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.limit / 10):
            now = time.monotonic()
            late = [k for k, (until, _) in self._calls.copy().items() if until <= now]
            for key in late:
                held = self._calls.pop(key, None)
                if held is not None:  # else its message came first: `done` took it
                    held[1].cancel()  # the handler's read ends with RpcError


class ReportServicer:
    def __init__(
        self,
        state: ClusterState,
        heartbeat_interval: float,
        plan_for: Callable[[str], pb.ProbePlan] | None = None,
        authenticator: Authenticator | None = None,
        known_nodes: KnownNodes = lambda: None,
        auth_timeout: float = 5.0,
    ) -> None:
        self.state = state
        self.heartbeat_interval = heartbeat_interval
        # The node's probe plan, sent in every ack (collector.plan.PlanBook.for_node).
        self.plan_for = plan_for
        self.authenticator: Authenticator = authenticator or NoAuth()
        # How long a handler thread waits for an uncached authentication on the loop.
        self.auth_wait = auth_timeout + AUTH_WAIT_MARGIN_SECONDS
        limits = state.limits
        self.rate_limiter = RateLimiter(limits.min_report_interval, limits.report_burst)
        self.known_nodes = known_nodes
        # The event loop that runs the async authentication (set by start_grpc_server).
        self.loop: asyncio.AbstractEventLoop | None = None
        self._logged: dict[str, float] = {}
        self._log_lock = threading.Lock()
        # Cancels calls that hold a handler thread without sending a message.
        self.watch = MessageWatch(MESSAGE_WAIT_SECONDS)
        self.acks = AckEncoder(heartbeat_interval)

    def report_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        # Only the first message is read: a unary client sends exactly one, and waiting
        # for the end of the stream as well cost ~20 % more per call (docs/performance.md,
        # "Report on a synchronous gRPC server"). A stream never gets buffered.
        first: list[bytes] = []
        cancelled = False
        watched = self.watch.watch(context)
        try:
            first.extend(itertools.islice(requests, 1))
        except grpc.RpcError:
            # The call ended before a message came: gRPC cancels a call whose message is
            # over its ceiling (whether the handler sees that as no message or as this
            # depends on timing), a client that gives up ends it the same way, and so
            # does the watch below.
            cancelled = True
        timed_out = not self.watch.done(watched)
        if first:
            # Handed over, not kept here: gRPC keeps an aborted call's frames in a
            # reference cycle, and this frame must not hold the bytes of a refused report.
            return self.report(first.pop(), context)
        if timed_out:
            # A call that holds a handler thread without sending its report (a stalled
            # or hostile client) was cancelled by the watch: counted, like other junk.
            reason, detail = "malformed", f"no message within {self.watch.limit:g}s"
        elif cancelled and context.time_remaining() <= 0:
            # Its deadline passed while it waited for a thread: a timeout, not a report.
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the report")
            raise AssertionError("unreachable: abort raises")
        else:
            # gRPC drops a message over its ceiling before we see it: the call arrives empty.
            reason = "message_too_large"
            detail = "no message: larger than gRPC's receive ceiling, or none sent"
        self._refuse(reason, detail)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{reason}: {detail}")
        raise AssertionError("unreachable: abort raises")

    def report(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """The serialized ReportAck for one report's bytes, or aborts the call."""
        identity: Identity | None = None
        failure: tuple[grpc.StatusCode, str, str | None] | None = None
        try:
            # Who is asking comes first: nothing of an unauthenticated report is read.
            identity = self._authenticate(context.invocation_metadata())
        except AuthFailure as error:
            failure = (error.code, error.detail, error.reason)
        if failure is not None or identity is None:
            del raw  # not kept alive by the abort's traceback (see _store)
            code, detail, reason = failure or (grpc.StatusCode.UNAUTHENTICATED, "no identity", None)
            if reason is not None:
                self.state.count_rejection(reason)
            # The peer is what an operator traces a forged or misconfigured agent by.
            self._log_throttled(
                "refused", reason or "unauthenticated", f"{detail} (peer {context.peer()})"
            )
            context.abort(code, detail)
            raise AssertionError("unreachable: abort raises")
        node, refusal = self._store(raw, time.time(), identity)
        del raw  # a refused 4 MiB report must not live on in the abort's traceback
        if refusal is not None:
            reason, detail = refusal
            self._refuse(reason, detail)
            code = STATUS_OF_REASON.get(reason, grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(code, f"{reason}: {detail}")
        plan = self.plan_for(node) if self.plan_for is not None else None
        return self.acks.encode(plan, time.time_ns())

    def _authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        """Identity of the caller, on the handler thread; raises AuthFailure.

        The cached answer first (no event loop); else the async authentication on the
        loop, waited for at most `auth_wait`: the TokenReview and its coalescing of one
        token's concurrent reviews live there.
        """
        identity = self.authenticator.authenticate_cached(metadata)
        if identity is not None:
            return identity
        loop = self.loop
        if loop is None or loop.is_closed():
            raise AuthFailure(grpc.StatusCode.UNAVAILABLE, None, "collector is shutting down")
        waiting = asyncio.run_coroutine_threadsafe(self.authenticator.authenticate(metadata), loop)
        try:
            return waiting.result(self.auth_wait)
        except TimeoutError:
            waiting.cancel()
            raise AuthFailure(
                grpc.StatusCode.UNAVAILABLE,
                None,
                f"authentication did not finish within {self.auth_wait:g}s",
            ) from None
        except futures.CancelledError:
            # The loop stopped (shutdown) with the review pending.
            raise AuthFailure(
                grpc.StatusCode.UNAVAILABLE, None, "collector is shutting down"
            ) from None

    def _store(
        self, raw: bytes, now: float, identity: Identity
    ) -> tuple[str, tuple[str, str] | None]:
        """Parses, validates and stores one report: (node name, None), or (_, (reason, detail)).

        Returns plain strings rather than raising past this frame: an exception kept
        alive (logged, chained, in a traceback cycle) would keep the report and its bytes
        with it until a garbage collection, which a flood of big reports outruns.
        """
        try:
            if len(raw) > self.state.limits.max_message_bytes:
                raise Rejected(
                    "message_too_large",
                    f"{len(raw)} bytes, limit {self.state.limits.max_message_bytes}",
                )
            try:
                report = pb.NodeReport.FromString(raw)
            except DecodeError as error:
                raise Rejected("malformed", f"not a NodeReport: {error}") from None
            if not identity.may_report(report.node_name):
                raise Rejected(
                    "identity_mismatch",
                    f"{identity.principal} runs on {identity.node}, not on the node it names",
                )
            if not self.rate_limiter.allow(report.node_name, now):
                raise Rejected("rate_limited", "reports arrive faster than the limit allows")
            try:
                # An identity bound to a node (auth.mode kubernetes: the pod's spec.nodeName,
                # read from the API) names a Kubernetes node already, even one the node
                # list has not caught up with; only unbound callers are checked against it.
                known = None if identity.node != ANY_NODE else self.known_nodes()
                self.state.accept(report, now, known, size=len(raw), raw=raw)
            except Rejected:
                raise
            except Exception as error:
                # A bug of ours on this input: the report is refused and counted like any
                # other, with the traceback logged, and ingest goes on.
                log.exception("report from %r could not be validated", report.node_name[:64])
                raise Rejected("malformed", f"unusable report ({type(error).__name__})") from None
        except Rejected as rejection:
            return "", (rejection.reason, rejection.detail)
        return report.node_name, None

    def _refuse(self, reason: str, detail: str) -> None:
        self.state.count_rejection(reason)
        self._log_throttled("rejected", reason, detail)

    def _log_throttled(self, verb: str, reason: str, detail: str) -> None:
        # A hostile client can send thousands a second: log each reason at most once per
        # interval (the counter has them all). Checked and set as one step across threads.
        now = time.monotonic()
        with self._log_lock:
            due = now - self._logged.get(reason, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS
            if due:
                self._logged[reason] = now
        if due:
            log.warning("%s report: %s: %s", verb, reason, detail[:500])

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Report": grpc.stream_unary_rpc_method_handler(
                self.report_stream,
                # Both raw: the report is decoded by the handler, the ack assembled.
                request_deserializer=None,
                response_serializer=None,
            )
        }

    def handler(self) -> grpc.GenericRpcHandler:
        """The same methods as a generic handler (for a server that looks them up per call)."""
        return grpc.method_handlers_generic_handler(SERVICE_NAME, self.method_handlers())


class GrpcServer:
    """The running synchronous server and its handler threads."""

    def __init__(
        self, server: grpc.Server, executor: futures.ThreadPoolExecutor, watch: MessageWatch
    ) -> None:
        self.server = server
        self.executor = executor
        self.watch = watch

    async def stop(self, grace: float) -> None:
        """Stops serving (in-flight calls get `grace` seconds), waiting off the event loop."""
        stopped: threading.Event = self.server.stop(grace)
        # A handler may be waiting on this loop (an uncached authentication): the loop
        # must keep running while the server drains. Bounded: a thread still waiting at
        # the end would hold up the loop's own shutdown.
        await asyncio.to_thread(stopped.wait, grace + STOP_WAIT_SECONDS)
        self.watch.stop()
        self.executor.shutdown(wait=False)


def start_grpc_server(
    servicer: ReportServicer,
    address: str,
    credentials: grpc.ServerCredentials | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> tuple[GrpcServer, int]:
    """Starts the server (TLS with `credentials`); returns it and the port bound (for `:0`).

    `loop`: the event loop that runs the async authentication (the running one by
    default). Binding and starting do not block: callable from the loop.
    """
    servicer.loop = loop or asyncio.get_running_loop()
    ceiling = servicer.state.limits.max_message_bytes * GRPC_CEILING_FACTOR
    executor = futures.ThreadPoolExecutor(
        max_workers=GRPC_THREADS, thread_name_prefix="grpc-report"
    )
    server = grpc.server(
        executor,
        options=[("grpc.max_receive_message_length", ceiling)],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    # Registered, not generic: gRPC finds the handler of a registered method by its name
    # in a dict, where a generic handler is asked per call (and builds its lookup key).
    server.add_registered_method_handlers(SERVICE_NAME, servicer.method_handlers())
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError:  # grpcio raises where grpc.aio returned 0
        port = 0
    if port == 0:
        executor.shutdown(wait=False)
        raise OSError(f"cannot listen for gRPC on {address}")
    servicer.watch.start()
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, executor, servicer.watch), port
