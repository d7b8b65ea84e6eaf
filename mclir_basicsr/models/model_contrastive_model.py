"""ModelContrastiveModel: BasicSR's SRModel plus history negatives and the SPN loss.

Works with any network in ARCH_REGISTRY, for SR (x2/x3/x4) and scale-1 restoration alike.
Validation, metrics, EMA, schedulers, logging and the checkpoint format are SRModel's. What
this class adds:

* ``init_training_settings``: validates the MCLIR options, builds the NegativePool (its schedule:
  periodic or adaptive, :mod:`mclir_basicsr.history`), SPNLoss, and the optional CRLoss and
  UncertaintyWeightedLoss (without ``train.spn_opt``, ``cr_opt`` and ``uncertainty_opt`` the step is
  SRModel's);
* ``optimize_parameters``: ``L = L_pix (+ L_percep) + L_spn (+ L_uncertainty) (+ L_cr)`` under
  ``train.amp``'s autocast (float16 with a GradScaler), a non-finite guard, and the refresh of the
  negatives after the optimiser step (the adaptive trigger's statistic and refreshes are logged);
  the negatives' outputs of the step feed SPN and the uncertainty weights alike (one pass);
* the state of the negatives (and their schedule) and of the float16 scaler, which
  :class:`ExactResumeMixin` (:mod:`mclir_basicsr.resume`) saves with every rank's RNG states and the
  position in the epoch;
* optimisers and schedulers: any torch.optim optimiser (e.g. the fork's ``AdamW``), torch's schedulers
  (``TrueCosineAnnealingLR`` = ``CosineAnnealingLR``) next to BasicSR's three (:mod:`mclir_basicsr.models.optim`);
* ``test`` pads the input to a multiple of ``network_g.window_size`` (as SwinIRModel does); with
  ``uncertainty_opt.save_map`` validation also saves each image's uncertainty weight map.

The plumbing around the method lives in mixins: exact resume and an RNG-neutral validation
(:mod:`mclir_basicsr.resume`), checkpoint guards (:mod:`mclir_basicsr.models.guards`), atomic saves
(:mod:`mclir_basicsr.addon_runs`).
"""
import atexit
import contextlib
import os
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite
from torch.nn import functional as F

from mclir_basicsr.history import AdaptiveRefresh, NegativePool
from mclir_basicsr.models.guards import CheckpointGuardMixin, CheckpointMismatchError, NonFiniteError  # noqa: F401
from mclir_basicsr.models.optim import TorchOptimMixin
from mclir_basicsr.options import describe_refresh, dtype_or_none, parse_mclir_options
from mclir_basicsr.preflight.optim import check_optim
from mclir_basicsr.registration import component
from mclir_basicsr.runs.resume import ExactResumeMixin
from mclir_basicsr.runs.saving import AtomicSaveMixin


def _cpu_without_cuda(opt):
    """``num_gpu`` > 0 on a machine without CUDA: train (or test) on the CPU with a warning, instead of BasicSR's
    failure deep inside torch when it moves the network to 'cuda' (option files written for a GPU run as they are)."""
    if opt.get('num_gpu') and not torch.cuda.is_available():
        get_root_logger().warning(f'num_gpu: {opt["num_gpu"]}, but CUDA is not available here '
                                  '(torch.cuda.is_available() is False): running on the CPU; set num_gpu: 0 to '
                                  'silence this.')
        opt['num_gpu'] = 0


def _own_loss(cls, section, device):
    """The add-on's loss ``cls`` from its validated option section (None when the section is off): built from the
    class itself, not by name, so a loss another program registered under the same short name is never used."""
    if section is None:
        return None
    return cls(**{k: v for k, v in section.items() if k != 'type'}).to(device)


