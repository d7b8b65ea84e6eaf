"""ModelContrastiveModel: BasicSR's SRModel plus history negatives and the SPN loss.

Works with any network in ARCH_REGISTRY, for SR (x2/x3/x4) and scale-1 restoration alike. Validation,
metrics, EMA, schedulers, logging and the checkpoint format are SRModel's. The method:

* set-up: the validated MCLIR options (:mod:`mclir_basicsr.options`), the negative pool (its schedule and its
  routing of samples to negatives, :mod:`mclir_basicsr.history`), SPNLoss, and the optional CRLoss and
  UncertaintyWeightedLoss. Without ``train.spn_opt``, ``cr_opt`` and ``uncertainty_opt`` the step is SRModel's;
* the step: ``L = L_pix (+ L_percep) + L_spn (+ L_uncertainty) (+ L_cr)``; the negatives' outputs of the step
  feed SPN and the uncertainty weights alike (one pass); the refresh of the negatives after the optimiser step;
* the negatives (and their schedule) in the training state.

Here too: padding to the window size and the uncertainty weight maps at test time, and the adaptive refresh's
tensorboard record (:class:`RefreshEvents`). Small collaborators do the rest: the step's precision, scaler and
clipping (:mod:`.precision`), the non-finite and checkpoint guards and the network's scale check
(:mod:`.guards`), torch's optimisers and schedulers by name (:mod:`.optim`); exact resume and an RNG-neutral
validation (:mod:`mclir_basicsr.runs.resume`) and atomic saves (:mod:`mclir_basicsr.runs.saving`). GPU option
files on a CPU: :func:`cpu_without_cuda`.
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
from torch.nn.parallel import DistributedDataParallel

from mclir_basicsr.history import AdaptiveRefresh, NegativePool
from mclir_basicsr.ignored_options import ignored_options
from mclir_basicsr.models.compiling import compile_negatives, compile_network, compiled_forward
from mclir_basicsr.models.guards import (  # noqa: F401  (the errors: part of this module's API)
    CheckpointGuardMixin,
    CheckpointMismatchError,
    NonFiniteError,
    check_output_scale,
    stop_if_not_finite,
)
from mclir_basicsr.models.optim import TorchOptimMixin
from mclir_basicsr.models.precision import StepPrecision
from mclir_basicsr.options import dtype_or_none, parse_mclir_options
from mclir_basicsr.preflight.optim import check_optim
from mclir_basicsr.registration import component
from mclir_basicsr.runs.resume import ExactResumeMixin
from mclir_basicsr.runs.saving import AtomicSaveMixin


# ---------------------------------------------------------------------------- evaluation helpers
def pad_to_multiple(x, multiple):
    """(x reflect-padded at the bottom and right to a multiple of ``multiple``, its (h, w) before)."""
    h, w = x.shape[-2:]
    if multiple > 1:
        x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), 'reflect')
    return x, (h, w)


def crop_to(y, size, scale):
    """The output of a padded input, cropped to ``scale`` times the input's (h, w)."""
    return y[..., :size[0] * scale, :size[1] * scale]


def save_weight_map(weights, cap, visualization_dir, lq_path, current_iter):
    """Write a (H, W) weight map in [0, cap] as ``<image>/<image>_<iter>_uncertainty.png`` (0..255)."""
    img = (weights / cap * 255).round().byte().cpu().numpy()
    name = os.path.splitext(os.path.basename(lq_path or 'image'))[0]
    imwrite(img, os.path.join(visualization_dir, name, f'{name}_{current_iter}_uncertainty.png'))


class RefreshEvents:
    """The adaptive refresh's record in the run's tensorboard folder: every step's statistic
    (``negatives/statistic``) and every refresh (``negatives/refreshed``, the negative's index), not only BasicSR's
    ``print_freq`` samples of the log. Rank 0 only, and only for runs that log to tensorboard as BasicSR does: a
    SummaryWriter in BasicSR's ``tb_logger/<name>`` folder, opened at the first event."""

    def __init__(self, opt):
        logger_opt = opt.get('logger') or {}
        self.folder = None
        if (logger_opt.get('use_tb_logger') and 'debug' not in opt['name'] and opt.get('rank', 0) == 0
                and 'root_path' in opt):
            self.folder = os.path.join(opt['root_path'], 'tb_logger', opt['name'])
        self._writer = None

    def write(self, statistic, refreshed, current_iter):
        if self.folder is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # only runs that log to tensorboard pay for it
            self._writer = SummaryWriter(self.folder, filename_suffix='.mclir', flush_secs=10)
            atexit.register(self._writer.close)
        self._writer.add_scalar('negatives/statistic', statistic, current_iter)
        for k in refreshed:
            self._writer.add_scalar('negatives/refreshed', k, current_iter)


