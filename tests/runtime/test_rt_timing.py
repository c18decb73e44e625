"""kaiodsl.runtime.timing's rotation helpers (the GPU timers themselves run in the benchmarks)."""

import pytest

from kaiodsl.runtime.timing import cold_copies, rotating


def test_rotating_runs_the_calls_in_turn():
    seen = []
    run = rotating([lambda i=i: seen.append(i) or i for i in range(3)])
    assert [run() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert seen == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="at least one call"):
        rotating([])


def test_cold_copies_hold_the_factor_of_the_l2():
    torch = pytest.importorskip("torch")
    a, b = torch.arange(1000, dtype=torch.float32), torch.ones(250, dtype=torch.int8)     # 4250 bytes
    sets = cold_copies([a, b], factor=3, l2_bytes=10_000)
    assert len(sets) == 8                                   # ceil(30000 / 4250)
    assert sets[0][0] is a and sets[0][1] is b
    for c in sets[1:]:
        assert all(torch.equal(x, y) and x.data_ptr() != y.data_ptr() for x, y in zip(c, (a, b)))
    assert len(cold_copies([a], factor=3, l2_bytes=100)) == 1            # already several times the cache