@component('model')
class ModelContrastiveModel(ExactResumeMixin, CheckpointGuardMixin, AtomicSaveMixin, TorchOptimMixin, SRModel):
    """SRModel with K history negatives pushed away by SPNLoss."""

    def __init__(self, opt):
        _cpu_without_cuda(opt)
        if opt['is_train']:
            self.mclir = parse_mclir_options(opt)  # before any network is built
            check_optim(opt['train'])
        super().__init__(opt)

    # ------------------------------------------------------------------ set-up
    def init_training_settings(self):
        with self._srmodel_losses():
            super().init_training_settings()
        self.amp = dtype_or_none(self.mclir.amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.amp_skipped = 0
        cfg = self.mclir
        from mclir_basicsr import losses  # here: importing a loss module first imports basicsr, which imports this one
        self.cri_spn = _own_loss(losses.SPNLoss, cfg.spn, self.device)
        self.cri_cr = _own_loss(losses.CRLoss, cfg.cr, self.device)
        self.cri_uncertainty = _own_loss(losses.UncertaintyWeightedLoss, cfg.uncertainty, self.device)
        self.negatives = self._build_negatives() if cfg.negatives is not None else None
        if 'use_grad_norm' in self.opt['train']:
            get_root_logger().warning('train.use_grad_norm is not read (nor was it by the official fork, whose example '
                                      'files carry it): no gradient clipping; train.use_grad_clip: <max norm> clips.')
        if cfg.cr is not None:
            get_root_logger().info(f'MCLIR: CR term (gt positive, degraded input negative), feature='
                                   f'{cfg.cr["feature"]}, loss_weight={cfg.cr["loss_weight"]}')
        if not (cfg.spn_on or cfg.cr or cfg.uncertainty):
            get_root_logger().info(f'MCLIR: SPN is off (no train.spn_opt): training as SRModel'
                                   f'{", amp " + cfg.amp if self.amp else ""}.')

    @contextlib.contextmanager
    def _srmodel_losses(self):
        """SRModel's set-up, minus what the add-on owns: the official fork's perceptual_opt is the SPN term (not a
        perceptual loss), and a run whose only reconstruction loss is the add-on's (e.g. uncertainty_opt without
        pixel_opt) must not hit SRModel's 'Both pixel and perceptual losses are None'."""
        train_opt = self.opt['train']
        official_percep = train_opt.pop('perceptual_opt') if self.mclir.official else None
        add_on_only = not train_opt.get('pixel_opt') and not train_opt.get('perceptual_opt') and bool(
            self.mclir.cr or self.mclir.uncertainty)  # SPN alone is no reconstruction loss: SRModel's error stands
        if add_on_only:  # built, then dropped: SRModel only checks that one of its losses exists
            train_opt['pixel_opt'] = {'type': 'L1Loss'}
        try:
            yield
        finally:
            if add_on_only:
                train_opt.pop('pixel_opt')
                self.cri_pix = None
            if official_percep is not None:
                train_opt['perceptual_opt'] = official_percep

    def _build_negatives(self):
        neg = self.mclir.negatives
        schedule = None
        if neg['refresh'] == 'adaptive':
            schedule = AdaptiveRefresh(len(neg['update_every']), neg['adaptive_threshold'], neg['adaptive_decay'],
                                       neg['adaptive_min_gap'], neg['adaptive_statistic'])
        pool = NegativePool(
            self.get_bare_model(self.net_g), neg['update_every'], neg['decay'], neg['init_decay'],
            make_fresh=lambda: build_network(self.opt['network_g']), dtype=getattr(torch, neg['dtype']),
            autocast=dtype_or_none(neg['autocast']), channels_last=neg['channels_last'], schedule=schedule)
        pool.broadcast(src=0)  # DDP synced net_g; the fresh initial blends differ per rank
        spn = self.mclir.spn
        get_root_logger().info(
            f'MCLIR: {len(pool)} negative model(s), {describe_refresh(neg)}, init_decay={neg["init_decay"]}, '
            f'split_batch={neg["split_batch"]}; SPN: '
            + (f'feature={spn["feature"]}, mode={spn["mode"]}, loss_weight={spn["loss_weight"]}' if spn else 'off')
            + f'; uncertainty loss: {"on" if self.cri_uncertainty else "off"}; amp={self.mclir.amp}')
        return pool

    # ------------------------------------------------------------------ training step
    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            self.output = self.net_g(self.lq)
            l_total, loss_dict = self._reconstruction_losses()
            for name, term in self._add_on_terms(current_iter):
                loss_dict[name] = term
                if name.startswith('l_'):
                    l_total = l_total + term
        self._stop_if_not_finite(l_total, loss_dict, current_iter)
        self._backward_and_step(l_total)

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.scaler is not None:
            self.log_dict['amp_scale'] = self.scaler.get_scale()
            self.log_dict['amp_skipped'] = self.amp_skipped
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        if self.negatives is not None:
            self._refresh_negatives(current_iter)

    def _add_on_terms(self, current_iter):
        """(name, value) of the add-on's loss terms (``l_*``, summed into the loss) and logged distances."""
        if self.negatives is not None:
            negs, owners = self._negative_outputs(current_iter)
            if self.cri_spn is not None:
                l_spn, distances = self.cri_spn(self.output, negs, self.gt, owners=owners,
                                                num_negatives=len(self.negatives))
                yield 'l_spn', l_spn
                yield from ((f'd_neg{k}', d) for k, d in enumerate(distances))
            if self.cri_uncertainty is not None:
                yield 'l_uncertainty', self.cri_uncertainty(self.output, self.gt, negs)
        if self.cri_cr is not None:
            yield 'l_cr', self.cri_cr(self.output, self.gt, self.lq)

    def _negative_outputs(self, current_iter):
        """The negatives' outputs for this batch: (K, B, ...) and owners None, or with split batch (B, ...) and
        the owners, sample i meeting negative (i + iter) mod K; the rotation comes from the iteration, so it is
        the same on every rank and after a resume."""
        if self.mclir.negatives['split_batch']:
            return self.negatives.split(self.lq, rotation=current_iter % len(self.negatives))
        return self.negatives(self.lq), None

    def _refresh_negatives(self, current_iter):
        refreshed = self.negatives.step(current_iter, self.get_bare_model(self.net_g), self.output, self.gt)
        if self.negatives.last_statistic is None:  # the periodic schedule: nothing more to log
            return
        self.log_dict['neg_statistic'] = self.negatives.last_statistic
        self.log_dict['neg_refreshes'] = self.negatives.schedule.count
        events = self._tensorboard()  # every step's statistic and every refresh, not only the print_freq samples
        if events is not None:
            events.add_scalar('negatives/statistic', self.negatives.last_statistic, current_iter)
            for k in refreshed:
                events.add_scalar('negatives/refreshed', k, current_iter)
        if refreshed:
            get_root_logger().info(
                f'MCLIR: iteration {current_iter}: statistic {self.negatives.last_statistic:.4g} > '
                f'{self.negatives.schedule.threshold:g}: refreshed negative {refreshed[0]} '
                f'({self.negatives.schedule.count} adaptive refreshes so far)')

    def _tensorboard(self):
        """A SummaryWriter in BasicSR's tensorboard folder of this run (rank 0, when BasicSR writes one), or None."""
        if not hasattr(self, '_events'):
            self._events = None
            logger_opt = self.opt.get('logger') or {}
            if (logger_opt.get('use_tb_logger') and 'debug' not in self.opt['name'] and self.opt.get('rank', 0) == 0
                    and 'root_path' in self.opt):
                from torch.utils.tensorboard import SummaryWriter  # only runs that log to tensorboard pay for it
                self._events = SummaryWriter(os.path.join(self.opt['root_path'], 'tb_logger', self.opt['name']),
                                             filename_suffix='.mclir', flush_secs=10)
                atexit.register(self._events.close)
        return self._events

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
        clip = self.opt['train'].get('use_grad_clip')
        if self.scaler is None:
            l_total.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), clip)
            self.optimizer_g.step()
            return
        scale = self.scaler.get_scale()
        self.scaler.scale(l_total).backward()
        if clip:
            self.scaler.unscale_(self.optimizer_g)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), clip)
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
    def feed_data(self, data):
        super().feed_data(data)
        self._lq_path = (data.get('lq_path') or [None])[0]

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """SRModel's validation; with ``uncertainty_opt.save_map`` and ``val.save_img`` it also saves each image's
        weight map as ``<image>_<iter>_uncertainty.png`` next to BasicSR's output image."""
        unc = self.cri_uncertainty if self.opt['is_train'] else None
        self._map_iter = current_iter if save_img and unc is not None and unc.save_map else None
        try:
            return super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._map_iter = None

    def test(self):
        """SRModel's test, the input padded to a multiple of ``network_g.window_size`` (as SwinIRModel)."""
        lq = self.lq
        self.lq, size = self._pad(lq)
        try:
            super().test()
            self.output = self._crop(self.output, size)
            if getattr(self, '_map_iter', None) is not None:
                self._save_uncertainty_map(self._crop(self.negatives(self.lq), size))
        finally:
            self.lq = lq

    def _pad(self, x):
        multiple = int(self.opt['network_g'].get('window_size') or 1)
        h, w = x.shape[-2:]
        if multiple > 1:
            x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), 'reflect')
        return x, (h, w)

    def _crop(self, y, size):
        scale = self.opt.get('scale', 1)
        return y[..., :size[0] * scale, :size[1] * scale]

    def _save_uncertainty_map(self, negs):
        weights = self.cri_uncertainty.weights(self.output, negs)[0, 0]
        img = (weights / self.cri_uncertainty.cap * 255).round().byte().cpu().numpy()
        name = os.path.splitext(os.path.basename(self._lq_path or 'image'))[0]
        imwrite(img, os.path.join(self.opt['path']['visualization'], name, f'{name}_{self._map_iter}_uncertainty.png'))
