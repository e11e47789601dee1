"""Load and validate the YAML-shaped ``liveness-edge.ini``.

The file keeps the seed service's (findface-liveness-api) keys and syntax. It is parsed with PyYAML's composer so that
every key keeps its line number: a validation error names the key path (``limits.video-fps``), the line, the value and
what was expected, and an unknown key gets a "did you mean" from the known ones. The result is a tree of frozen
dataclasses; nothing else in the daemon reads the raw YAML.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import StartupError

CONFIG_ENV = "LIVENESS_EDGE_CONFIG"
STATE_DIR_ENV = "LIVENESS_EDGE_STATE_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTALLED_STATE_DIR = Path("/var/lib/liveness-edge")


class ConfigError(StartupError):
    """A config problem, always naming the key path and, when known, the line."""

    def __init__(self, path: str, message: str, line: int | None = None, source: str = ""):
        where = _where(source, line)
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")
        self.key = path
        self.line = line


def _where(source: str, line: int | None) -> str:
    """The "file:line: " prefix of a message about a key (as much of it as is known)."""
    return f"{source}:{line}: " if line and source else (f"line {line}: " if line else (f"{source}: " if source else ""))


# ---------------------------------------------------------------------------------------------------------------------
# Value parsers: each takes the YAML scalar (already typed by YAML) and returns the value or raises ValueError(expected).

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Go-style durations as in the seed (``5s``, ``1m30s``, ``250ms``) -> seconds."""
    text = str(value).strip()
    if not text or isinstance(value, bool):
        raise ValueError("a duration such as 5s, 250ms or 1m30s")
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError("a duration such as 5s, 250ms or 1m30s")
    return total


def _duration(lo: float) -> Callable[[Any], float]:
    """A duration of at least ``lo`` seconds (where 0 would break the daemon, e.g. a read timeout)."""

    def parse(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < lo:
            raise ValueError(f"a duration of at least {lo:g}s")
        return seconds

    return parse


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_range_text("an integer", lo, hi))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(_range_text("an integer", lo, hi))
        return value

    return parse


def _float(lo: float | None = None, hi: float | None = None) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(_range_text("a number", lo, hi))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(_range_text("a number", lo, hi))
        return float(value)

    return parse


