"""NegativePool: refresh arithmetic, schedule, buffers, state, against hand-computed values."""
import pytest
import torch
from torch import nn

from mclir_basicsr.history import NegativePool, NegativePoolStateError


class Tiny(nn.Module):
    def __init__(self, value=0.0):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=True)
        self.bn = nn.BatchNorm2d(1)
        nn.init.constant_(self.conv.weight, value)
        nn.init.constant_(self.conv.bias, value)

    def forward(self, x):
        return self.bn(self.conv(x))


def fill(net, value, buffer_value=None, batches=0):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
        net.bn.running_mean.fill_(value if buffer_value is None else buffer_value)
        net.bn.num_batches_tracked.fill_(batches)
    return net


def w(net):
    return net.conv.weight.item()


def test_init_blend_with_fresh_copy():
    net = fill(Tiny(), 1.0)
    pool = NegativePool(net, [1, 2], [0.5, 0.5], init_decay=0.25, make_fresh=lambda: fill(Tiny(), 5.0))
    # theta_neg = 0.25 * fresh + 0.75 * theta = 0.25 * 5 + 0.75 * 1 = 2.0
    for neg in pool.negatives:
        assert w(neg) == pytest.approx(2.0)
        assert neg.bn.running_mean.item() == pytest.approx(2.0)  # buffers blended too


def test_init_decay_zero_copies_and_needs_no_fresh():
    net = fill(Tiny(), 3.0)
    pool = NegativePool(net, [1], [0.5], init_decay=0.0)
    assert w(pool.negatives[0]) == 3.0
    assert pool.negatives[0] is not net


def test_refresh_schedule_and_decays_hand_computed():
    net = fill(Tiny(), 0.0)
    pool = NegativePool(net, [2, 3], [0.5, 0.25], init_decay=0.0)
    history = []
    for it, value in zip(range(1, 7), [4.0, 8.0, 16.0, 32.0, 64.0, 128.0]):
        fill(net, value, batches=it)
        pool.step(it, net)
        history.append((w(pool.negatives[0]), w(pool.negatives[1])))
    # neg0 (every 2, decay .5): it2: .5*0+.5*8=4; it4: .5*4+.5*32=18; it6: .5*18+.5*128=73
    # neg1 (every 3, decay .25): it3: .25*0+.75*16=12; it6: .25*12+.75*128=99
    assert history == [(0, 0), (4, 0), (4, 12), (18, 12), (18, 12), (73, 99)]
    assert pool.refreshes == [3, 2]
    # integer buffers are copied, not blended
    assert pool.negatives[0].bn.num_batches_tracked.item() == 6
    assert pool.negatives[1].bn.num_batches_tracked.item() == 6


def test_buffers_follow_the_network():
    net = fill(Tiny(), 0.0, buffer_value=0.0)
    pool = NegativePool(net, [1], [0.5], init_decay=0.0)
    fill(net, 0.0, buffer_value=2.0)
    pool.step(1, net)
    assert pool.negatives[0].bn.running_mean.item() == pytest.approx(1.0)


def test_foreach_refresh_equals_reference_formula():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 3))
    pool = NegativePool(net, [1], [0.3], init_decay=0.0)
    ref = {k: v.clone() for k, v in pool.negatives[0].state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_var.mul_(3)
    pool.refresh(0, net)
    src = net.state_dict()
    for k, v in pool.negatives[0].state_dict().items():
        expected = 0.3 * ref[k] + 0.7 * src[k] if v.is_floating_point() else src[k]
        torch.testing.assert_close(v, expected, rtol=1e-6, atol=1e-6)


def test_negatives_never_train_and_never_get_gradients():
    net = Tiny()
    pool = NegativePool(net, [1, 1], [0.1, 0.1], init_decay=0.1, make_fresh=Tiny)
    net.train()
    for neg in pool.negatives:
        assert not neg.training
        assert all(not p.requires_grad for p in neg.parameters())
    with torch.no_grad():
        pool.negatives[1].conv.weight.add_(1.0)  # make the two negatives differ
    x = torch.randn(2, 1, 4, 4)
    out = pool(x)
    assert out.shape == (2, 2, 1, 4, 4) and not out.requires_grad
    with torch.no_grad():  # outputs are per negative, in order
        for k in range(2):
            torch.testing.assert_close(out[k], pool.negatives[k](x))


def test_state_roundtrip_and_mismatch_errors():
    net = fill(Tiny(), 1.0)
    pool = NegativePool(net, [1, 2], [0.5, 0.5], init_decay=0.0)
    fill(net, 3.0)
    pool.step(2, net)
    state = pool.state_dict()
    other = NegativePool(fill(Tiny(), 0.0), [1, 2], [0.5, 0.5], init_decay=0.0)
    other.load_state_dict(state)
    assert [w(n) for n in other.negatives] == [2.0, 2.0] and other.refreshes == [1, 1]
    with pytest.raises(NegativePoolStateError, match='holds 2 negative model.*options define 1'):
        NegativePool(Tiny(), [1], [0.5], init_decay=0.0).load_state_dict(state)
    with pytest.raises(NegativePoolStateError, match="architecture 'Tiny'.*'Sequential'"):
        NegativePool(nn.Sequential(nn.Conv2d(1, 1, 1)), [1, 2], [0.5, 0.5], init_decay=0.0).load_state_dict(state)
    bigger = Tiny()
    bigger.conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(NegativePoolStateError, match='conv.weight'):
        NegativePool(bigger, [1, 2], [0.5, 0.5], init_decay=0.0).load_state_dict(state)


def test_bfloat16_storage_and_autocast_close_to_fp32():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    x = torch.rand(2, 3, 16, 16)
    ref = NegativePool(net, [1], [0.5], init_decay=0.0)(x)
    for kwargs in ({'dtype': torch.bfloat16}, {'autocast': torch.bfloat16}, {'channels_last': True}):
        pool = NegativePool(net, [1], [0.5], init_decay=0.0, **kwargs)
        out = pool(x)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)
        pool.step(1, net)  # refresh works in every storage format
        assert torch.isfinite(pool(x)).all()
