"""CRLoss (AECR-Net's contrastive regularisation): value and gradient against a direct float64
computation, the bicubic resize of the input, option errors, registration."""
import pytest
import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch.nn import functional as F
from torchvision.models.vgg import cfgs, make_layers

from mclir_basicsr.losses import CRLoss
from mclir_basicsr.losses.vgg import VGGWeightsNotFound, write_random_weights
from mclir_basicsr.options import CROptions, MCLIROptionError

# torchvision vgg19 `features` indices of AECR-Net's layers (relu1_1 ... relu5_1)
VGG19_RELU_X_1 = {'relu1_1': 1, 'relu2_1': 6, 'relu3_1': 11, 'relu4_1': 20, 'relu5_1': 29}
# ImageNet statistics as BasicSR stores them (float32 constants), in float64
MEAN = torch.tensor([0.485, 0.456, 0.406]).double().view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).double().view(1, 3, 1, 1)


@pytest.fixture(scope='module')
def vgg19_file(tmp_path_factory):
    return write_random_weights(str(tmp_path_factory.mktemp('vgg') / 'vgg19-dcbb9e9d.pth'), 'vgg19')


def tensors(b=2, size=16, lq_size=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, size, size, generator=g, dtype=torch.float64)
    out = (gt + 0.1 * torch.randn(b, 3, size, size, generator=g, dtype=torch.float64)).clamp(0, 1)
    lq = torch.rand(b, 3, lq_size or size, lq_size or size, generator=g, dtype=torch.float64)
    return out, gt, lq


def reference_vgg19(path):
    """torchvision's own VGG19 feature stack (float64), loaded from the weight file: phi independent of CRLoss's."""
    body = make_layers(cfgs['E'])
    state = torch.load(path, map_location='cpu', weights_only=True)
    body.load_state_dict({k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')})
    body = body.double().eval()

    def phi(x):
        x, feats = (x - MEAN) / STD, {}
        for i, layer in enumerate(body[:max(VGG19_RELU_X_1.values()) + 1]):
            x = layer(x.clone())  # torchvision's ReLUs are in place
            feats.update({name: x for name, idx in VGG19_RELU_X_1.items() if idx == i})
        return feats
    return phi


def reference_cr(out, gt, neg, phi, weights, eps, loss_weight):
    """The formula, directly:
    lambda * sum_l w_l * mean|phi_l(out) - phi_l(gt)| / (mean|phi_l(out) - phi_l(neg)| + eps)."""
    f_out, f_gt, f_neg = phi(out), phi(gt), phi(neg)
    total = sum(w * (f_out[n] - f_gt[n].detach()).abs().mean() / ((f_out[n] - f_neg[n].detach()).abs().mean() + eps)
                for n, w in weights.items())
    return loss_weight * total


def value_and_grad(fn, out, *args):
    out = out.clone().requires_grad_(True)
    loss = fn(out, *args)
    loss.backward()
    return loss.detach(), out.grad


def test_pixel_value_and_gradient_match_the_formula():
    out, gt, lq = tensors()
    loss_fn = CRLoss(loss_weight=0.3, feature='pixel', eps=1e-3)
    got = value_and_grad(loss_fn, out, gt, lq)
    want = value_and_grad(lambda o, g, n: reference_cr(o, g, n, lambda x: {'pixel': x}, {'pixel': 1.0}, 1e-3, 0.3),
                          out, gt, lq)
    assert got[1].dtype == torch.float64
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize('criterion', ['l2', 'charbonnier'])
def test_pixel_other_criteria(criterion):
    out, gt, lq = tensors(seed=1)
    dist = {'l2': lambda d: d.square().mean(), 'charbonnier': lambda d: (d.square() + 1e-12).sqrt().mean()}[criterion]
    want = dist(out - gt) / (dist(out - lq) + CROptions.model_fields['eps'].default) * 0.1
    got = CRLoss(feature='pixel', criterion=criterion)(out, gt, lq)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_vgg19_value_and_gradient_match_torchvision_float64(vgg19_file):
    out, gt, lq = tensors(size=32)
    loss_fn = CRLoss(pretrained=vgg19_file, channels_last=False)  # the defaults: AECR-Net's layers and weights
    loss_fn.features.double()
    assert loss_fn.layer_weights == {'relu1_1': 1 / 32, 'relu2_1': 1 / 16, 'relu3_1': 1 / 8, 'relu4_1': 1 / 4,
                                     'relu5_1': 1.0} and loss_fn.loss_weight == 0.1
    got = value_and_grad(loss_fn, out, gt, lq)
    phi = reference_vgg19(vgg19_file)
    want = value_and_grad(lambda o, g, n: reference_cr(o, g, n, phi, loss_fn.layer_weights, 1e-7, 0.1), out, gt, lq)
    assert got[0] > 0 and got[1].abs().sum() > 0
    torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-7, atol=1e-14)


def test_vgg19_channels_last_float32_close_to_float64(vgg19_file):
    out, gt, lq = tensors(size=32, seed=2)
    fast = CRLoss(pretrained=vgg19_file, channels_last=True)(out.float(), gt.float(), lq.float())
    exact = CRLoss(pretrained=vgg19_file, channels_last=False)
    exact.features.double()
    torch.testing.assert_close(fast.double(), exact(out, gt, lq), rtol=1e-4, atol=0)


def test_input_of_another_size_is_resized_bicubic():
    out, gt, lq = tensors(size=16, lq_size=8, seed=3)
    loss_fn = CRLoss(feature='pixel')
    got = value_and_grad(loss_fn, out, gt, lq)
    neg = F.interpolate(lq, size=(16, 16), mode='bicubic', align_corners=False).clamp(0, 1)
    assert not torch.equal(neg, F.interpolate(lq, size=(16, 16), mode='bicubic', align_corners=False))  # overshoot
    want = value_and_grad(lambda o, g, n: reference_cr(o, g, n, lambda x: {'pixel': x}, {'pixel': 1.0}, 1e-7, 0.1),
                          out, gt, neg)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-15)


def test_shape_errors():
    out, gt, lq = tensors()
    loss_fn = CRLoss(feature='pixel')
    with pytest.raises(ValueError, match='differ in batch size or channels'):
        loss_fn(out, gt, lq[:, :1])
    with pytest.raises(ValueError, match='ground truth'):
        loss_fn(out, gt[..., :8], lq)


def test_unknown_and_invalid_options(tmp_path):
    with pytest.raises(MCLIROptionError, match=r'cr_opt\.layer_weight: unknown option.*did you mean'):
        CRLoss(feature='pixel', layer_weight={'relu1_1': 1.0})
    with pytest.raises(MCLIROptionError, match=r'cr_opt\.criterion'):
        CRLoss(feature='pixel', criterion='l3')
    with pytest.raises(MCLIROptionError, match=r'cr_opt\.layer_weights\.relu1_3'):
        CRLoss(feature='vgg19', layer_weights={'relu1_3': 1.0})  # checked before any weight file is looked for
    with pytest.raises(VGGWeightsNotFound, match=r'CRLoss with feature .vgg19.(.|\n)*train\.cr_opt\.pretrained'):
        CRLoss(feature='vgg19', pretrained=str(tmp_path / 'missing.pth'))


def test_registered_and_built_by_basicsr():
    assert LOSS_REGISTRY.get('CRLoss') is CRLoss
    loss = build_loss({'type': 'CRLoss', 'loss_weight': 0.5, 'feature': 'pixel'})
    assert isinstance(loss, CRLoss) and loss.loss_weight == 0.5 and loss.features is None
