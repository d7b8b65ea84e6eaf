"""UncertaintyWeightedLoss: weights and gradient against a direct computation, option errors, and a run with it
as the only reconstruction loss that saves the weight maps during validation."""
import glob

import cv2
import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from mclir_basicsr.losses.uncertainty_loss import UncertaintyWeightedLoss, uncertainty_weights
from mclir_basicsr.options import MCLIROptionError

from helpers import PY, run, train_options, write_yaml


def direct_weights(out, negs, floor, cap):
    """The README's formula, written out per image and pixel."""
    b, _, h, w = out.shape
    weights = torch.empty(b, 1, h, w, dtype=out.dtype)
    for i in range(b):
        spread = torch.sqrt(((negs[:, i] - out[i]) ** 2).mean(dim=(0, 1)))  # over negatives and channels
        weights[i, 0] = torch.clamp(spread / spread.mean(), floor, cap)
    return weights


@pytest.mark.parametrize('criterion', ['l1', 'l2', 'charbonnier'])
def test_value_and_gradient_match_a_direct_computation(criterion):
    torch.manual_seed(0)
    out = torch.rand(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    gt, negs = torch.rand(2, 3, 6, 5, dtype=torch.float64), torch.rand(4, 2, 3, 6, 5, dtype=torch.float64)
    loss = UncertaintyWeightedLoss(loss_weight=0.7, criterion=criterion, floor=0.8, cap=1.2)(out, gt, negs)
    loss.backward()
    grad = out.grad.clone()
    out.grad = None
    w = direct_weights(out.detach(), negs, 0.8, 1.2)
    diff = out - gt
    per_pixel = {'l1': diff.abs(), 'l2': diff ** 2, 'charbonnier': torch.sqrt(diff ** 2 + 1e-12)}[criterion]
    expected = 0.7 * (w * per_pixel).mean()
    expected.backward()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert torch.allclose(grad, out.grad, rtol=1e-10, atol=1e-14)  # the weight is a constant of the step
    assert ((w > 0.8) & (w < 1.2)).any() and (w == 0.8).any() and (w == 1.2).any()  # both bounds were exercised


def test_weights_are_bounded_and_one_where_the_history_agrees():
    torch.manual_seed(1)
    out = torch.rand(3, 3, 8, 8)
    w = uncertainty_weights(out, torch.rand(2, 3, 3, 8, 8), floor=0.1, cap=3.0)
    assert w.shape == (3, 1, 8, 8) and float(w.min()) >= 0.1 and float(w.max()) <= 3.0
    assert torch.equal(uncertainty_weights(out, out.unsqueeze(0).expand(2, -1, -1, -1, -1)), torch.ones(3, 1, 8, 8))
    gt = torch.rand(3, 3, 8, 8)
    plain = UncertaintyWeightedLoss()(out, gt, torch.stack([out, out]))
    assert float(plain) == pytest.approx(float((out - gt).abs().mean()), rel=1e-6)  # = L1 when negatives agree


def test_split_batch_negatives_one_per_sample():
    torch.manual_seed(2)
    out, negs = torch.rand(2, 3, 4, 4, dtype=torch.float64), torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert torch.allclose(uncertainty_weights(out, negs, 0.1, 3.0), direct_weights(out, negs.unsqueeze(0), 0.1, 3.0))
    with pytest.raises(ValueError, match='do not fit the output'):
        uncertainty_weights(out, torch.rand(2, 3, 4, 5))


@pytest.mark.parametrize('kwargs,message', [
    ({'flor': 0.2}, "train.uncertainty_opt.flor: unknown option .did you mean 'floor'"),
    ({'floor': 0}, 'floor <= 1 <= cap'),
    ({'cap': 0.5}, 'floor <= 1 <= cap'),
    ({'criterion': 'L1'}, "did you mean 'l1'"),
])
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(MCLIROptionError, match=message):
        UncertaintyWeightedLoss(**kwargs)


def test_registered():
    assert LOSS_REGISTRY.get('UncertaintyWeightedLoss') is UncertaintyWeightedLoss


@pytest.mark.slow
def test_as_the_only_reconstruction_loss_with_maps_saved(workdir, data_x2):
    """No pixel_opt, no SPN: the negatives exist for the uncertainty loss alone; val.save_img saves the maps."""
    opt = train_options('unc', data_x2, total_iter=2, negatives={'update_every': [1, 2]}, extra_train={
        'uncertainty_opt': {'type': 'UncertaintyWeightedLoss', 'save_map': True}})
    opt['model_type'] = 'ModelContrastiveModel'
    opt['train']['negatives'] = {'update_every': [1, 2], 'decay': 0.5}
    del opt['train']['pixel_opt']
    opt['val'].update(save_img=True, val_freq=2)
    write_yaml(workdir / 'unc.yml', opt)
    proc = run([PY, '-m', 'mclir_basicsr.train', '-opt', 'unc.yml'], cwd=workdir)
    log = proc.stdout + proc.stderr
    assert 'l_uncertainty' in log and 'l_pix' not in log and 'l_spn' not in log
    assert 'SPN: off; uncertainty loss: on' in log
    maps = sorted(glob.glob(str(workdir / 'experiments' / 'unc' / 'visualization' / '*' / '*_2_uncertainty.png')))
    outputs = sorted(glob.glob(str(workdir / 'experiments' / 'unc' / 'visualization' / '*' / '*_2.png')))
    assert len(maps) == len(outputs) == 6
    img, out = cv2.imread(maps[0], cv2.IMREAD_UNCHANGED), cv2.imread(outputs[0])
    assert img.ndim == 2 and img.shape == out.shape[:2] and img.max() > img.min()