def _range_text(kind: str, lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None:
        return f"{kind} >= {lo}"
    if hi is not None:
        return f"{kind} <= {hi}"
    return kind


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return parse


def _string(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


_ORIGIN_RE = re.compile(r"\*|https?://[^/\s,]+")


def _origins(value: Any) -> tuple[str, ...]:
    """Browser origins allowed to call the API (CORS): space- or comma-separated, e.g. "http://localhost:3000
    https://kiosk.local", or "*"; empty = none (a page from another origin cannot read the answers)."""
    origins = tuple(o for o in re.split(r"[\s,]+", _string(value)) if o)
    bad = [o for o in origins if not _ORIGIN_RE.fullmatch(o)]
    if bad:
        raise ValueError(f"origins like http://localhost:3000 (scheme://host[:port], no path) or *; not {bad[0]!r}")
    return origins


_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _hosts(value: Any) -> tuple[str, ...]:
    """Host names the daemon answers to besides IP addresses and localhost (server.allowed-hosts): space- or
    comma-separated, e.g. "kiosk.local liveness.example.lan"; empty = any Host header, as the seed service."""
    hosts = tuple(h.lower() for h in re.split(r"[\s,]+", _string(value)) if h)
    bad = [h for h in hosts if not _HOST_RE.fullmatch(h)]
    if bad:
        raise ValueError(f"host names like kiosk.local (no scheme, port or path); not {bad[0]!r}")
    return hosts


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" = all interfaces, as the seed's ":18301"
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: Any) -> ListenAddress:
    """``:PORT`` (all interfaces), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    expected = "':PORT', 'HOST:PORT' or '[IPv6]:PORT' with PORT in 0..65535"
    if not isinstance(value, str):
        raise ValueError(expected)
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d+)|([^:\[\]\s]*):(\d+)", value.strip())
    if not match:
        raise ValueError(expected)
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(expected)
    return ListenAddress(host=host, port=port)


# ---------------------------------------------------------------------------------------------------------------------
# The schema: nested dicts of key -> (parser, default). A dict value is a section.

_TIMEOUTS = {
    "connect": (parse_duration, "5s"),
    "response_header": (parse_duration, "30s"),
    "overall": (parse_duration, "35s"),
    "idle_connection": (parse_duration, "10s"),
}

SCHEMA: dict[str, Any] = {
    "listen": (parse_listen, ":18301"),
    "liveness-threshold": (_float(0.0, 1.0), 0.95),
    "fullframe-jpeg-quality": (_int(1, 100), 75),
    "max-decoded-frames": (_int(1, 1000), 30),
    "min-selected-frames": (_int(1, 1000), 10),
    "mf-selector": (_choice("reject", "biggest"), "reject"),
    "extraction-api": {
        "request-batch-size": (_int(1, 256), 16),
        "timeouts": _TIMEOUTS,
        "extraction-api": (_string, ""),
    },
    "sf-api": {
        "timeouts": _TIMEOUTS,
        "sf-api": (_string, ""),
    },
    "limits": {
        "video-size": (_int(1), 10485760),
        "video-length-sec": (_float(0.001), 60),
        "video-fps": (_float(0.001), 30),
        "video-width-px": (_int(1), 1920),
        "video-height-px": (_int(1), 1080),
    },
    # --- edge additions, same style ---
    "state-dir": (_string, ""),
    "camera": (_choice("fixed", "hand-held"), "fixed"),
    "models": {
        "dir": (_string, ""),
        "detector": (_string, "face_detection_full_range"),
        "landmarks": (_string, "face_landmark"),
        "liveness": (_string, "antispoof"),
        "liveness-spec": (_string, ""),
        "detector-score": (_float(0.0, 1.0), 0.5),
    },
    "runtime": {
        "delegate": (_choice("auto", "cpu", "edgetpu", "gpu"), "cpu"),
        "variant": (_choice("auto", "float32", "int8"), "auto"),
        "threads": (_int(1, 64), 2),
    },
    "quality": {
        "min-face-px": (_int(8, 4096), 48),
        "min-score": (_float(0.0, 1.0), 0.25),
    },
    "server": {
        # One is always kept free for /health and /metrics; 8 leaves room for the default slots (the CPU cores of a
        # 2- or 4-core box) and queue (4), which are capped at workers - 1.
        "workers": (_int(2, 64), 8),
        "max-concurrent-requests": (_int(0, 64), 0),
        "queue": (_int(0, 1024), 4),
        "read-timeout": (_duration(1.0), "30s"),
        # Open connections: in all (waitress's connection_limit), and from one client address (0 = no cap), so that
        # one client holding idle connections cannot lock out the others.
        "max-connections": (_int(8, 10000), 100),
        "connections-per-client": (_int(0, 10000), 16),
        "drain-timeout": (parse_duration, "20s"),
        "demo-page": (_bool, True),
        "cors-origins": (_origins, ""),
        "allowed-hosts": (_hosts, ""),
    },
    "cache": {
        "max-entries": (_int(1, 10_000_000), 10000),
        "ttl": (_duration(1.0), "720h"),
    },
    "auth": {
        "token-file": (_string, ""),
    },
    "log": {
        "level": (_choice("debug", "info", "warning", "error"), "info"),
        "format": (_choice("json", "text"), "json"),
    },
}


# ---------------------------------------------------------------------------------------------------------------------
# The typed result.


@dataclass(frozen=True)
class Timeouts:
    connect: float
    response_header: float
    overall: float
    idle_connection: float


@dataclass(frozen=True)
class ExtractionApi:
    request_batch_size: int
    timeouts: Timeouts
    url: str


@dataclass(frozen=True)
class SfApi:
    timeouts: Timeouts
    url: str


@dataclass(frozen=True)
class Limits:
    video_size: int
    video_length_sec: float
    video_fps: float
    video_width_px: int
    video_height_px: int


@dataclass(frozen=True)
class ModelsConfig:
    dir: Path
    detector: str
    landmarks: str
    liveness: str
    liveness_spec: Path | None
    detector_score: float


@dataclass(frozen=True)
class RuntimeConfig:
    delegate: str
    variant: str
    threads: int


@dataclass(frozen=True)
class QualityConfig:
    min_face_px: int
    min_score: float


@dataclass(frozen=True)
class ServerConfig:
    workers: int
    max_concurrent_requests: int
    queue: int
    read_timeout: float
    drain_timeout: float
    demo_page: bool = True
    cors_origins: tuple[str, ...] = ()
    max_connections: int = 100
    connections_per_client: int = 16
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheConfig:
    max_entries: int
    ttl: float


@dataclass(frozen=True)
class Config:
    listen: ListenAddress
    liveness_threshold: float
    fullframe_jpeg_quality: int
    max_decoded_frames: int
    min_selected_frames: int
    mf_selector: str
    extraction_api: ExtractionApi
    sf_api: SfApi
    limits: Limits
    state_dir: Path
    models: ModelsConfig
    runtime: RuntimeConfig
    quality: QualityConfig
    server: ServerConfig
    cache: CacheConfig
    token_file: Path | None
    log_level: str
    log_format: str
    camera: str = "fixed"  # fixed | hand-held: whether a still background can be expected behind a live face
    source: str = field(default="", compare=False)
    # Settings accepted for drop-in compatibility that this build does not act on, one line each, naming the key
    # (logged as warnings at start and printed by config-check).
    notices: tuple[str, ...] = field(default=(), compare=False)


# ---------------------------------------------------------------------------------------------------------------------
# Loading.


def default_config_path() -> Path:
    """``$LIVENESS_EDGE_CONFIG``, else the checkout's ``config/liveness-edge.ini``, else the installed conffile."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    installed = Path("/etc/liveness-edge/liveness-edge.ini")
    in_checkout = PROJECT_ROOT / "config" / "liveness-edge.ini"
    return in_checkout if in_checkout.exists() else installed


def bundled_models_dir() -> Path:
    """Models next to the package in a checkout, or where the Debian package puts them."""
    in_checkout = PROJECT_ROOT / "models" / "tflite"
    return in_checkout if in_checkout.is_dir() else Path("/usr/share/liveness-edge/models")


def default_state_dir() -> Path:
    in_checkout = PROJECT_ROOT / "state"
    return in_checkout if (PROJECT_ROOT / "pyproject.toml").exists() else INSTALLED_STATE_DIR


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, parse and validate a config file; raises ConfigError naming the key (and line) on any problem."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"config file {path} is not UTF-8 text") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"not valid YAML: {problem}", line, source) from None
    lines: dict[str, int] = {}
    raw = _validate_section(node, SCHEMA, "", source, lines)
    return _build(raw, source, lines)


def _validate_section(node, schema: dict, prefix: str, source: str, lines: dict[str, int] | None = None) -> dict:
    """Walk one mapping node against its schema; returns {key: parsed value or sub-dict}, defaults filled in.
    ``lines`` collects the line of every key given (key path -> line), for errors that involve several keys."""
    lines = {} if lines is None else lines
    out: dict[str, Any] = {}
    if node is None:
        node_items = []
    elif isinstance(node, yaml.MappingNode):
        node_items = node.value
    else:
        raise ConfigError(prefix or "<top level>", "expected a mapping of keys", node.start_mark.line + 1, source)
    seen: set[str] = set()
    for key_node, value_node in node_items:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):  # "? [a, b]: 1" or "{a: 1}: 2": YAML allows it, keys are names
            raise ConfigError(prefix or "<top level>", "a key must be a plain name, not a list or mapping", line,
                              source)
        key = key_node.value
        path = f"{prefix}.{key}" if prefix else key
        if key not in schema:
            hint = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            known = f"did you mean '{hint[0]}'?" if hint else "known keys here: " + ", ".join(sorted(schema))
            raise ConfigError(path, f"unknown key; {known}", line, source)
        if key in seen:
            raise ConfigError(path, "key given twice", line, source)
        seen.add(key)
        lines[path] = line
        spec = schema[key]
        if isinstance(spec, dict):
            out[key] = _validate_section(value_node, spec, path, source, lines)
            continue
        parser, _default = spec
        value = _scalar(value_node, path, source)
        try:
            out[key] = parser(value)
        except ValueError as exc:
            raise ConfigError(path, f"got {value!r}, expected {exc}", line, source) from None
    for key, spec in schema.items():
        if key in out:
            continue
        if isinstance(spec, dict):
            out[key] = _validate_section(None, spec, f"{prefix}.{key}" if prefix else key, source)
        else:
            out[key] = spec[0](spec[1])
    return out


