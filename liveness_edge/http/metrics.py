"""Prometheus metrics (prometheus-client), one registry per app so tests can run several apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("liveness_edge_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=r)
        self.latency = Histogram("liveness_edge_stage_seconds", "Time per pipeline stage per request",
                                 ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.frames = Counter("liveness_edge_frames", "Frames: decoded, selected, or not selected by drop reason",
                              ["outcome"], registry=r)
        self.decisions = Counter("liveness_edge_decisions", "Liveness answers", ["alive"], registry=r)
        self.in_flight = Gauge("liveness_edge_in_flight", "Clips being processed now", registry=r)
        self.shed = Counter("liveness_edge_shed", "Requests refused with 503 BUSY", registry=r)
        self.cache_entries = Gauge("liveness_edge_cache_entries", "Detections in the cache", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
