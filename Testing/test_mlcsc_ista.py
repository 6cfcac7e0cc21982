"""ML-CSC layers against an independent ISTA solve: dense dictionary matrices built in numpy, plain ISTA / FISTA loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from LesionXAILib.models.mlcsc import CSCLayer, MLCSCSegmenter, soft_threshold


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense_dictionary(weight: np.ndarray, grid: tuple[int, int, int], stride: int) -> np.ndarray:
    """Return D as a (signal, code) matrix: atom a placed at code position o covers voxel o*stride - pad + offset."""
    atoms, channels, k = weight.shape[0], weight.shape[1], weight.shape[2]
    pad = k // 2
    code_grid = tuple((n + 2 * pad - k) // stride + 1 for n in grid)
    n_signal = channels * int(np.prod(grid))
    n_code = atoms * int(np.prod(code_grid))
    d = np.zeros((n_signal, n_code))
    for a, o in itertools.product(range(atoms), itertools.product(*(range(n) for n in code_grid))):
        col = np.ravel_multi_index((a, *o), (atoms, *code_grid))
        for c, off in itertools.product(range(channels), itertools.product(range(k), repeat=3)):
            v = tuple(oi * stride - pad + di for oi, di in zip(o, off))
            if all(0 <= vi < n for vi, n in zip(v, grid)):
                d[np.ravel_multi_index((c, *v), (channels, *grid)), col] += weight[(a, c, *off)]
    return d


def ista(d: np.ndarray, y: np.ndarray, lam: np.ndarray, step: float, iterations: int) -> np.ndarray:
    """Return ISTA's code after ``iterations`` steps from 0 for min 1/2||y - Dg||^2 + sum lam_i |g_i| (step = 1/L)."""
    g = np.zeros(d.shape[1])
    for _ in range(iterations):
        z = g + step * d.T @ (y - d @ g)
        g = np.sign(z) * np.maximum(np.abs(z) - step * lam, 0.0)
    return g


def fista(d: np.ndarray, y: np.ndarray, lam: np.ndarray, step: float, iterations: int) -> np.ndarray:
    """Return FISTA's (Beck & Teboulle 2009) code after ``iterations`` steps: the converged reference."""
    g = np.zeros(d.shape[1])
    z, t = g.copy(), 1.0
    for _ in range(iterations):
        u = z + step * d.T @ (y - d @ z)
        g_new = np.sign(u) * np.maximum(np.abs(u) - step * lam, 0.0)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = g_new + (t - 1) / t_new * (g_new - g)
        g, t = g_new, t_new
    return g


def layer_with(in_channels: int, atoms: int, stride: int, iterations: int, seed: int) -> tuple[CSCLayer, np.ndarray]:
    torch.manual_seed(seed)
    layer = CSCLayer(in_channels, atoms, kernel_size=3, stride=stride, iterations=iterations).double()
    return layer, layer.weight.detach().numpy().copy()


