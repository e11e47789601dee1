"""Command line: ``liveness-edge serve | check CLIP... | config-check [PATH] | models | version``.

Start-up problems print one line naming the key or file and exit 2 (config, models, a delegate library, the state
dir: restarting will not help) or 75 (the listen address or the accelerator is not there yet: systemd restarts it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import __version__
from .config import CONFIG_ENV, Config, load_config
from .errors import LivenessError, StartupError, StartupUnavailable
from .memory import limit_arenas

log = logging.getLogger("liveness_edge")
EXIT_STARTUP = 2
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL
EXIT_CHECK_FAILED = 1


class JsonLineFormatter(logging.Formatter):
    """``log.format: json``: every log line one JSON object (level, logger, msg), so a log shipper reading the
    journal needs no second parser; a request's line carries its fields (``extra={"fields": {...}}``) at the top
    level instead of a message."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["msg"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextLineFormatter(logging.Formatter):
    """``log.format: text``: one line per record, control characters escaped. A request's path is the client's: a
    %0a in it must not start a forged log line (and a traceback stays one record in the journal)."""

    _ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}

    def __init__(self):
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(self._ESCAPES)


def _setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextLineFormatter())
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def _load(args) -> Config:
    cfg = load_config(args.config)
    _setup_logging(cfg.log_level, cfg.log_format)
    for notice in cfg.notices:
        log.warning("config: %s", notice)
    return cfg


def cmd_serve(args) -> int:
    from .cache import DetectionCache
    from .http.app import Service
    from .http.server import Runner, build_server
    from .models import load_models

    limit_arenas()
    cfg = _load(args)
    service = Service(cfg)  # answers /health "starting" (503) until the models are attached
    try:
        server = build_server(service)  # bind first: a port in use fails before seconds of model loading
    except OSError as exc:
        raise StartupUnavailable(f"listen {cfg.listen}: cannot bind: {exc.strerror or exc}") from None
    return Runner(service, server).serve(
        load=lambda: (load_models(cfg), DetectionCache(cfg.state_dir, cfg.cache.max_entries, cfg.cache.ttl)))


def cmd_check(args) -> int:
    """The daemon's pipeline offline on files: one JSON object per clip on stdout (errors in the same shape)."""
    from .cache import DetectionCache
    from .http.app import result_json
    from .models import load_models
    from .pipeline import Options, Pipeline

    cfg = _load(args)
    models = load_models(cfg)
    cache = DetectionCache(cfg.state_dir, cfg.cache.max_entries, cfg.cache.ttl) if args.return_detection else None
    pipeline = Pipeline(cfg, models, cache)
    options = Options(args.return_photo, args.return_normalized, args.return_detection, return_frames=args.verbose)
    failed = 0
    for clip in args.clips:
        try:
            with open(clip, "rb") as fh:
                result = pipeline.run(fh, options)
            out = {"file": clip, **result_json(result)}
            if args.verbose:
                out["frames_decoded"] = result.frames_decoded
                out["frames_selected"] = result.frames_selected
                out["dropped"] = result.dropped
        except LivenessError as exc:
            failed += 1
            out = {"file": clip, "error": exc.as_dict()}
        except OSError as exc:
            failed += 1
            out = {"file": clip, "error": {"code": "IO_ERROR", "desc": str(exc), "param": "file"}}
        print(json.dumps(out), flush=True)
    return EXIT_CHECK_FAILED if failed else 0


def cmd_config_check(args) -> int:
    path = args.path or args.config
    cfg = load_config(path)
    for notice in cfg.notices:
        print(f"warning: {notice}", file=sys.stderr)
    print(f"{cfg.source}: OK (listen {cfg.listen}, models {cfg.models.dir}, state-dir {cfg.state_dir})")
    return 0


def cmd_models(args) -> int:
    from .models import load_models

    cfg = _load(args)
    models = load_models(cfg)
    print(json.dumps({"delegate": models.backend.describe(), "models": [i.as_dict() for i in models.infos]},
                     indent=2))
    return 0


def cmd_version(_args) -> int:
    print(f"liveness-edge {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    config_help = (f"config file (default: ${CONFIG_ENV}, else config/liveness-edge.ini in a checkout, "
                   "else /etc/liveness-edge/liveness-edge.ini)")
    parser = argparse.ArgumentParser(prog="liveness-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help=config_help)
    # --config is also accepted after the command (`liveness-edge serve --config X`), as people type it;
    # SUPPRESS keeps a command without it from resetting the one given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="run the HTTP daemon").set_defaults(func=cmd_serve)
    check = sub.add_parser("check", parents=[common],
                           help="run the pipeline on clips offline and print the JSON answers")
    check.add_argument("clips", nargs="+", metavar="CLIP")
    check.add_argument("--return-photo", action="store_true")
    check.add_argument("--return-normalized", action="store_true")
    check.add_argument("--return-detection", action="store_true")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="add frame counts, per-frame scores and per-cue results")
    check.set_defaults(func=cmd_check)
    cc = sub.add_parser("config-check", parents=[common], help="validate a config file and exit")
    cc.add_argument("path", nargs="?", default=None)
    cc.set_defaults(func=cmd_config_check)
    sub.add_parser("models", parents=[common],
                   help="load, verify and time the configured models").set_defaults(func=cmd_models)
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StartupError as exc:
        print(f"liveness-edge: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(exc, StartupUnavailable) else EXIT_STARTUP
    except KeyboardInterrupt:
        return 130
