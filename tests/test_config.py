import pytest

from liveness_edge.config import ConfigError, load_config, parse_config, parse_duration, parse_listen
from media import ROOT


def test_shipped_config_has_the_seed_defaults():
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    assert (cfg.listen.host, cfg.listen.port) == ("", 18301)
    assert cfg.liveness_threshold == 0.95
    assert cfg.fullframe_jpeg_quality == 75
    assert (cfg.max_decoded_frames, cfg.min_selected_frames) == (30, 10)
    assert cfg.mf_selector == "reject"
    assert cfg.extraction_api.request_batch_size == 16
    assert cfg.extraction_api.timeouts.overall == 35.0
    assert cfg.sf_api.timeouts.idle_connection == 10.0
    limits = cfg.limits
    assert (limits.video_size, limits.video_length_sec, limits.video_fps) == (10485760, 60, 30)
    assert (limits.video_width_px, limits.video_height_px) == (1920, 1080)


def test_empty_file_gives_the_same_defaults_as_the_shipped_one():
    shipped = load_config(ROOT / "config" / "liveness-edge.ini")
    empty = parse_config("", source="<empty>")
    for name in ("listen", "liveness_threshold", "limits", "extraction_api", "sf_api", "mf_selector", "models",
                 "runtime", "quality", "server", "cache"):
        assert getattr(empty, name) == getattr(shipped, name), name


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("limits:\n  video-fsp: 3\n", "limits.video-fsp", "did you mean 'video-fps'"),
        ("liveness-treshold: 0.9\n", "liveness-treshold", "did you mean 'liveness-threshold'"),
        ("liveness-threshold: 1.5\n", "liveness-threshold", "in [0.0, 1.0]"),
        ("liveness-threshold: high\n", "liveness-threshold", "a number"),
        ("max-decoded-frames: 3.5\n", "max-decoded-frames", "an integer"),
        ("limits:\n  video-fps: 0\n", "limits.video-fps", "a number >="),
        ("mf-selector: all\n", "mf-selector", "one of reject, biggest"),
        ("sf-api:\n  timeouts: {connect: 5x}\n", "sf-api.timeouts.connect", "a duration"),
        ("extraction-api:\n  timeouts: {overall: -3s}\n", "extraction-api.timeouts.overall", "a duration"),
        ("listen: 18301\n", "listen", "':PORT'"),
        ("listen: ':99999'\n", "listen", "PORT in 0..65535"),
        ("limits: 5\n", "limits", "a mapping"),
        ("runtime:\n  delegate: tpu\n", "runtime.delegate", "auto, cpu, edgetpu, gpu"),
        ("server:\n  cors-origins: kiosk.local\n", "server.cors-origins", "not 'kiosk.local'"),
        ("server:\n  cors-origins: 'http://a.test/app'\n", "server.cors-origins", "no path"),
        ("server:\n  demo-page: yes please\n", "server.demo-page", "true or false"),
        ("camera: handheld\n", "camera", "one of fixed, hand-held"),
        # values that would break the daemon: every upload a 408, every detection expired, no worker for /health
        ("server:\n  read-timeout: 0s\n", "server.read-timeout", "a duration of at least 1s"),
        ("cache:\n  ttl: 0s\n", "cache.ttl", "a duration of at least 1s"),
        ("server:\n  workers: 1\n", "server.workers", "an integer in [2, 64]"),
        ("? [listen]\n: 1\n", "<top level>", "a key must be a plain name"),
        ("server:\n  allowed-hosts: 'http://kiosk.local'\n", "server.allowed-hosts", "host names like kiosk.local"),
        ("limits:\n  {video-fps: 3}: 30\n", "limits", "a key must be a plain name"),
    ],
)
def test_bad_values_name_the_key_line_and_expectation(text, key, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="x.ini")
    message = str(err.value)
    assert f" {key}: " in message or message.startswith(f"{key}:") or f": {key}:" in message
    assert expected in message
    assert err.value.key == key


def test_error_carries_the_line_number():
    with pytest.raises(ConfigError) as err:
        parse_config("listen: :18301\nlimits:\n  video-size: 10\n  video-fsp: 3\n", source="a.ini")
    assert str(err.value).startswith("a.ini:4: limits.video-fsp")


def test_min_selected_more_than_max_decoded_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_config("max-decoded-frames: 5\nmin-selected-frames: 6\n")
    assert "min-selected-frames" in str(err.value) and "max-decoded-frames" in str(err.value)
    # a rule over two keys names the file and the line of the one the file sets
    with pytest.raises(ConfigError) as err:
        parse_config("listen: :18301\nmax-decoded-frames: 5\n", source="b.ini")
    assert str(err.value).startswith("b.ini:2: max-decoded-frames: ") and err.value.line == 2


def test_duplicate_key_and_bad_yaml_are_refused():
    with pytest.raises(ConfigError, match="given twice"):
        parse_config("max-decoded-frames: 5\nmax-decoded-frames: 6\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("limits: [1\n")


def test_upstream_urls_from_a_findface_config_are_accepted_and_named_as_unused():
    cfg = parse_config('extraction-api:\n  request-batch-size: 8\n  extraction-api: http://127.0.0.1:18666\n'
                       'sf-api:\n  sf-api: "http://127.0.0.1:18411"\n', source="ff.ini")
    assert cfg.extraction_api.request_batch_size == 8
    assert cfg.notices == (
        "ff.ini:3: extraction-api.extraction-api: 'http://127.0.0.1:18666' is not used: this build runs face "
        "detection and liveness in-process",
        "ff.ini:5: sf-api.sf-api: 'http://127.0.0.1:18411' is not used: this build keeps detections in its own cache "
        "(detection_id is read back with GET /v1/detections/{id}, not from sf-api)",
    )
    assert parse_config("listen: :18301\n").notices == ()


@pytest.mark.parametrize("text, host, port", [(":18301", "", 18301), ("127.0.0.1:80", "127.0.0.1", 80),
                                               ("[::1]:18301", "::1", 18301), ("localhost:0", "localhost", 0)])
def test_listen_forms(text, host, port):
    address = parse_listen(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text, seconds", [("5s", 5), ("250ms", 0.25), ("1m30s", 90), ("720h", 2592000)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_environment_overrides_config_path_and_state_dir(tmp_path, monkeypatch):
    path = tmp_path / "other.ini"
    path.write_text("max-decoded-frames: 12\nmin-selected-frames: 3\n")
    monkeypatch.setenv("LIVENESS_EDGE_CONFIG", str(path))
    monkeypatch.setenv("LIVENESS_EDGE_STATE_DIR", str(tmp_path / "st"))
    cfg = load_config()
    assert cfg.max_decoded_frames == 12
    assert cfg.state_dir == tmp_path / "st"


def test_unreadable_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*missing.ini"):
        load_config(tmp_path / "missing.ini")


def test_camera_is_fixed_unless_said_otherwise():
    assert parse_config("").camera == "fixed"
    assert parse_config("camera: hand-held\n").camera == "hand-held"


def test_cors_origins_are_a_space_or_comma_separated_list():
    cfg = parse_config("server:\n  cors-origins: 'http://localhost:3000, https://kiosk.local *'\n")
    assert cfg.server.cors_origins == ("http://localhost:3000", "https://kiosk.local", "*")
    assert parse_config("").server.cors_origins == ()