@pytest.mark.parametrize("stride,grid", [(1, (4, 4, 5)), (2, (6, 4, 4))])
def test_unfolded_layer_equals_direct_ista(stride, grid):
    layer, w = layer_with(in_channels=2, atoms=3, stride=stride, iterations=2000, seed=stride)
    d = dense_dictionary(w, grid, stride)
    lipschitz = np.linalg.eigvalsh(d.T @ d).max()
    rng = np.random.default_rng(7)
    y = rng.normal(size=d.shape[0])
    lam = np.array([0.3, 0.1, 0.5])
    code_shape = (3, *[(n - 1) // stride + 1 for n in grid])
    lam_full = np.repeat(lam, int(np.prod(code_shape[1:])))
    with torch.no_grad():
        layer.step.fill_(1.0 / lipschitz)
        layer.threshold.copy_(torch.from_numpy(lam / lipschitz))
        got = layer(torch.from_numpy(y.reshape(1, 2, *grid))).numpy().ravel()
    want = ista(d, y, lam_full, 1.0 / lipschitz, 2000)
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=1e-7)
    # and both solve the lasso: FISTA converged, and the KKT conditions of the optimum hold
    solution = fista(d, y, lam_full, 1.0 / lipschitz, 5000)
    np.testing.assert_allclose(got, solution, atol=2e-3)
    grad = d.T @ (d @ solution - y)
    active = np.abs(solution) > 1e-8
    np.testing.assert_allclose(grad[active], -lam_full[active] * np.sign(solution[active]), atol=1e-5)
    assert np.all(np.abs(grad[~active]) <= lam_full[~active] + 1e-5)
    assert active.sum() < active.size  # the l1 term really sparsifies


def test_few_unfolded_steps_equal_as_many_ista_steps():
    layer, w = layer_with(in_channels=1, atoms=4, stride=1, iterations=3, seed=3)
    grid = (4, 5, 4)
    d = dense_dictionary(w, grid, 1)
    y = np.random.default_rng(1).normal(size=d.shape[0])
    with torch.no_grad():
        layer.step.fill_(0.05)
        layer.threshold.copy_(torch.tensor([0.02, 0.0, 0.05, 0.1], dtype=torch.float64))
        got = layer(torch.from_numpy(y.reshape(1, 1, *grid))).numpy().ravel()
    lam = np.repeat([0.02, 0.0, 0.05, 0.1], int(np.prod(grid))) / 0.05
    np.testing.assert_allclose(got, ista(d, y, lam, 0.05, 3), atol=1e-12)


def test_synthesis_is_the_adjoint_of_analysis():
    layer, w = layer_with(in_channels=3, atoms=2, stride=2, iterations=1, seed=5)
    rng = np.random.default_rng(2)
    y = torch.from_numpy(rng.normal(size=(1, 3, 6, 8, 4)))
    g = torch.from_numpy(rng.normal(size=(1, 2, 3, 4, 2)))
    with torch.no_grad():
        lhs = (layer.analysis(y) * g).sum()
        rhs = (y * layer.synthesis(g, y.shape[2:])).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)


def test_soft_threshold_is_the_l1_prox():
    z = torch.linspace(-2, 2, 41, dtype=torch.float64)
    theta = torch.tensor(0.5, dtype=torch.float64)
    out = soft_threshold(z, theta)
    assert torch.all(out[z.abs() <= 0.5] == 0)
    np.testing.assert_allclose(out[z > 0.5].numpy(), (z[z > 0.5] - 0.5).numpy())
    np.testing.assert_allclose(out[z < -0.5].numpy(), (z[z < -0.5] + 0.5).numpy())
    # prox property by brute force: argmin_u 1/2(u - z)^2 + theta|u| over a fine grid
    grid = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    for value in (-1.3, -0.2, 0.0, 0.4, 1.7):
        objective = 0.5 * (grid - value) ** 2 + 0.5 * grid.abs()
        assert float(soft_threshold(torch.tensor(value, dtype=torch.float64), theta)) == pytest.approx(float(grid[objective.argmin()]), abs=1e-4)


def test_larger_thresholds_give_sparser_codes():
    torch.manual_seed(0)
    layer = CSCLayer(1, 6, iterations=5)
    x = torch.randn(1, 1, 8, 8, 8)
    counts = []
    with torch.no_grad():
        for t in (0.0, 0.05, 0.2, 1.0):
            layer.threshold.fill_(t)
            counts.append(int((layer(x) != 0).sum()))
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]


def test_segmenter_codes_are_layered_ista():
    torch.manual_seed(1)
    net = MLCSCSegmenter(in_channels=2, atoms=(2, 3), iterations=2, hidden=4).double()
    x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        codes = net.codes(x)
    grid = (4, 4, 4)
    first = []
    for m, layer in enumerate(net.modality_layers):
        d = dense_dictionary(layer.weight.detach().numpy(), grid, 1)
        lam = np.repeat(torch.relu(layer.threshold).detach().numpy(), 64) / float(layer.step.detach())
        first.append(ista(d, x[0, m].numpy().ravel(), lam, float(layer.step.detach()), 2))
        np.testing.assert_allclose(codes[0][m].numpy().ravel(), first[-1], atol=1e-12)
    joint = net.joint_layers[0]
    d2 = dense_dictionary(joint.weight.detach().numpy(), grid, 2)
    lam2 = np.repeat(torch.relu(joint.threshold).detach().numpy(), 8) / float(joint.step.detach())
    want = ista(d2, np.concatenate(first), lam2, float(joint.step.detach()), 2)
    np.testing.assert_allclose(codes[1][0].numpy().ravel(), want, atol=1e-12)
