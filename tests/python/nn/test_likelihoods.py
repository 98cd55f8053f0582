"""Observation models (MODEL.md §6) against scipy's reference log-densities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit
from torch.distributions import NegativeBinomial

from mmaavi.nn import ZeroInflatedNegativeBinomial, build_likelihood, nb_from_mean
from mmaavi.nn.decoders import HybridDecoder
from mmaavi.nn.likelihoods import SparseCounts, nb_log_likelihood

MEANS = [0.05, 0.7, 3.0, 25.0, 400.0]
THETAS = [0.1, 1.0, 4.0, 50.0]
XS = [0, 1, 2, 5, 17, 120]


def grid():
    mean, theta, x = np.meshgrid(MEANS, THETAS, XS, indexing="ij")
    return mean.ravel(), theta.ravel(), x.ravel().astype(float)


def t32(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def test_nb_from_mean_matches_scipy():
    mean, theta, x = grid()
    got = nb_from_mean(t32(mean), t32(theta)).log_prob(t32(x)).double().numpy()
    want = stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mean))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_sparse_nb_log_prob_and_gradients_equal_torch_dense_formula():
    """The lgamma-at-non-zeros shortcut changes cost, not values: same log-probabilities and
    the same gradients as torch's dense NegativeBinomial on a mostly-zero count matrix."""
    gen = torch.Generator().manual_seed(0)
    mean = torch.rand(40, 300, generator=gen) * 5
    theta = torch.rand(40, 300, generator=gen) * 3 + 0.1
    counts = torch.poisson(mean, generator=gen)
    x = counts * (torch.rand(40, 300, generator=gen) < 0.1)
    grads = []
    for dense in (False, True):
        m, t = mean.clone().requires_grad_(), theta.clone().requires_grad_()
        sparse = nb_from_mean(m, t)
        dist = NegativeBinomial(t, logits=sparse.logits) if dense else sparse
        lp = dist.log_prob(x)
        lp.sum().backward()
        grads.append((lp.detach(), m.grad, t.grad))
    for got, want in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_nb_from_mean_has_the_given_mean_and_variance():
    mean, theta = t32([0.5, 3.0, 40.0]), t32([0.2, 1.0, 9.0])
    dist = nb_from_mean(mean, theta)
    torch.testing.assert_close(dist.mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dist.variance, mean + mean**2 / theta, rtol=1e-4, atol=1e-6)


def test_nb_zero_mean_puts_mass_at_zero():
    dist = nb_from_mean(t32([0.0, 0.0]), t32([1.0, 5.0]))
    lp = dist.log_prob(t32([0.0, 3.0]))
    assert torch.isfinite(lp).all()
    assert lp[0] > -1e-6 and lp[1] < -30


def test_bernoulli_matches_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 5))
    x = (rng.random((6, 5)) < 0.5).astype(float)
    ones = torch.ones(6, 1)
    zeros = torch.zeros(6, 5)
    dist = build_likelihood("bernoulli", t32(logits), ones, zeros, zeros)
    want = stats.bernoulli.logpmf(x, expit(logits))
    np.testing.assert_allclose(dist.log_prob(t32(x)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_normal_matches_scipy():
    rng = np.random.default_rng(1)
    loc, log_sd, x = rng.normal(size=(3, 4, 7))
    dist = build_likelihood("normal", t32(loc), torch.ones(4, 1), t32(log_sd), torch.zeros(4, 7))
    want = stats.norm.logpdf(x, loc=loc, scale=np.exp(log_sd))
    np.testing.assert_allclose(dist.log_prob(t32(x)).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("zi_logit", [-4.0, 0.0, 2.5])
def test_zinb_matches_mixture_formula(zi_logit):
    mean, theta, x = grid()
    pi = expit(zi_logit)
    zinb = ZeroInflatedNegativeBinomial(t32(mean), t32(theta), torch.full((len(x),), zi_logit))
    got = zinb.log_prob(t32(x)).double().numpy()
    nb = stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mean))
    want = np.where(x == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log1p(-pi) + nb)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(zinb.mean, t32((1 - pi) * mean), rtol=1e-5, atol=1e-6)


def test_zinb_through_build_likelihood():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    lib = torch.tensor([[10.0]])
    log_theta = torch.tensor([[0.1, 0.5, -0.3]])
    zi = torch.tensor([[-1.0, 0.0, 1.0]])
    dist = build_likelihood("zinb", logits, lib, log_theta, zi)
    assert isinstance(dist, ZeroInflatedNegativeBinomial)
    mean = (torch.softmax(logits, -1) * lib).double().numpy()
    theta = log_theta.exp().double().numpy()
    pi = expit(zi.double().numpy())
    x = np.array([[0.0, 2.0, 7.0]])
    nb = stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mean))
    want = np.where(x == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log1p(-pi) + nb)
    np.testing.assert_allclose(dist.log_prob(t32(x)).numpy(), want, rtol=1e-5, atol=1e-4)


def test_nb_means_sum_to_library():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=gen) * 2
    lib = torch.tensor([[1.0], [10.0], [123.0], [5000.0]])
    zeros = torch.zeros(4, 6)
    dist = build_likelihood("nb", logits, lib, zeros, zeros)
    torch.testing.assert_close(dist.mean.sum(1, keepdim=True), lib, rtol=1e-5, atol=1e-5)


