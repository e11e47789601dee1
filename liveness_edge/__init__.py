"""liveness-edge: a face-liveness daemon for edge boxes, a drop-in for findface-liveness-api."""

__version__ = "0.1.0"
