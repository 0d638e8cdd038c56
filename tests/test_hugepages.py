"""Large work buffers ask Linux for transparent huge pages before they are first written."""
import sys

import torch

from dist_cluster import hugepages


def _thp_mode() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "absent"
    return text[text.index("[") + 1:text.index("]")]


def _mapping(ptr: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping that holds address ptr."""
    fields, inside = {}, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                if inside:
                    break
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= ptr < hi
            elif inside:
                fields[head.rstrip(":")] = line.split(":", 1)[1].strip()
    return fields


def test_a_large_buffer_is_advised_huge_before_it_is_written():
    """The advice is what the code controls: its mapping carries the kernel's huge-page-advised flag ("hg").
    Whether 2 MiB pages are then granted depends on free contiguous memory at that moment (a busy machine may
    have none), so the pages themselves are only checked where THP is off: none there."""
    t = hugepages.empty((64 << 20) // 4, torch.float32)
    assert t.shape == ((64 << 20) // 4,) and t.dtype == torch.float32
    t.fill_(1.0)                                   # first touch, after the advice
    if not sys.platform.startswith("linux"):
        assert not hugepages.advise(t)
        return
    inner, mode = _mapping(t.data_ptr() + (32 << 20)), _thp_mode()
    assert ("hg" in inner["VmFlags"].split()) == (mode != "absent"), (mode, inner["VmFlags"])   # absent: EINVAL
    if mode in ("never", "absent"):
        assert inner["AnonHugePages"].split()[0] == "0"


def test_small_buffers_and_other_devices_are_left_alone():
    assert not hugepages.advise(torch.empty(1000))
    assert hugepages.empty((10, 3), torch.float64).shape == (10, 3)
    if torch.cuda.is_available():
        assert not hugepages.advise(torch.empty(hugepages.MIN_BYTES, dtype=torch.uint8, device="cuda"))


def test_the_kmeans_copy_asks_for_them(monkeypatch):
    """LloydPass's centred copy goes through hugepages.empty (the set-up cost it saves is in the README)."""
    from dist_cluster.clustering.lloyd_pass import LloydPass
    asked = []
    real = hugepages.empty
    monkeypatch.setattr(hugepages, "empty", lambda *a, **k: asked.append(a[0]) or real(*a, **k))
    x = torch.randn(300, 200)
    with LloydPass(x, 4, mu=x.double().mean(0)) as fused:
        assert tuple(asked[0]) == (300, 200) and fused.x.shape == (300, 200)