def test_nb_feature_mask_spreads_library_over_measured_features():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, generator=gen)
    lib = torch.tensor([[20.0], [7.0], [300.0]])
    fmask = torch.tensor(
        [[True] * 6, [True, True, False, False, True, False], [False, True, True, True, True, True]]
    )
    zeros = torch.zeros(3, 6)
    dist = build_likelihood("nb", logits, lib, zeros, zeros, feature_mask=fmask)
    mean = dist.mean
    torch.testing.assert_close((mean * fmask).sum(1, keepdim=True), lib, rtol=1e-5, atol=1e-4)
    assert torch.all(mean[~fmask] < 1e-6)
    # the measured proportions are the softmax over the measured features only
    row = 1
    sel = fmask[row]
    torch.testing.assert_close(
        mean[row, sel], torch.softmax(logits[row, sel], 0) * lib[row], rtol=1e-5, atol=1e-5
    )


def test_unknown_likelihood_raises():
    z = torch.zeros(2, 3)
    with pytest.raises(
        ValueError, match=r"Unknown likelihood 'poisson'.*nb, zinb, bernoulli, normal"
    ):
        build_likelihood("poisson", z, torch.ones(2, 1), z, z)


@pytest.mark.parametrize("masked", [False, True])
def test_nb_log_likelihood_equals_summed_log_prob(masked):
    """The training loss's fused NB path gives the per-cell sum of the distribution's
    log-probabilities over measured features, including a cell with library size 0."""
    gen = torch.Generator().manual_seed(1)
    n, f = 30, 200
    logits = torch.randn(n, f, generator=gen) * 2
    library = torch.randint(0, 500, (n, 1), generator=gen).float()
    library[0] = 0.0
    log_theta = torch.randn(n, f, generator=gen)
    mask = torch.rand(n, f, generator=gen) < 0.8 if masked else None
    x = torch.poisson(torch.softmax(logits, 1) * library, generator=gen)
    x = x * (torch.rand(n, f, generator=gen) < 0.5)
    got = nb_log_likelihood(x, logits, library, log_theta, mask)
    dist = build_likelihood("nb", logits, library, log_theta, torch.zeros(n, f), mask)
    want = dist.log_prob(x if mask is None else x * mask)
    want = (want if mask is None else want * mask).sum(dim=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def _sparse(x: torch.Tensor) -> SparseCounts:
    rows, cols = torch.nonzero(x, as_tuple=True)
    return SparseCounts(rows, cols, x[rows, cols], x.shape[0])


def test_sparse_counts_operations_equal_the_dense_ones():
    gen = torch.Generator().manual_seed(2)
    x = torch.poisson(torch.full((12, 40), 0.3), generator=gen)
    x[3] = 0.0  # an empty row
    sx = _sparse(x)
    assert torch.equal(sx.to_dense(40), x)
    assert torch.equal(sx.row_sums(), x.sum(dim=1, keepdim=True))
    positions = torch.tensor([0, 3, 4, 9, 11])
    assert torch.equal(sx.select_rows(positions).to_dense(40), x.index_select(0, positions))
    mask = torch.rand(12, 40, generator=gen) < 0.7
    assert torch.equal(sx.measured(mask).to_dense(40), x * mask)


@pytest.mark.parametrize("masked", [False, True])
def test_nb_log_likelihood_of_sparse_counts_equals_dense_bit_for_bit(masked):
    gen = torch.Generator().manual_seed(3)
    n, f = 25, 300
    logits = torch.randn(n, f, generator=gen, requires_grad=True)
    log_theta = torch.randn(n, f, generator=gen)
    x = torch.poisson(torch.full((n, f), 0.2), generator=gen)
    mask = torch.rand(n, f, generator=gen) < 0.8 if masked else None
    library = (x if mask is None else x * mask).sum(dim=1, keepdim=True)
    dense = nb_log_likelihood(x, logits, library, log_theta, mask)
    (grad_dense,) = torch.autograd.grad(dense.sum(), logits)
    sparse = nb_log_likelihood(_sparse(x), logits, library, log_theta, mask)
    (grad_sparse,) = torch.autograd.grad(sparse.sum(), logits)
    assert torch.equal(sparse, dense) and torch.equal(grad_sparse, grad_dense)


@pytest.mark.parametrize("likelihood", ["nb", "bernoulli", "zinb"])
def test_decoder_reads_sparse_counts_as_the_dense_ones(likelihood):
    """Every likelihood of the hybrid decoder gives the same log-likelihood from SparseCounts
    (the NB path reads the entries, the others densify them) as from the dense counts."""
    torch.manual_seed(0)
    decoder = HybridDecoder(n_latent=4, n_features=50, n_batches=2, likelihood=likelihood).eval()
    gen = torch.Generator().manual_seed(4)
    z, v = torch.randn(8, 4, generator=gen), torch.randn(50, 4, generator=gen)
    batch = torch.tensor([0, 1] * 4)
    x = torch.poisson(torch.full((8, 50), 0.5), generator=gen)
    library = x.sum(dim=1, keepdim=True)
    dense = decoder.log_likelihood(x, z, v, batch, library)
    sparse = decoder.log_likelihood(_sparse(x), z, v, batch, library)
    assert torch.equal(sparse, dense)
