"""Per-anchor sampling of positives (SPEC U3) and the GCD labelled neighbours (SPEC U4, U7-7)."""
import numpy as np

from dist_cluster.methods.unic.pairs import LabelledSets, gcd_split, pick, positives, uniforms


def test_uniforms_depend_only_on_seed_epoch_index_stream_draw():
    idx = np.arange(1000)
    u = uniforms(3, 7, idx, 1)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    # the same anchor gets the same number whatever batch it sits in
    assert np.array_equal(uniforms(3, 7, idx[::-1], 1), u[::-1])
    assert np.array_equal(uniforms(3, 7, [42], 1), u[[42]])
    for other in (uniforms(4, 7, idx, 1), uniforms(3, 8, idx, 1), uniforms(3, 7, idx, 2), uniforms(3, 7, idx, 1, 1)):
        assert np.mean(other == u) < 0.01
    # roughly uniform over a small range
    counts = np.bincount(pick(uniforms(0, 0, np.arange(20000), 1), 10), minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200


def test_positives_are_drawn_from_the_clean_set_and_self_when_dropped():
    n, tau1 = 50, 5
    rng = np.random.default_rng(0)
    nbrs = np.stack([np.r_[i, rng.choice(np.setdiff1d(np.arange(n), [i]), tau1 - 1, replace=False)]
                     for i in range(n)])
    clean = np.arange(n) % 3 != 0
    seen = {i: set() for i in range(n)}
    for epoch in range(60):
        p = positives(1, epoch, np.arange(n), nbrs, clean)
        for i, j in enumerate(p):
            seen[i].add(int(j))
    for i in range(n):
        if clean[i]:
            assert seen[i] == set(nbrs[i].tolist())      # every member of N(x_i) (self included) is reached
        else:
            assert seen[i] == {i}


def test_gcd_split_takes_the_fraction_of_old_classes_only():
    labels = np.repeat(np.arange(10), 30)
    mask = gcd_split(labels, (0, 1, 2, 3, 4), 0.5, seed=0)
    assert np.array_equal(np.bincount(labels[mask], minlength=10), [15] * 5 + [0] * 5)
    assert np.array_equal(mask, gcd_split(labels, (4, 3, 2, 1, 0), 0.5, seed=0))
    assert not np.array_equal(mask, gcd_split(labels, (0, 1, 2, 3, 4), 0.5, seed=1))


def test_labelled_anchors_get_same_class_positives_and_other_class_labelled_negatives():
    labels = np.repeat(np.arange(6), 20)
    mask = gcd_split(labels, (0, 1, 2), 0.5, seed=0)
    sets = LabelledSets.build(labels, mask)
    assert (sets.labels[~mask] == -1).all()
    anchors = np.flatnonzero(mask)
    reached_same, reached_other = set(), set()
    for epoch in range(100):
        u = uniforms(0, epoch, anchors, 1)
        same, other = sets.same_class(anchors, u), sets.other_class(anchors, u)
        assert mask[same].all() and (labels[same] == labels[anchors]).all()
        assert mask[other].all() and (labels[other] != labels[anchors]).all()
        reached_same.update(same.tolist())
        reached_other.update(other.tolist())
    assert reached_same == reached_other == set(anchors.tolist())


def test_gcd_positives_mix_labelled_and_mined():
    labels = np.repeat(np.arange(4), 10)
    mask = gcd_split(labels, (0, 1), 0.5, seed=0)
    sets = LabelledSets.build(labels, mask)
    nbrs = np.tile(np.arange(40)[:, None], (1, 3))          # mined sets hold only self
    p = positives(0, 0, np.arange(40), nbrs, np.ones(40, bool), sets)
    assert np.array_equal(p[~mask], np.arange(40)[~mask])
    assert (labels[p[mask]] == labels[mask]).all() and mask[p[mask]].all()
    p_mined = positives(0, 0, np.arange(40), nbrs, np.ones(40, bool), sets, labelled_positives=False)
    assert np.array_equal(p_mined, np.arange(40))
