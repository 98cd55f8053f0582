"""Graph encoder of the feature embeddings V (MODEL.md §5)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.distributions import Normal

from mmaavi.nn import GraphEncoder
from mmaavi.nn.graph import signed_propagation

torch.set_num_threads(1)


def edges_from_pairs(pairs, weights=None, signs=None):
    """Edge tensors from directed (s, t) pairs."""
    index = torch.tensor(pairs, dtype=torch.long).T
    n = index.shape[1]
    weight = torch.ones(n) if weights is None else torch.tensor(weights, dtype=torch.float32)
    sign = torch.ones(n) if signs is None else torch.tensor(signs, dtype=torch.float32)
    return index, weight, sign


def two_cliques(size: int = 5):
    """Two disjoint cliques of ``size`` nodes, every ordered pair within a clique (self-loops too)."""
    pairs = []
    for offset in (0, size):
        nodes = range(offset, offset + size)
        pairs += list(itertools.product(nodes, nodes))
    return edges_from_pairs(pairs)


def edge_set(enc: GraphEncoder) -> set[tuple[int, int]]:
    return set(map(tuple, enc.edge_index.T.tolist()))


def test_reconstruction_loss_decreases_on_two_cliques():
    torch.manual_seed(0)
    index, weight, sign = two_cliques()
    enc = GraphEncoder(10, 4, index, weight, sign, n_negatives=5)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)

    def mean_loss() -> float:
        with torch.no_grad():
            q = enc()
            return float(
                torch.stack([enc.reconstruction_nll(q.rsample()) for _ in range(20)]).mean()
            )

    initial = mean_loss()
    for _ in range(200):
        q = enc()
        loss = enc.reconstruction_nll(q.rsample()) + 0.01 * enc.kl(q)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = mean_loss()

    assert final < 0.7 * initial, (initial, final)
    v = enc().loc.detach()
    gram = v @ v.T
    same = torch.zeros(10, 10, dtype=torch.bool)
    same[:5, :5] = same[5:, 5:] = True
    off_diag = ~torch.eye(10, dtype=torch.bool)
    assert gram[same & off_diag].mean() > gram[~same].mean()


def test_sample_edges_negatives_are_never_edges_and_labels_are_right():
    torch.manual_seed(1)
    # a sparse-ish random graph: a ring plus self-loops, both directions
    n = 12
    pairs = [(i, i) for i in range(n)]
    for i in range(n):
        pairs += [(i, (i + 1) % n), ((i + 1) % n, i)]
    enc = GraphEncoder(n, 3, *edges_from_pairs(pairs), n_negatives=10)
    edges = edge_set(enc)
    for _ in range(20):
        source, target, sign, label = enc.sample_edges()
        n_pos = enc.edge_weight.numel()
        assert label.dtype == sign.dtype and set(label.unique().tolist()) <= {0.0, 1.0}
        assert torch.all(label[:n_pos] == 1) and torch.all(label[n_pos:] == 0)
        assert int((label == 0).sum()) > 0
        for s, t, lab in zip(source.tolist(), target.tolist(), label.tolist()):
            assert ((s, t) in edges) == (lab == 1.0)


def test_negatives_keep_source_and_sign_of_their_positive():
    torch.manual_seed(2)
    pairs = [(i, i) for i in range(6)] + [(0, 1), (1, 0), (2, 3), (3, 2)]
    signs = [1.0] * 6 + [-1.0, -1.0, 1.0, 1.0]
    enc = GraphEncoder(6, 3, *edges_from_pairs(pairs, signs=signs), n_negatives=4)
    source, target, sign, label = enc.sample_edges()
    positives = {(s, t): g for s, t, g in zip(source.tolist(), target.tolist(), sign.tolist())}
    for s, t, g, lab in zip(source.tolist(), target.tolist(), sign.tolist(), label.tolist()):
        if lab == 1.0:
            assert g == enc.edge_sign[(enc.edge_index[0] == s) & (enc.edge_index[1] == t)].item()
        else:
            assert any(ps == s and pg == g for (ps, _), pg in positives.items())


def test_positive_edges_are_drawn_proportionally_to_weight():
    torch.manual_seed(3)
    pairs = [(i, i) for i in range(4)] + [(0, 1), (1, 0), (2, 3), (3, 2)]
    weights = [1.0] * 4 + [100.0, 100.0, 1.0, 1.0]
    enc = GraphEncoder(4, 2, *edges_from_pairs(pairs, weights=weights), n_negatives=1)
    heavy = light = 0
    for _ in range(300):
        source, target, _, label = enc.sample_edges()
        pos = label == 1
        s, t = source[pos], target[pos]
        heavy += int(((s == 0) & (t == 1) | (s == 1) & (t == 0)).sum())
        light += int(((s == 2) & (t == 3) | (s == 3) & (t == 2)).sum())
    # expected ratio 100:1 (about 2330 vs 23 draws)
    assert heavy > 30 * max(light, 1)
    assert light > 0


def test_sample_edges_terminates_on_a_complete_graph():
    torch.manual_seed(4)
    n = 5
    enc = GraphEncoder(n, 2, *edges_from_pairs(list(itertools.product(range(n), range(n)))))
    source, target, sign, label = enc.sample_edges()
    assert source.numel() == n * n  # positives only: every negative collided and was dropped
    assert torch.all(label == 1)
    v = torch.randn(n, 2)
    nll = enc.reconstruction_nll(v)
    assert torch.isfinite(nll)


def test_propagation_matches_dense_formula():
    torch.manual_seed(5)
    n = 6
    pairs = [(i, i) for i in range(n)] + [(0, 1), (1, 0), (0, 2), (2, 0), (3, 4), (4, 3), (5, 1)]
    weights = [1.0] * n + [2.0, 2.0, 0.5, 0.5, 3.0, 3.0, 1.5]
    signs = [1.0] * n + [-1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0]
    enc = GraphEncoder(n, 3, *edges_from_pairs(pairs, weights, signs))
    enc.table.data = torch.randn(n, 3)

    dense = torch.zeros(n, n)  # dense[t, s] = sign_st * w_st
    for (s, t), w, g in zip(pairs, weights, signs):
        dense[t, s] = g * w
    deg_in = torch.zeros(n)
    for (_, t), w in zip(pairs, weights):
        deg_in[t] += w
    expected = deg_in.pow(-0.5).unsqueeze(1) * (dense @ enc.table.data)

    got = signed_propagation(enc.table, enc.edge_index, enc.norm)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(enc.degree, deg_in)

    q = enc()
    torch.testing.assert_close(q.loc, enc.loc(expected), rtol=1e-5, atol=1e-6)
    assert torch.all(q.scale > 0)


def test_kl_of_v_is_zero_at_the_prior_and_positive_elsewhere():
    prior_like = Normal(torch.zeros(7, 3), torch.ones(7, 3))
    assert GraphEncoder.kl(prior_like).item() == pytest.approx(0.0, abs=1e-7)
    loc, scale = torch.full((7, 3), 0.5), torch.full((7, 3), 2.0)
    expected = 3 * (torch.log(torch.tensor(1 / 2.0)) + (4.0 + 0.25) / 2 - 0.5)
    assert GraphEncoder.kl(Normal(loc, scale)).item() == pytest.approx(expected.item(), rel=1e-5)
