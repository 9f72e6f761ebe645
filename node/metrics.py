"""A node's Prometheus metrics, served at `GET /metrics` in the text exposition format.

Events are counted where they happen (plain counters, histograms of when blocks arrive and
become final, measured from the start of their slot, and of how long txs wait for their signature
checks). Everything that is state — heights, mempool, peers, missed slots, evidence — is read when
the metrics are scraped, so it costs nothing in between.
Each node has its own registry (tests run several nodes in one process), with prometheus-client's
process and platform collectors in it (`process_resident_memory_bytes`, `python_info`...).
"""
from prometheus_client import (CollectorRegistry, Histogram, PlatformCollector, ProcessCollector,
                               disable_created_metrics)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# seconds from a slot's start: around the 0.5 s default slot, and up to a few slots late; a block
# can arrive before its slot starts (its producer builds it a tenth of a slot early)
SLOT_BUCKETS = (-0.1, -0.05, -0.025, 0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

# seconds a batch of txs on its way into the mempool waits for its signature checks (worker
# processes at a lower priority than the node: on a saturated machine this is where txs queue)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

disable_created_metrics()  # no `_created` series: they only double what a scraper sees

__all__ = ["CONTENT_TYPE_LATEST", "NodeMetrics"]


class NodeMetrics:
    """Counters are plain ints the node bumps on its hot paths (a prometheus Counter takes a lock
    per increment: about 1 µs per tx), exported at scrape time with the state gauges."""

    def __init__(self, service):
        self.admitted = {"wallet": 0, "peer": 0}  # txs admitted to the mempool, by source
        self.refused: dict[str, int] = {}  # txs refused at admission, by error code
        self.final_txs = 0
        self.produced = 0
        self.imported = 0
        self.votes_cast = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.block_arrival = Histogram("chain_block_arrival_seconds",
                                       "When a block from a peer arrived, after its slot's start",
                                       buckets=SLOT_BUCKETS, registry=self.registry)
        self.finality = Histogram("chain_block_final_seconds",
                                  "When a block became final here, after its slot's start (not while "
                                  "catching up)",
                                  buckets=SLOT_BUCKETS, registry=self.registry)
        self.signature_wait = Histogram("chain_tx_signature_wait_seconds",
                                        "How long a batch of txs entering the mempool waited for "
                                        "its signature checks", buckets=WAIT_BUCKETS,
                                        registry=self.registry)
        self.registry.register(_StateCollector(service, self))
        # the process's CPU, memory, open files and start time, and the Python version (not the
        # GC collector: gc.callbacks on every collection, and node.main tunes the GC itself)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class _StateCollector:
    """The counters, and gauges read from the node, at scrape time."""

    def __init__(self, service, metrics: NodeMetrics):
        self.service, self.metrics = service, metrics

    def collect(self):
        m, s = self.metrics, self.service
        chain = s.chain
        admitted = CounterMetricFamily("chain_txs_admitted", "Txs admitted to the mempool, by where they came from",
                                       labels=["source"])
        for source, n in m.admitted.items():
            admitted.add_metric([source], n)
        yield admitted
        refused = CounterMetricFamily("chain_txs_refused", "Txs refused at admission, by error code", labels=["code"])
        for code, n in sorted(m.refused.items()):
            refused.add_metric([code], n)
        yield refused
        yield _counter("chain_txs_final", "Txs in blocks this node saw become final", m.final_txs)
        yield _counter("chain_blocks_produced", "Blocks this node produced", m.produced)
        yield _counter("chain_blocks_imported", "Blocks from peers or sync added to the tree", m.imported)
        yield _counter("chain_votes_cast", "Votes this node signed", m.votes_cast)
        yield _counter("chain_blocks_held", "A producer's third or later blocks for one slot, held "
                       "until enough producers vote for them", chain.blocks_held)
        heights = GaugeMetricFamily("chain_height", "Height of the head, notarized and final block", labels=["block"])
        heights.add_metric(["head"], chain.tip().height)
        heights.add_metric(["notarized"], chain.head().height)
        heights.add_metric(["final"], chain.final_height)
        yield heights
        yield GaugeMetricFamily("chain_mempool_txs", "Txs waiting in the mempool", value=len(s.mempool))
        peers = s.net.status()
        yield GaugeMetricFamily("chain_peers", "Configured peers", value=len(peers))
        yield GaugeMetricFamily("chain_peers_up", "Peers that answered their last status poll",
                                value=sum(1 for p in peers if p["up"]))
        yield GaugeMetricFamily("chain_syncing", "1 while catching up with a peer ahead", value=int(s.net.syncing))
        now = s.health.liveness()  # at the current wall-clock slot (node.health)
        yield GaugeMetricFamily("chain_producing", "1 while blocks are being produced: the newest block is "
                                "as recent as a live chain's", value=int(now.producing))
        yield GaugeMetricFamily("chain_stalled", "1 while finality has not moved for longer than a live "
                                "chain allows", value=int(now.stalled))
        yield GaugeMetricFamily("chain_slots_since_block", "Slots from the newest block's to the current",
                                value=now.slots_since_block)
        yield GaugeMetricFamily("chain_slots_since_final", "Slots from the final block's to the current",
                                value=now.slots_since_final)
        slot_producer = GaugeMetricFamily("chain_slot_producer_info", "The producer scheduled for the "
                                          "current slot", labels=["producer"])
        slot_producer.add_metric([now.slot_producer], 1)
        yield slot_producer
        yield GaugeMetricFamily("chain_scheduled", "1 if this node is in the current slot's schedule",
                                value=int(s.producer_name in now.schedule))
        empty = CounterMetricFamily("chain_empty_slots", "Slots this node saw end with no block, by the "
                                    "producer scheduled in them", labels=["producer"])
        for name, count in sorted(s.health.empty_slots.items()):
            empty.add_metric([name], count)
        yield empty
        yield _counter("chain_slot_failures", "Producer slots that failed (logged with the traceback)",
                       s.health.slot_failures)
        missed = CounterMetricFamily("chain_missed_slots", "Slots a scheduled producer left empty "
                                     "between two blocks, counted when the later became final",
                                     labels=["producer"])
        for name, count in sorted(chain.missed_slots.items()):
            missed.add_metric([name], count)
        yield missed
        evidence = GaugeMetricFamily("chain_equivocation_evidence",
                                     "Conflicting pairs this node holds against a producer", labels=["producer", "kind"])
        for (name, kind) in sorted(chain.evidence):
            evidence.add_metric([name, kind], 1)
        yield evidence
        intake = s.intake  # node.intake: connections and request bodies (None: no server, e.g. a test)
        if intake is not None:
            connections = GaugeMetricFamily("chain_http_connections", "Open HTTP connections by pool",
                                            labels=["pool"])
            body_bytes = GaugeMetricFamily("chain_http_body_bytes", "Request-body bytes in flight by pool",
                                           labels=["pool"])
            for pool in sorted(intake.connections):
                connections.add_metric([pool], intake.connections[pool])
                body_bytes.add_metric([pool], intake.body_bytes[pool])
            yield connections
            yield body_bytes
            cut = CounterMetricFamily("chain_http_connections_cut", "Connections the intake closed, by why",
                                      labels=["why"])
            for why, count in (("over_client_cap", intake.closed_at_once), ("deadline", intake.timed_out),
                               ("evicted", intake.evicted)):
                cut.add_metric([why], count)
            yield cut
            yield _counter("chain_http_bodies_refused", "Requests refused for the body budget",
                           intake.bodies_refused)
        peers = s.net.guard.report()  # p2p.envelope: misbehaviour scores and bans
        yield _counter("chain_peer_bans", "Bans of peers for misbehaviour", peers["bans"])
        banned = GaugeMetricFamily("chain_peer_banned", "1 while this peer is banned", labels=["peer"])
        for name in sorted(peers["banned_s"]):
            banned.add_metric([name], 1)
        yield banned
        faults = CounterMetricFamily("chain_peer_faults", "Faults charged to peers, by kind", labels=["kind"])
        for kind, count in sorted(peers["faults"].items()):
            faults.add_metric([kind], count)
        yield faults
