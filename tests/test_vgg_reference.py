"""The VGG feature distances of SPNLoss against BasicSR's own VGGFeatureExtractor, on one random weight file.

BasicSR builds torchvision's VGG and loads the file at ``basicsr.archs.vgg_arch.VGG_PRETRAIN_PATH`` when it
exists: pointing that at the test's file makes both sides read the same weights, so the comparison checks the
add-on's own layer construction, loading, input normalisation and distance, independently of its weight writer.
The file holds the feature layers only (as the add-on reads them), so torchvision's VGG is built without its
550 MB classifier for BasicSR's strict load."""
import pytest
import torch
from basicsr.archs import vgg_arch
from torchvision.models import vgg as tv_vgg

from mclir_basicsr.losses.spn_loss import SPNLoss

LAYERS = {'relu1_2': 0.2, 'relu2_2': 0.3, 'relu3_3': 0.5, 'relu4_3': 0.25}


def _vgg16_features_only(pretrained=False, **kwargs):
    net = tv_vgg.VGG(tv_vgg.make_layers(tv_vgg.cfgs['D']), init_weights=False)
    net.classifier = torch.nn.Identity()
    return net


@pytest.mark.parametrize('criterion,dist', [('l1', lambda a, b: (a - b).abs().mean()),
                                            ('l2', lambda a, b: ((a - b) ** 2).mean())])
def test_distances_equal_basicsr_vgg_feature_extractor(vgg16_file, monkeypatch, criterion, dist):
    monkeypatch.setattr(vgg_arch, 'VGG_PRETRAIN_PATH', vgg16_file)
    monkeypatch.setattr(vgg_arch.vgg, 'vgg16', _vgg16_features_only)
    theirs = vgg_arch.VGGFeatureExtractor(list(LAYERS), vgg_type='vgg16', use_input_norm=True, range_norm=False)
    weights = torch.load(vgg16_file, weights_only=True)
    assert torch.equal(theirs.vgg_net.conv1_1.weight, weights['features.0.weight'])  # it read the test's file
    assert torch.equal(theirs.vgg_net.conv4_3.weight, weights['features.21.weight'])

    ours = SPNLoss(loss_weight=1.0, feature='vgg16', layer_weights=LAYERS, criterion=criterion, pretrained=vgg16_file)
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 40, 36, generator=g)
    negs = torch.rand(3, 2, 3, 40, 36, generator=g)  # K = 3 negatives of the batch
    loss, per_negative = ours(out, negs)

    with torch.no_grad():
        f_out = theirs(out)
        expected = torch.stack([sum(w * dist(f_out[name], f_neg[name]) for name, w in LAYERS.items())
                                for f_neg in map(theirs, negs)])
    assert expected.min() > 0
    torch.testing.assert_close(per_negative, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(loss.detach(), -expected.mean(), rtol=1e-5, atol=0)