def _scalar(node, path: str, source: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(path, "expected a single value, not a list or mapping", node.start_mark.line + 1, source)
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _timeouts(raw: dict) -> Timeouts:
    return Timeouts(raw["connect"], raw["response_header"], raw["overall"], raw["idle_connection"])


# The seed's upstream services. A findface-liveness-api config names them; this build does their work itself, so a
# copied config starts, and says what it does instead (a refusal here would make every migrated config fail).
UNUSED_URLS = {
    "extraction-api.extraction-api": "not used: this build runs face detection and liveness in-process",
    "sf-api.sf-api": "not used: this build keeps detections in its own cache (detection_id is read back with "
                     "GET /v1/detections/{id}, not from sf-api)",
}


def _unused_url_notices(raw: dict, source: str, lines: dict[str, int]):
    for key, what in UNUSED_URLS.items():
        section, name = key.split(".")
        url = raw[section][name]
        if url:
            yield f"{_where(source, lines.get(key))}{key}: {url!r} is {what}"


def _build(raw: dict, source: str, lines: dict[str, int] | None = None) -> Config:
    lines = lines or {}
    if raw["min-selected-frames"] > raw["max-decoded-frames"]:
        # Name the line of whichever of the two keys the file sets (the other is its default).
        key = "min-selected-frames" if "min-selected-frames" in lines else "max-decoded-frames"
        raise ConfigError(
            key,
            f"min-selected-frames ({raw['min-selected-frames']}) is more than max-decoded-frames "
            f"({raw['max-decoded-frames']}); expected min-selected-frames <= max-decoded-frames",
            lines.get(key), source,
        )
    notices = tuple(_unused_url_notices(raw, source, lines))
    models, runtime, server = raw["models"], raw["runtime"], raw["server"]
    state_dir = os.environ.get(STATE_DIR_ENV) or raw["state-dir"]
    base = Path(source).resolve().parent if source and not source.startswith("<") else Path.cwd()
    return Config(
        listen=raw["listen"],
        liveness_threshold=raw["liveness-threshold"],
        fullframe_jpeg_quality=raw["fullframe-jpeg-quality"],
        max_decoded_frames=raw["max-decoded-frames"],
        min_selected_frames=raw["min-selected-frames"],
        mf_selector=raw["mf-selector"],
        extraction_api=ExtractionApi(
            raw["extraction-api"]["request-batch-size"],
            _timeouts(raw["extraction-api"]["timeouts"]),
            raw["extraction-api"]["extraction-api"],
        ),
        sf_api=SfApi(_timeouts(raw["sf-api"]["timeouts"]), raw["sf-api"]["sf-api"]),
        limits=Limits(**{k.replace("-", "_"): v for k, v in raw["limits"].items()}),
        state_dir=_resolve(state_dir, base) if state_dir else default_state_dir(),
        models=ModelsConfig(
            dir=_resolve(models["dir"], base) if models["dir"] else bundled_models_dir(),
            detector=models["detector"],
            landmarks=models["landmarks"],
            liveness=models["liveness"],
            liveness_spec=_resolve(models["liveness-spec"], base) if models["liveness-spec"] else None,
            detector_score=models["detector-score"],
        ),
        runtime=RuntimeConfig(runtime["delegate"], runtime["variant"], runtime["threads"]),
        quality=QualityConfig(raw["quality"]["min-face-px"], raw["quality"]["min-score"]),
        server=ServerConfig(
            workers=server["workers"],
            max_concurrent_requests=server["max-concurrent-requests"] or max(1, os.cpu_count() or 1),
            queue=server["queue"],
            read_timeout=server["read-timeout"],
            drain_timeout=server["drain-timeout"],
            demo_page=server["demo-page"],
            cors_origins=server["cors-origins"],
            max_connections=server["max-connections"],
            connections_per_client=server["connections-per-client"],
            allowed_hosts=server["allowed-hosts"],
        ),
        cache=CacheConfig(raw["cache"]["max-entries"], raw["cache"]["ttl"]),
        token_file=_resolve(raw["auth"]["token-file"], base) if raw["auth"]["token-file"] else None,
        log_level=raw["log"]["level"],
        log_format=raw["log"]["format"],
        camera=raw["camera"],
        source=source,
        notices=notices,
    )


def _resolve(path: str, base: Path) -> Path:
    """Relative paths in the config are relative to the config file, so `make run` works from anywhere."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)
