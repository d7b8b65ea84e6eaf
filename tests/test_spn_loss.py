"""SPNLoss: sign of the gradient, batched == per-negative, modes, criteria, weights handling."""

import pytest
import torch
from basicsr.losses import build_loss

from mclir_basicsr.losses import SPNLoss
from mclir_basicsr.losses.vgg import VGGFeatures, VGGWeightsNotFound
from mclir_basicsr.options import MCLIROptionError

LAYERS = {'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5}


@pytest.fixture(scope='module')
def vgg_loss(vgg16_file):
    return SPNLoss(loss_weight=1.0, feature='vgg16', layer_weights=LAYERS, pretrained=vgg16_file)


def batch(k=3, b=2, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(b, 3, size, size, generator=g)
    negs = (out + 0.1 * torch.randn(k, b, 3, size, size, generator=g)).clamp(0, 1)
    gt = torch.rand(b, 3, size, size, generator=g)
    return out, negs, gt


def test_built_through_basicsr_registry(vgg16_file):
    loss = build_loss({'type': 'SPNLoss', 'loss_weight': 0.5, 'feature': 'vgg16', 'pretrained': vgg16_file})
    assert isinstance(loss, SPNLoss) and loss.loss_weight == 0.5


@pytest.mark.parametrize('feature', ['vgg16', 'pixel'])
@pytest.mark.parametrize('mode', ['subtract', 'ratio'])
def test_gradient_step_increases_distance_to_negatives(vgg16_file, feature, mode):
    loss_fn = SPNLoss(loss_weight=1.0, feature=feature, pretrained=vgg16_file, mode=mode)
    out, negs, gt = batch()
    out = out.clone().requires_grad_(True)
    loss, d0 = loss_fn(out, negs, gt)
    loss.backward()
    with torch.no_grad():
        stepped = out - 1e-2 * out.grad / out.grad.abs().max()
    _, d1 = loss_fn(stepped, negs, gt)
    assert d1.mean() > d0.mean()


def test_batched_features_equal_per_negative_computation(vgg_loss):
    out, negs, gt = batch(k=4)
    out = out.requires_grad_(True)
    loss, d = vgg_loss(out, negs, gt)
    # reference: one VGG call per negative, BasicSR PerceptualLoss style (mean L1 per layer, weighted sum)
    f_out = vgg_loss.features(out)
    per_neg = []
    for k in range(negs.shape[0]):
        f_neg = vgg_loss.features(negs[k])
        per_neg.append(sum(w * torch.nn.functional.l1_loss(f_out[n], f_neg[n]) for n, w in LAYERS.items()))
    per_neg = torch.stack(per_neg)
    torch.testing.assert_close(d, per_neg.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, -per_neg.mean(), rtol=1e-5, atol=1e-6)
    g_batched = torch.autograd.grad(loss, out)[0]
    g_loop = torch.autograd.grad(-per_neg.mean(), out)[0]
    torch.testing.assert_close(g_batched, g_loop, rtol=1e-4, atol=1e-7)


def test_ratio_mode_and_criteria_by_hand():
    out, negs, gt = batch(k=2)
    for crit, f in (('l1', lambda d: d.abs()), ('l2', lambda d: d ** 2),
                    ('charbonnier', lambda d: torch.sqrt(d ** 2 + 1e-12))):
        loss_fn = SPNLoss(loss_weight=2.0, feature='pixel', criterion=crit, mode='ratio')
        loss, d = loss_fn(out, negs, gt)
        d_neg = torch.stack([f(out - negs[k]).mean() for k in range(2)])
        torch.testing.assert_close(d, d_neg)
        torch.testing.assert_close(loss, 2.0 * f(out - gt).mean() / (d_neg.mean() + 1e-8))


def test_max_distance_bounds_subtract_term():
    out, negs, gt = batch(k=2)
    negs = negs + 5.0  # far away: unbounded term would be large
    loss_fn = SPNLoss(loss_weight=1.0, feature='pixel', max_distance=0.5)
    loss, d = loss_fn(out.requires_grad_(True), negs, gt)
    assert loss.item() == pytest.approx(-0.5) and (d > 0.5).all()
    assert torch.autograd.grad(loss, out)[0].abs().max() == 0  # saturated: no push


def test_bfloat16_and_channels_last_close_to_fp32(vgg16_file):
    out, negs, gt = batch(k=2)
    ref_loss, ref_d = SPNLoss(loss_weight=1.0, feature='vgg16', pretrained=vgg16_file)(out, negs, gt)
    for kw in ({'autocast': 'bfloat16'}, {'channels_last': True}, {'autocast': 'bfloat16', 'channels_last': True}):
        loss_fn = SPNLoss(loss_weight=1.0, feature='vgg16', pretrained=vgg16_file, **kw)
        o = out.clone().requires_grad_(True)
        loss, d = loss_fn(o, negs, gt)
        loss.backward()
        assert torch.isfinite(o.grad).all()
        torch.testing.assert_close(d, ref_d, rtol=0.03, atol=1e-3)


def test_channels_last_auto_is_fp32_math_in_another_layout(vgg16_file):
    """The default (`auto`) runs VGG in channels_last on CPU: the same values and gradient as NCHW up to
    float32 rounding; `false` keeps NCHW, and `auto` would keep NCHW on CUDA."""
    out, negs, gt = batch(k=3)
    results = {}
    for cl in ('auto', False):
        loss_fn = SPNLoss(loss_weight=1.0, feature='vgg16', pretrained=vgg16_file, channels_last=cl,
                          layer_weights={'relu1_2': 0.5, 'relu2_2': 1.0})
        o = out.clone().requires_grad_(True)
        loss, d = loss_fn(o, negs, gt)
        loss.backward()
        feats = loss_fn.phi(out)
        results[cl] = loss, d, o.grad
        layout = all(f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous()
                     for f in feats.values())
        assert layout == (cl == 'auto'), cl
        assert loss_fn.use_channels_last(torch.device('cuda')) is False
    for a, b in zip(results['auto'], results[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_missing_vgg_weights_fail_fast_naming_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.chdir(tmp_path)
    def no_download(*args, **kwargs):
        raise AssertionError('a download was attempted')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_download)  # fails fast: it never downloads
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    with pytest.raises(VGGWeightsNotFound) as e:
        SPNLoss(feature='vgg19')
    msg = str(e.value)
    assert 'vgg19-dcbb9e9d.pth' in msg and str(tmp_path / 'torch_home' / 'hub' / 'checkpoints') in msg
    assert 'experiments/pretrained_models' in msg and 'download: true' in msg
    with pytest.raises(VGGWeightsNotFound, match='nowhere.pth'):
        SPNLoss(feature='vgg16', pretrained=str(tmp_path / 'nowhere.pth'))


def test_weights_found_in_torch_hub_cache_and_legacy_format(tmp_path, monkeypatch):
    from helpers import write_vgg_weights
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    write_vgg_weights(str(tmp_path / 'hub' / 'checkpoints' / 'vgg16-397923af.pth'), legacy=True)
    feats = VGGFeatures('vgg16', ['relu2_2'])
    assert len(feats.body) == feats.names.index('relu2_2') + 1  # nothing deeper is built
    assert feats(torch.rand(1, 3, 16, 16))['relu2_2'].shape == (1, 128, 8, 8)


def test_wrong_weight_file_is_a_clear_error(tmp_path):
    torch.save({'features.0.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='not a torchvision vgg16 weight file'):
        VGGFeatures('vgg16', ['relu1_1'], pretrained=str(tmp_path / 'bad.pth'))


def test_bad_arguments_raise_option_errors():
    with pytest.raises(MCLIROptionError, match="spn_opt.criterion.*did you mean 'l1'"):
        SPNLoss(feature='pixel', criterion='L1')
    with pytest.raises(MCLIROptionError, match='spn_opt.lambda: unknown option'):
        SPNLoss(feature='pixel', **{'lambda': 0.1})


@pytest.mark.parametrize('criterion', ['l1', 'l2', 'charbonnier'])
def test_distance_gradient_matches_autograd_reference(criterion):
    from mclir_basicsr.losses.spn_loss import distances, low_memory_distances
    g = torch.Generator().manual_seed(1)
    out = torch.rand(2, 3, 5, 4, dtype=torch.double, generator=g).requires_grad_(True)
    refs = torch.rand(3 * 2, 3, 5, 4, dtype=torch.double, generator=g)
    weights = torch.rand(3, 2, dtype=torch.double, generator=g)
    f = {'l1': torch.abs, 'l2': torch.square, 'charbonnier': lambda d: torch.sqrt(d ** 2 + 1e-12)}[criterion]
    ref = torch.stack([torch.stack([f(out[i] - r[i]).mean() for i in range(2)]) for r in refs.view(3, *out.shape)])
    d = low_memory_distances(out, refs, criterion)
    assert d.shape == (3, 2)  # (reference batches, samples)
    torch.testing.assert_close(d, ref)
    torch.testing.assert_close(distances(out, refs, criterion), ref)
    torch.testing.assert_close(torch.autograd.grad((d * weights).sum(), out)[0],
                               torch.autograd.grad((ref * weights).sum(), out)[0])
    assert torch.autograd.gradcheck(lambda o: low_memory_distances(o, refs, criterion), (out,))


def test_conv_features_are_not_overwritten_by_in_place_relu(vgg16_file):
    feats = VGGFeatures('vgg16', ['conv1_2', 'relu1_2'], pretrained=vgg16_file)
    out = feats(torch.rand(1, 3, 8, 8) - 0.5)
    assert (out['conv1_2'] < 0).any()
    torch.testing.assert_close(out['relu1_2'], out['conv1_2'].clamp(min=0))
