import time

from liveness_edge.cache import DetectionCache, StoredDetection


MARK = b"\x89PNG-face-crop-bytes-0123456789"  # stands for a crop: findable in the database files


def detection(**kw):
    base = dict(bbox=(1, 2, 3, 4), quality=0.9, liveness=0.97, frame_no=3, frame_ts=0.1, normalized_png=MARK)
    base.update(kw)
    return StoredDetection.new(**base)


def test_put_get_roundtrip_and_survives_reopen(tmp_path):
    cache = DetectionCache(tmp_path, 100, 3600)
    det = detection()
    assert cache.put(det) == det.id and len(det.id) == 32
    assert cache.get(det.id) == det
    reopened = DetectionCache(tmp_path, 100, 3600)
    assert reopened.get(det.id) == det and reopened.count() == 1


def test_oldest_entries_go_beyond_max(tmp_path):
    cache = DetectionCache(tmp_path, 3, 3600)
    ids = [cache.put(detection(frame_no=i)) for i in range(5)]
    assert cache.count() == 3
    assert cache.get(ids[0]) is None and cache.get(ids[1]) is None
    assert all(cache.get(i) is not None for i in ids[2:])


def rows_on_disk(tmp_path) -> int:
    import sqlite3

    with sqlite3.connect(tmp_path / "detections.sqlite3") as conn:
        return conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0]


def test_expired_entries_are_not_returned_counted_or_kept(tmp_path):
    cache = DetectionCache(tmp_path, 10, 0.2)
    det = cache.put(detection())
    time.sleep(0.3)
    assert cache.get(det) is None and cache.count() == 0  # /health and /metrics count what can still be read
    assert rows_on_disk(tmp_path) == 1  # until a purge: the server runs one a minute, without waiting for a store
    assert cache.purge_expired() == 1 and rows_on_disk(tmp_path) == 0
    # ... and its bytes too: not left in the write-ahead log or in a free page until some later checkpoint
    files = [p for p in tmp_path.iterdir() if p.name.startswith("detections.sqlite3")]
    assert files and not any(MARK in p.read_bytes() for p in files)
    cache.put(detection())
    time.sleep(0.3)
    DetectionCache(tmp_path, 10, 0.2)  # and a restart purges too
    assert rows_on_disk(tmp_path) == 0


def test_a_full_disk_is_storage_unavailable_not_a_crash(tmp_path):
    import pytest

    from liveness_edge.errors import StorageUnavailable
    from liveness_edge.http.errors import status_of

    cache = DetectionCache(tmp_path, 10, 3600)
    stored = cache.put(detection())
    conn = cache._conn()  # this thread's connection: cap the file at its current size (SQLite's "disk is full")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(StorageUnavailable, match="cannot store the face: database or disk is full") as err:
        cache.put(detection(normalized_png=b"\0" * 200_000))
    assert err.value.code == "STORAGE_UNAVAILABLE" and status_of(err.value) == 503
    assert str(tmp_path) not in err.value.desc  # the client is not told where the box keeps its files
    assert err.value.param == "return_detection"
    assert cache.get(stored) is not None and cache.count() == 1  # what was stored before is untouched


def test_unknown_id_is_none(tmp_path):
    assert DetectionCache(tmp_path, 10, 10).get("0" * 32) is None
