"""While the models load the daemon already listens: /health says "starting" (503) and clips get 503 BUSY."""

import io
import json

from liveness_edge.cache import DetectionCache
from liveness_edge.config import load_config
from liveness_edge.http.app import Service
from liveness_edge.models import load_models
from media import ROOT


def call(app, method, path, body=b"", content_type="video/mp4"):
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "x",
               "SERVER_PORT": "1", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": content_type, "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}
    out = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], json.loads(out)


def test_starting_then_serving(tmp_path):
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    service = Service(cfg)
    status, _, health = call(service.app, "GET", "/health")
    assert status == 503 and health["status"] == "starting" and health["models"] == []
    status, headers, body = call(service.app, "POST", "/v1/liveness", b"\x00" * 10)
    assert status == 503 and body["code"] == "BUSY" and headers["Retry-After"] == "1"
    assert "starting" in body["desc"]
    service.attach(load_models(cfg, warm=False), DetectionCache(tmp_path, 10, 60))
    service.state.ready = True
    status, _, health = call(service.app, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and len(health["models"]) == 3
