"""ModelContrastiveModel: BasicSR's SRModel plus history negatives and the SPN loss.

Works with any network in ARCH_REGISTRY, for SR (x2/x3/x4) and scale-1 restoration alike.
Validation, metrics, EMA, schedulers, logging and the checkpoint format are SRModel's. What
this class adds:

* ``init_training_settings``: validates the MCLIR options, builds the NegativePool and SPNLoss
  (without ``train.spn_opt`` SPN is off and the step is SRModel's);
* ``optimize_parameters``: ``L = L_pix (+ L_percep) + L_spn`` under ``train.amp``'s autocast (float16
  with a GradScaler), a non-finite guard, and the refresh of the negatives after the optimiser step;
* the state of the negatives and of the float16 scaler, which :class:`ExactResumeMixin`
  (:mod:`mclir_basicsr.resume`) saves with every rank's RNG states and the position in the epoch;
* schedulers: torch's (``TrueCosineAnnealingLR`` = ``CosineAnnealingLR``) next to BasicSR's three
  (:mod:`mclir_basicsr.models.schedulers`);
* ``test`` pads the input to a multiple of ``network_g.window_size`` (as SwinIRModel does).

The plumbing around the method lives in mixins: exact resume and an RNG-neutral validation
(:mod:`mclir_basicsr.resume`), checkpoint guards (:mod:`mclir_basicsr.models.guards`), atomic saves
(:mod:`mclir_basicsr.addon_runs`).
"""
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn import functional as F

from mclir_basicsr.addon_runs import AtomicSaveMixin
from mclir_basicsr.history import NegativePool
from mclir_basicsr.models.guards import CheckpointGuardMixin, CheckpointMismatchError, NonFiniteError  # noqa: F401
from mclir_basicsr.models.schedulers import TorchSchedulerMixin, check_scheduler
from mclir_basicsr.options import dtype_or_none, parse_mclir_options
from mclir_basicsr.resume import ExactResumeMixin


