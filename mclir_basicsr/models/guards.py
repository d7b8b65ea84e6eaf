"""Checkpoint guards for a BasicSR model: no checkpoint with NaN/Inf weights, clear mismatch errors.

``class M(CheckpointGuardMixin, SRModel)``: before every save (periodic and ``latest``) the
networks named by :meth:`CheckpointGuardMixin.networks_to_check` are checked for non-finite
weights, so the last good checkpoint on disk is never overwritten by a broken one; a checkpoint
that does not fit ``network_g`` fails with one message naming the file and what to do.
"""
import torch

from mclir_basicsr.errors import MCLIRError


class CheckpointMismatchError(MCLIRError, RuntimeError):
    """A checkpoint that does not fit network_g."""


class NonFiniteError(MCLIRError, FloatingPointError):
    """Training produced NaN/Inf; raised before the bad step or checkpoint is taken."""


class CheckpointGuardMixin:

    def networks_to_check(self):
        """{name: module} checked for finite weights before a save."""
        return {'net_g': self.get_bare_model(self.net_g)}

    def _check_finite_weights(self, current_iter):
        for name, net in self.networks_to_check().items():
            tensors = [p for p in net.parameters() if p.is_floating_point()]
            if tensors and not bool(torch.stack([t.detach().float().abs().sum() for t in tensors]).isfinite().all()):
                when = 'end of training' if current_iter == -1 else f'iteration {current_iter}'
                raise NonFiniteError(
                    f'{when}: {name} has non-finite weights; nothing was saved, the last '
                    'checkpoint and training state are intact (resume from them with a lower learning rate).')

    def save(self, epoch, current_iter):
        if self.is_train:
            self._check_finite_weights(current_iter)
        super().save(epoch, current_iter)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        try:
            super().load_network(net, load_path, strict, param_key)
        except RuntimeError as e:
            arch = self.opt['network_g'].get('type')
            raise CheckpointMismatchError(
                f'{load_path} does not fit network_g ({arch}): {str(e).splitlines()[0]} '
                f'{" ".join(str(e).splitlines()[1:3]).strip()} ... Use the network_g options the checkpoint was '
                'trained with (when resuming: the same as the run being resumed), or start a new run.') from e


def stop_if_not_finite(usable, loss_dict, current_iter, distributed):
    """Raise NonFiniteError before the optimiser step unless ``usable`` (a 0-dim float tensor, 1 when the loss
    may be used: :meth:`mclir_basicsr.models.precision.StepPrecision.loss_is_usable`). In DDP every rank stops
    together (one rank alone would hang the others in backward)."""
    if distributed:
        torch.distributed.all_reduce(usable, op=torch.distributed.ReduceOp.MIN)
    if bool(usable):  # one sync; BasicSR's logger syncs every step anyway
        return
    bad = [name for name, v in loss_dict.items() if not bool(torch.isfinite(v))] or ['on another rank']
    raise NonFiniteError(
        f'iteration {current_iter}: non-finite loss ({", ".join(bad)}). Training stopped before '
        'the optimiser step; the last checkpoint and training state are intact. Lower the learning rate '
        'or train.spn_opt.loss_weight, or bound the SPN term (train.spn_opt.max_distance, or mode: ratio).')


IN_CHANNEL_ARGS = ('num_in_ch', 'in_chans', 'in_nc', 'in_channels', 'in_ch', 'n_colors')
OUT_CHANNEL_ARGS = ('num_out_ch', 'out_chans', 'out_nc', 'out_channels', 'out_ch', 'n_colors')
SCALE_ARGS = ('upscale', 'scale', 'upscale_factor', 'up_scale', 'sf')


def _named(arch, names):
    """network_g's argument among ``names`` with its value, as messages name it, or the network's type."""
    arg = next((k for k in names if k in arch), None)
    return f'network_g.{arg} ({arch[arg]})' if arg else f'network_g ({arch.get("type")})'


def data_channels(opt):
    """The channels of the training samples, when the train dataset loads them as BasicSR's paired datasets do
    (``imfrombytes``: 3, or 1 with PairedImageDataset's ``color: y``); None for any other dataset."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    from mclir_basicsr.preflight import registry
    train = ((opt.get('datasets') or {}).get('train')) or {}
    cls = registry.dataset_class(train.get('type'))
    if cls is None or not registry.crops_pairs(cls):
        return None
    return 1 if issubclass(cls, PairedImageDataset) and train.get('color') == 'y' else 3


@torch.no_grad()
def check_output_scale(net, opt, device):
    """One no-grad forward of a zero input of the training patch's size (eval mode, so no statistic moves and no
    random number is drawn): the network's output must be ``scale`` times its input, else an MCLIROptionError
    naming network_g's scale argument and ``scale``. Where the train dataset loads as BasicSR's (:func:`data_channels`)
    the input has the data's channels, and a network that cannot take them, or gives another number of channels
    than the GT has (which the pixel loss would broadcast silently), is named too. Otherwise an input the network
    cannot take (a channel count or size guessed wrong) skips the check: training then meets the network's own
    error."""
    from mclir_basicsr.validate import MCLIROptionError
    arch, scale = opt['network_g'], int(opt.get('scale', 1))
    gt_size = ((opt.get('datasets') or {}).get('train') or {}).get('gt_size')
    size = max(int(gt_size) // scale, 1) if isinstance(gt_size, int) and gt_size > 0 else 16
    known = data_channels(opt)
    channels = known or next((arch[k] for k in IN_CHANNEL_ARGS if isinstance(arch.get(k), int)), 3)
    images = f'the training images have {known} channel{"s" if known > 1 else ""} (datasets.train.color: ' \
             f'{"y" if known == 1 else "null, RGB"})' if known else ''
    was_training = net.training
    net.eval()
    try:
        out = net(torch.zeros(1, channels, size, size, device=device))
    except Exception as e:  # noqa: BLE001  (see the docstring)
        if known and isinstance(gt_size, int):
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MCLIROptionError(f'{_named(arch, IN_CHANNEL_ARGS)}: the network cannot take a {known}x{size}x{size} '
                                   f'training LQ patch, {images}: {first}') from None
        return
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        return
    declared = next((arch[k] for k in OUT_CHANNEL_ARGS if k in arch), None)
    declared = declared if isinstance(declared, int) else out.shape[1]
    given = declared if declared != known else out.shape[1]  # EDSR's mean broadcasts a 1-channel output to 3
    if known and given != known:
        raise MCLIROptionError(f'{_named(arch, OUT_CHANNEL_ARGS)}: the network gives {given} '
                               f'channel{"s" if given > 1 else ""}, but {images}, and the pixel loss would broadcast '
                               'one over the other; make them agree')
    if tuple(out.shape[-2:]) == (size * scale, size * scale):
        return
    raise MCLIROptionError(
        f'{_named(arch, SCALE_ARGS)}: the network turns a {size}x{size} input into {out.shape[-2]}x{out.shape[-1]}, '
        f'but scale is {scale} (expected {size * scale}x{size * scale}); make network_g\'s scale and the option '
        'file\'s scale agree')
