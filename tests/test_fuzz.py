"""Bad input against a real daemon: a short run of tools/fuzz.py (`make fuzz` runs >= 2,000 inputs) and hypothesis
over bodies, query strings and header values. Every answer is 200 or a 4xx in the standard error JSON; never a 5xx."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Daemon, write_config
from tools.fuzz import fuzz_daemon, generate, print_report, shared_seeds, synthetic_seeds
from tools.load import parse_reply, raw

HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    d = Daemon(write_config(tmp_path_factory.mktemp("fuzz")))
    host, port = d.url.split("//")[1].split(":")
    d.host, d.port = host, int(port)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def seeds():
    return synthetic_seeds()


def assert_contract(status: int, body: bytes):
    assert status == 200 or 400 <= status < 500, (status, body[:300])
    parsed = json.loads(body)
    if status != 200:
        assert {"code", "desc", "param"} <= set(parsed), parsed
        assert "Traceback" not in parsed["desc"]


def test_seeded_mutations_of_synthetic_clips(target, seeds, capsys):
    inputs = generate(150, seed=5, seeds=seeds)  # every seed as-is, then mutations
    report = fuzz_daemon(target.host, target.port, target.proc.pid, inputs, clients=2, warm=seeds)
    with capsys.disabled():
        print()
        print_report(report)
    assert report["failure_count"] == 0, report["failures"]
    assert target.proc.poll() is None
    assert report["normal_after"]["status"] == 200 and report["normal_after"]["sec"] < 5
    assert abs(report["rss_change"]) <= 0.10, report["rss_kib"]
    assert set(report["by_status"]) >= {"200", "400", "422"}


@pytest.mark.shared
def test_seeded_mutations_of_real_clips(target, seeds, needs_shared, capsys):
    real = shared_seeds()
    if not real:
        pytest.skip("no clips in ../shared/data")
    inputs = generate(len(real) + 24, seed=9, seeds=real)[len(real):]  # 24 mutations of real files
    report = fuzz_daemon(target.host, target.port, target.proc.pid, inputs, clients=2, warm=real[:1],
                         warm_rounds=1, settle=0)  # memory is checked on the synthetic run
    with capsys.disabled():
        print()
        print_report(report)
    assert report["failure_count"] == 0, report["failures"]
    assert target.proc.poll() is None and report["normal_after"]["status"] == 200


@HYPOTHESIS
@given(body=st.binary(max_size=4096))
def test_arbitrary_bodies(target, body):
    status, _, reply = target.post_clip(body, content_type="application/octet-stream")
    assert_contract(status, json.dumps(reply).encode() if isinstance(reply, dict) else reply)


@HYPOTHESIS
@given(query=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
                     max_size=300))
def test_arbitrary_query_strings(target, query):
    head = (f"POST /v1/liveness?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: 4\r\nConnection: close\r\n\r\nnope").encode()
    status, _, body = parse_reply(raw(target.host, target.port, head, timeout=10))
    assert_contract(status, body)


_HEADER_VALUE = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@HYPOTHESIS
@given(name=st.sampled_from([b"Content-Type", b"X-Request-Id", b"Expect", b"Authorization", b"Content-Length",
                             b"Transfer-Encoding", b"Connection", b"Host", b"X-Forwarded-For", b"Range"]),
       value=_HEADER_VALUE, method=st.sampled_from([b"POST", b"GET", b"PUT", b"HEAD", b"OPTIONS"]),
       path=st.sampled_from([b"/v1/liveness", b"/health", b"/metrics", b"/v1/detections/abc", b"/%00", b"//"]))
def test_arbitrary_header_values(target, name, value, method, path):
    head = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + name + b": " + value
            + b"\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
    reply = raw(target.host, target.port, head, timeout=10)
    status, headers, body = parse_reply(reply)
    if method == b"HEAD":  # no body, but never a 5xx either
        assert 200 <= status < 500, reply[:300]
        return
    if status == 200 and path == b"/metrics":
        assert body.startswith(b"# HELP")
    else:
        assert_contract(status, body)
    assert target.proc.poll() is None
