import time

from liveness_edge.cache import DetectionCache, StoredDetection


def detection(**kw):
    base = dict(bbox=(1, 2, 3, 4), quality=0.9, liveness=0.97, frame_no=3, frame_ts=0.1, normalized_png=b"\x89PNG")
    base.update(kw)
    return StoredDetection.new(**base)


def test_put_get_roundtrip_and_survives_reopen(tmp_path):
    cache = DetectionCache(tmp_path, 100, 3600)
    det = detection()
    assert cache.put(det) == det.id and len(det.id) == 32
    assert cache.get(det.id) == det
    reopened = DetectionCache(tmp_path, 100, 3600)
    assert reopened.get(det.id) == det and len(reopened) == 1


def test_oldest_entries_go_beyond_max(tmp_path):
    cache = DetectionCache(tmp_path, 3, 3600)
    ids = [cache.put(detection(frame_no=i)) for i in range(5)]
    assert len(cache) == 3
    assert cache.get(ids[0]) is None and cache.get(ids[1]) is None
    assert all(cache.get(i) is not None for i in ids[2:])


def test_expired_entries_are_not_returned(tmp_path):
    cache = DetectionCache(tmp_path, 10, 0.2)
    det = cache.put(detection())
    time.sleep(0.3)
    assert cache.get(det) is None


def test_unknown_id_is_none(tmp_path):
    assert DetectionCache(tmp_path, 10, 10).get("0" * 32) is None
