"""Each piece of re-parameterization math, checked for exact equivalence in float64."""

import pytest
import torch
import torch.nn.functional as F

from rt4ksr.models import fusion
from rt4ksr.models.layers import pad_with_bias

torch.manual_seed(0)
D = torch.float64


def conv(x, wb, groups=1):
    w, b = wb
    return F.conv2d(x, w, b, padding=w.shape[-1] // 2, groups=groups)


def rand_conv(cout, cin, k):
    return torch.randn(cout, cin, k, k, dtype=D), torch.randn(cout, dtype=D)


def test_pad_kernel_centres_1x1():
    w = torch.randn(4, 3, 1, 1, dtype=D)
    p = fusion.pad_kernel(w, 3)
    assert p.shape == (4, 3, 3, 3)
    x = torch.randn(2, 3, 9, 11, dtype=D)
    torch.testing.assert_close(F.conv2d(x, p, padding=1), F.conv2d(x, w), rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        fusion.pad_kernel(torch.randn(1, 1, 2, 2), 3)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("k", [1, 3])
def test_identity_kernel_returns_input(k, groups):
    x = torch.randn(2, 8, 7, 5, dtype=D)
    w = fusion.identity_kernel(8, k, groups, like=x)
    torch.testing.assert_close(F.conv2d(x, w, padding=k // 2, groups=groups), x, rtol=0, atol=0)


def test_fuse_parallel_sums_branches():
    x = torch.randn(2, 5, 8, 9, dtype=D)
    a, b = rand_conv(6, 5, 3), rand_conv(6, 5, 1)
    fused = fusion.fuse_parallel(a, b)
    torch.testing.assert_close(conv(x, fused), conv(x, a) + conv(x, b), rtol=0, atol=1e-12)


def test_fuse_1x1_kxk_exact_with_bias_padding():
    x = torch.randn(2, 5, 7, 10, dtype=D)
    first, second = rand_conv(12, 5, 1), rand_conv(4, 12, 3)
    y = conv(x, first)
    ref = F.conv2d(pad_with_bias(y, first[1]), *second)
    torch.testing.assert_close(conv(x, fusion.fuse_1x1_kxk(first, second)), ref, rtol=0, atol=1e-11)


def test_fuse_1x1_kxk_is_not_exact_with_zero_padding():
    # the reason the released block pads with the bias: zero padding breaks the identity at the borders
    x = torch.randn(1, 3, 6, 6, dtype=D)
    first, second = rand_conv(6, 3, 1), rand_conv(3, 6, 3)
    ref = conv(conv(x, first), second)
    fused = conv(x, fusion.fuse_1x1_kxk(first, second))
    torch.testing.assert_close(fused[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], rtol=0, atol=1e-11)
    assert (fused - ref).abs().max() > 1e-3


def test_fuse_kxk_1x1():
    x = torch.randn(2, 5, 7, 6, dtype=D)
    first, second = rand_conv(9, 5, 3), rand_conv(4, 9, 1)
    torch.testing.assert_close(conv(x, fusion.fuse_kxk_1x1(first, second)), conv(conv(x, first), second),
                               rtol=0, atol=1e-11)


def test_fuse_sequence_1x1_3x3_1x1():
    x = torch.randn(2, 4, 9, 7, dtype=D)
    a, b, c = rand_conv(8, 4, 1), rand_conv(8, 8, 3), rand_conv(4, 8, 1)
    ref = conv(F.conv2d(pad_with_bias(conv(x, a), a[1]), *b), c)
    torch.testing.assert_close(conv(x, fusion.fuse_sequence(a, b, c)), ref, rtol=0, atol=1e-11)
    with pytest.raises(ValueError, match="only one"):
        fusion.fuse_sequence(rand_conv(4, 4, 3), rand_conv(4, 4, 3))


def test_scale_conv():
    x = torch.randn(2, 4, 5, 5, dtype=D)
    c, s = rand_conv(6, 4, 1), torch.randn(1, 6, 1, 1, dtype=D)
    torch.testing.assert_close(conv(x, fusion.scale_conv(c, s)), conv(x, c) * s, rtol=0, atol=1e-12)


def test_pad_with_bias_values_and_gradient():
    x = torch.randn(1, 2, 3, 4, dtype=D, requires_grad=True)
    b = torch.tensor([1.5, -2.0], dtype=D, requires_grad=True)
    y = pad_with_bias(x, b)
    assert y.shape == (1, 2, 5, 6)
    assert torch.equal(y[:, :, 1:-1, 1:-1], x)
    assert (y[0, 0, 0] == 1.5).all() and (y[0, 1, :, 0] == -2.0).all()
    y.sum().backward()
    assert torch.equal(b.grad, torch.tensor([18.0, 18.0], dtype=D))  # 5*6 - 3*4 border pixels each