@MODEL_REGISTRY.register()
class ModelContrastiveModel(ExactResumeMixin, CheckpointGuardMixin, AtomicSaveMixin, TorchSchedulerMixin, SRModel):
    """SRModel with K history negatives pushed away by SPNLoss."""

    def __init__(self, opt):
        if opt['is_train']:
            self.mclir = parse_mclir_options(opt)  # before any network is built
            check_scheduler(opt['train'])
        super().__init__(opt)

    # ------------------------------------------------------------------ set-up
    def init_training_settings(self):
        train_opt = self.opt['train']
        if self.mclir.official:  # the fork subtracts its perceptual_opt: it is the SPN term here
            official_percep = train_opt.pop('perceptual_opt')
        try:
            super().init_training_settings()
        finally:
            if self.mclir.official:
                train_opt['perceptual_opt'] = official_percep
        self.amp = dtype_or_none(self.mclir.amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.amp_skipped = 0
        self.negatives, self.cri_spn = None, None
        if self.mclir.spn_on:
            self._build_spn()
        else:
            get_root_logger().info(f'MCLIR: SPN is off (no train.spn_opt): training as SRModel'
                                   f'{", amp " + self.mclir.amp if self.amp else ""}.')

    def _build_spn(self):
        neg = self.mclir.negatives
        self.negatives = NegativePool(
            self.get_bare_model(self.net_g), neg['update_every'], neg['decay'], neg['init_decay'],
            make_fresh=lambda: build_network(self.opt['network_g']), dtype=getattr(torch, neg['dtype']),
            autocast=dtype_or_none(neg['autocast']), channels_last=neg['channels_last'])
        self.negatives.broadcast(src=0)  # DDP synced net_g; the fresh initial blends differ per rank
        self.cri_spn = build_loss(dict(self.mclir.spn)).to(self.device)
        get_root_logger().info(
            f'MCLIR: {len(self.negatives)} negative model(s), update_every={neg["update_every"]}, '
            f'decay={neg["decay"]}, init_decay={neg["init_decay"]}, split_batch={neg["split_batch"]}; '
            f'SPN: feature={self.mclir.spn["feature"]}, mode={self.mclir.spn["mode"]}, '
            f'loss_weight={self.mclir.spn["loss_weight"]}; amp={self.mclir.amp}')

    # ------------------------------------------------------------------ training step
    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            self.output = self.net_g(self.lq)
            l_total, loss_dict = self._reconstruction_losses()
            if self.negatives is not None:
                l_spn, distances = self._spn_term(current_iter)
                loss_dict['l_spn'] = l_spn
                l_total = l_total + l_spn
                for k, d in enumerate(distances):
                    loss_dict[f'd_neg{k}'] = d
        self._stop_if_not_finite(l_total, loss_dict, current_iter)
        self._backward_and_step(l_total)

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.scaler is not None:
            self.log_dict['amp_scale'] = self.scaler.get_scale()
            self.log_dict['amp_skipped'] = self.amp_skipped
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        if self.negatives is not None:
            self.negatives.step(current_iter, self.get_bare_model(self.net_g))

    def _reconstruction_losses(self):
        """SRModel's terms: the pixel loss and the perceptual/style losses, as SRModel adds them."""
        loss_dict = OrderedDict()
        l_total = 0
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
            l_total = l_total + loss_dict['l_pix']
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for name, term in (('l_percep', l_percep), ('l_style', l_style)):
                if term is not None:
                    loss_dict[name] = term
                    l_total = l_total + term
        return l_total, loss_dict

    def _spn_term(self, current_iter):
        """(L_spn, mean distance to each negative). Split batch: sample i meets negative (i + iter) mod K;
        the rotation comes from the iteration, so it is the same on every rank and after a resume."""
        if self.mclir.negatives['split_batch']:
            negs, owners = self.negatives.split(self.lq, rotation=current_iter % len(self.negatives))
        else:
            negs, owners = self.negatives(self.lq), None
        return self.cri_spn(self.output, negs, self.gt, owners=owners, num_negatives=len(self.negatives))

    def _stop_if_not_finite(self, l_total, loss_dict, current_iter):
        """Raise NonFiniteError before the optimiser step. With the float16 scaler an infinite loss is an
        overflow the scaler handles by skipping the step; NaN still stops."""
        loss = l_total.detach()
        ok = (~torch.isnan(loss) if self.scaler is not None else torch.isfinite(loss)).to(torch.float32)
        if self.opt['dist']:  # every rank stops together (one rank alone would hang the others in backward)
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        if bool(ok):  # one sync; BasicSR's logger syncs every step anyway
            return
        bad = [name for name, v in loss_dict.items() if not bool(torch.isfinite(v))] or ['on another rank']
        raise NonFiniteError(
            f'iteration {current_iter}: non-finite loss ({", ".join(bad)}). Training stopped before '
            'the optimiser step; the last checkpoint and training state are intact. Lower the learning rate '
            'or train.spn_opt.loss_weight, or bound the SPN term (train.spn_opt.max_distance, or mode: ratio).')

    def _backward_and_step(self, l_total):
        if self.scaler is None:
            l_total.backward()
            self.optimizer_g.step()
            return
        scale = self.scaler.get_scale()
        self.scaler.scale(l_total).backward()
        self.scaler.step(self.optimizer_g)  # skipped when the gradients hold inf/NaN
        self.scaler.update()
        if self.scaler.get_scale() < scale:
            self.amp_skipped += 1

    # ------------------------------------------------------------------ state of the negatives and the scaler
    def networks_to_check(self):
        nets = super().networks_to_check()
        if self.negatives is not None:
            nets.update({f'negative {k}': n for k, n in enumerate(self.negatives.negatives)})
        return nets

    def per_rank_record(self):
        return {'negatives_fingerprints': self.negatives.fingerprints() if self.negatives is not None else []}

    def extra_training_state(self):
        return {'negatives': self.negatives.state_dict() if self.negatives is not None else None,
                'amp_scaler': self.scaler.state_dict() if self.scaler is not None else None,
                'amp_skipped': self.amp_skipped}

    def load_extra_training_state(self, state):
        logger = get_root_logger()
        if self.negatives is not None:
            if state.get('negatives') is not None:
                self.negatives.load_state_dict(state['negatives'])
            else:
                logger.warning('The training state has no negatives (not written by ModelContrastiveModel with SPN): '
                               'they restart from the resumed network as at the start of a run.')
        self.amp_skipped = state.get('amp_skipped') or 0
        if self.scaler is not None:
            if state.get('amp_scaler') is not None:
                self.scaler.load_state_dict(state['amp_scaler'])
            else:
                logger.warning('The training state has no float16 GradScaler state (saved without train.amp: '
                               'float16): the scaler starts afresh.')

    # ------------------------------------------------------------------ evaluation
    def test(self):
        multiple = int(self.opt['network_g'].get('window_size') or 1)
        if multiple <= 1:
            return super().test()
        lq = self.lq
        h, w = lq.shape[-2:]
        self.lq = F.pad(lq, (0, (-w) % multiple, 0, (-h) % multiple), 'reflect')
        try:
            super().test()
        finally:
            self.lq = lq
        scale = self.opt.get('scale', 1)
        self.output = self.output[..., :h * scale, :w * scale]