def micro_batches(total, accumulate):
    """[(start, stop)] of the ``accumulate`` micro-batches of a batch of ``total`` samples (equal sizes when
    ``accumulate`` divides ``total``, as when the loader hands N x B; never an empty one)."""
    n = max(1, min(int(accumulate), total))
    return [(i * total // n, (i + 1) * total // n) for i in range(n)]


def _weighted(term, weight):
    """term * weight; the term itself at weight 1 (no extra operation: a step without accumulation is unchanged)."""
    return term if weight == 1 else term * weight


class StepLog:
    """The logged terms of a step from those of its micro-batches: each loss term as the step's loss carries it
    (the sum of the weighted parts), each ``d_negk`` as the mean over all the samples negative k met in the step.
    With one micro-batch its terms are logged as they are."""

    def __init__(self, num_negatives, parts):
        self.k, self.parts, self.sums, self.counts = num_negatives, parts, OrderedDict(), {}

    def add(self, terms, weights, routing, batch):
        if self.parts == 1:
            self.sums = terms
            return
        counts = None
        if routing is not None and self.k:
            n = routing.used(batch)
            counts = torch.full((self.k,), float(n)) if routing.owners is None else \
                torch.bincount(routing.owners.cpu(), minlength=self.k).float()
        for name, term in terms.items():
            term = term.detach()
            if name.startswith('d_neg'):
                c = counts[int(name[5:])]
                value, self.counts[name] = term * c, self.counts.get(name, 0) + c
            else:
                value = term * weights['spn' if name == 'l_spn' else 'sample']
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def result(self):
        if self.parts == 1:
            return self.sums
        return OrderedDict((name, v / self.counts[name].clamp(min=1) if name in self.counts else v)
                           for name, v in self.sums.items())


def cpu_without_cuda(opt):
    """``num_gpu`` > 0 where CUDA is not available: train (or test) on the CPU with a warning, instead of BasicSR's
    failure deep inside torch when it moves the network to 'cuda' (the option file runs as it is)."""
    if opt.get('num_gpu') and not torch.cuda.is_available():
        get_root_logger().warning(f'num_gpu: {opt["num_gpu"]}, but CUDA is not available here '
                                  '(torch.cuda.is_available() is False): running on the CPU; set num_gpu: 0 to '
                                  'silence this.')
        opt['num_gpu'] = 0


def _own_loss(cls, section, device):
    """The add-on's loss ``cls`` from its validated option section (None when the section is off): built from the
    class itself, not by name, so a loss another program registered under the same short name is never used."""
    return None if section is None else cls(config=section).to(device)


@component('model')
class ModelContrastiveModel(ExactResumeMixin, CheckpointGuardMixin, AtomicSaveMixin, TorchOptimMixin, SRModel):
    """SRModel with K history negatives pushed away by SPNLoss."""
    runs_steps_as_micro_batches = True  # train.accumulate: the loader hands a step's N x B samples (runs.accumulation)

    def __init__(self, opt):
        cpu_without_cuda(opt)
        if opt['is_train']:
            self.mclir = parse_mclir_options(opt)  # before any network is built
            check_optim(opt['train'])
        super().__init__(opt)

    # ------------------------------------------------------------------ set-up
    def init_training_settings(self):
        with self._srmodel_losses():
            super().init_training_settings()
        cfg = self.mclir
        for warning in ignored_options(self.opt, cfg):
            get_root_logger().warning(warning)
        self.precision = StepPrecision(dtype_or_none(cfg.amp), self.device.type, self.opt['train'].get('use_grad_clip'))
        from mclir_basicsr import losses  # here: importing a loss module first imports basicsr, which imports this one
        self.cri_spn = _own_loss(losses.SPNLoss, cfg.spn, self.device)
        self.cri_cr = _own_loss(losses.CRLoss, cfg.cr, self.device)
        self.cri_uncertainty = _own_loss(losses.UncertaintyWeightedLoss, cfg.uncertainty, self.device)
        self.negatives = self._build_negatives() if cfg.negatives is not None else None
        bare = self.get_bare_model(self.net_g)
        self.compiled_g = compile_network(bare, cfg.compile)  # None: eager
        compile_negatives(self.negatives, bare, cfg.compile)
        if cfg.accumulate > 1 or cfg.compile:
            get_root_logger().info(
                f'MCLIR: {cfg.accumulate} micro-batch(es) of {self.opt["datasets"]["train"]["batch_size_per_gpu"]} per '
                f'optimiser step; torch.compile: {cfg.compile.model_dump() if cfg.compile else "off"} '
                '(docs/accumulate_and_compile.md)')
        self.events = RefreshEvents(self.opt)
        check_output_scale(self.get_bare_model(self.net_g), self.opt, self.device)
        if cfg.cr is not None:
            get_root_logger().info(f'MCLIR: CR term (gt positive, degraded input negative), feature='
                                   f'{cfg.cr.feature}, loss_weight={cfg.cr.loss_weight}')
        if not (cfg.spn_on or cfg.cr or cfg.uncertainty):
            get_root_logger().info(f'MCLIR: SPN is off (no train.spn_opt): training as SRModel'
                                   f'{", amp " + cfg.amp if cfg.amp else ""}.')

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
        if neg.refresh == 'adaptive':
            schedule = AdaptiveRefresh(len(neg.update_every), neg.adaptive_threshold, neg.adaptive_decay,
                                       neg.adaptive_min_gap, neg.adaptive_statistic)
        pool = NegativePool(
            self.get_bare_model(self.net_g), neg.update_every, neg.decay, neg.init_decay,
            make_fresh=lambda: build_network(self.opt['network_g']), dtype=getattr(torch, neg.dtype),
            autocast=dtype_or_none(neg.autocast), channels_last=neg.channels_last, schedule=schedule,
            split_batch=neg.split_batch, samples_per_step=neg.samples_per_step)
        pool.broadcast(src=0)  # DDP synced net_g; the fresh initial blends differ per rank
        spn = self.mclir.spn
        get_root_logger().info(
            f'MCLIR: {len(pool)} negative model(s), {neg.describe_refresh()}, init_decay={neg.init_decay}, '
            f'split_batch={neg.split_batch}, samples_per_step={neg.samples_per_step}; SPN: '
            + (f'feature={spn.feature}, mode={spn.mode}, loss_weight={spn.loss_weight}' if spn else 'off')
            + f'; uncertainty loss: {"on" if self.cri_uncertainty else "off"}; amp={self.mclir.amp}')
        return pool

    @property
    def amp_skipped(self):
        """Optimiser steps the float16 scaler skipped (overflows) so far."""
        return self.precision.skipped

    # ------------------------------------------------------------------ training step
    def optimize_parameters(self, current_iter):
        """One optimiser step on the fed batch, run as ``train.accumulate`` micro-batches (one when 1): the step is
        routed once over all its samples (split owners, the ``samples_per_step`` subset), each micro-batch's terms
        are weighted by its share of the samples each term averages over, and its gradients are added to the
        others' (DDP all-reduces them with the last micro-batch only); then one optimiser step, EMA and refresh."""
        self.optimizer_g.zero_grad()
        total = self.lq.shape[0]
        routing = None if self.negatives is None else \
            self.negatives.route(total, current_iter, self.opt.get('manual_seed') or 0)
        used = total if routing is None else routing.used(total)
        parts = micro_batches(total, self.mclir.accumulate)
        log, outputs = StepLog(len(self.negatives) if self.negatives is not None else 0, len(parts)), []
        for j, (start, stop) in enumerate(parts):
            part = None if routing is None else routing.part(start, stop)
            weights = {'sample': (stop - start) / total,
                       'spn': (stop - start if part is None else part.used(stop - start)) / max(used, 1)}
            with self._gradient_sync(last=j == len(parts) - 1):
                out, l_total, terms = self._micro_batch(self.lq[start:stop], self.gt[start:stop], part, weights)
                stop_if_not_finite(self.precision.loss_is_usable(l_total), terms, current_iter, self.opt['dist'])
                self.precision.backward(l_total)
            log.add(terms, weights, part, stop - start)
            outputs.append(out)
        self.output = outputs[0] if len(outputs) == 1 else torch.cat([o.detach() for o in outputs])
        self.precision.step(self.optimizer_g, self.net_g.parameters())

        self.log_dict = self.reduce_loss_dict(log.result())
        self.precision.log(self.log_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        if self.negatives is not None:
            self._refresh_negatives(current_iter)

    def _gradient_sync(self, last):
        """DDP's ``no_sync`` for every micro-batch but a step's last: one gradient all-reduce per optimiser step."""
        if last or not isinstance(self.net_g, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.net_g.no_sync()

    def _micro_batch(self, lq, gt, routing, weights):
        """(output, the micro-batch's weighted loss, its unweighted terms) of one micro-batch (the whole batch when
        not accumulating: every weight is then 1 and skipped, so the step is the one-batch step bit for bit)."""
        with self.precision.autocast():
            with compiled_forward(self.get_bare_model(self.net_g), self.compiled_g):
                out = self.net_g(lq)
            l_total, terms = self._reconstruction_losses(out, gt, weights['sample'])
            for name, term in self._add_on_terms(lq, out, gt, routing):
                terms[name] = term
                if name.startswith('l_'):
                    l_total = l_total + _weighted(term, weights['spn' if name == 'l_spn' else 'sample'])
        return out, l_total, terms

    def _add_on_terms(self, lq, out, gt, routing):
        """(name, value) of the add-on's loss terms (``l_*``, summed into the loss) and logged distances."""
        if self.negatives is not None:
            n_used = routing.used(lq.shape[0])
            negs = self.negatives.outputs(lq, routing) if n_used else None  # none: this part has no used sample
            if self.cri_spn is not None and n_used:
                l_spn, distances = self.cri_spn(routing.select(out), negs, routing.select(gt),
                                                owners=routing.owners, num_negatives=len(self.negatives))
                yield 'l_spn', l_spn
                yield from ((f'd_neg{k}', d) for k, d in enumerate(distances))
            if self.cri_uncertainty is not None:
                yield 'l_uncertainty', self.cri_uncertainty(out, gt, negs, routing.samples)
        if self.cri_cr is not None:
            yield 'l_cr', self.cri_cr(out, gt, lq)

    def _reconstruction_losses(self, out, gt, share=1.0):
        """(total, terms): SRModel's terms, the pixel loss and the perceptual/style losses, summed as SRModel sums
        them, each weighted by the micro-batch's ``share`` of the step's samples."""
        loss_dict = OrderedDict()
        l_total = 0
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(out, gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(out, gt)
            for name, term in (('l_percep', l_percep), ('l_style', l_style)):
                if term is not None:
                    loss_dict[name] = term
        for term in loss_dict.values():
            l_total = l_total + _weighted(term, share)
        return l_total, loss_dict

    def _refresh_negatives(self, current_iter):
        pool = self.negatives
        refreshed = pool.step(current_iter, self.get_bare_model(self.net_g), self.output, self.gt)
        if pool.last_statistic is None:  # the periodic schedule: nothing more to log
            return
        self.log_dict['neg_statistic'] = pool.last_statistic
        self.log_dict['neg_refreshes'] = pool.schedule.count
        self.events.write(pool.last_statistic, refreshed, current_iter)
        if refreshed:
            get_root_logger().info(
                f'MCLIR: iteration {current_iter}: statistic {pool.last_statistic:.4g} > {pool.schedule.threshold:g}: '
                f'refreshed negative {refreshed[0]} ({pool.schedule.count} adaptive refreshes so far)')

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
                **self.precision.state_dict()}

    def load_extra_training_state(self, state):
        logger = get_root_logger()
        if self.negatives is not None:
            if state.get('negatives') is not None:
                self.negatives.load_state_dict(state['negatives'])
            else:
                logger.warning('The training state has no negatives (not written by ModelContrastiveModel with SPN): '
                               'they restart from the resumed network as at the start of a run.')
        self.precision.load_state_dict(state, logger)

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
        self.lq, size = pad_to_multiple(lq, int(self.opt['network_g'].get('window_size') or 1))
        scale = self.opt.get('scale', 1)
        try:
            super().test()
            self.output = crop_to(self.output, size, scale)
            if getattr(self, '_map_iter', None) is not None:
                negs = crop_to(self.negatives(self.lq), size, scale)
                weights = self.cri_uncertainty.weights(self.output, negs)[0, 0]
                save_weight_map(weights, self.cri_uncertainty.cap, self.opt['path']['visualization'],
                                self._lq_path, self._map_iter)
        finally:
            self.lq = lq
