"""NegativePool: the "history" of MCLIR, K lagged copies of the network being trained.

Each negative is an :class:`AveragedCopy` of the network (the idea of torch's ``AveragedModel`` and timm's
``ModelEmaV3``: a frozen copy with one update method), refreshed from the bare, unwrapped network after the
optimiser step:

    theta_k <- d * theta_k + (1 - d) * theta

for parameters and floating-point buffers alike (integer buffers such as BatchNorm's ``num_batches_tracked``
are copied). *When* negative k is refreshed is the pool's schedule, one of two triggers:

* :class:`PeriodicRefresh` (the paper): negative k every ``update_every[k]`` iterations (at the
  iterations that are multiples of it), with ``d = decay[k]``;
* :class:`AdaptiveRefresh` (the official FFA-Net code, here for any network): after a step whose
  error statistic (by default the batch mean of each sample's standard deviation of
  2 * (out - gt)) exceeds a threshold, one negative, round robin, with ``d = adaptive_decay``
  (0.001: a near-total copy), at least ``min_gap`` iterations after the previous one. The
  statistic is averaged over the ranks in DDP, so every rank takes the same decision.

At construction each negative starts as ``theta_k = init_decay * theta_fresh_k + (1 - init_decay) * theta``,
``theta_fresh_k`` a freshly initialised copy of the architecture (the official ``neg_start``). Negatives are
plain modules, never registered under the trained model, never wrapped in DistributedDataParallel, always in
eval mode without gradients; a refresh is a few ``torch._foreach_lerp_`` calls, the same on every rank.

Which samples meet which negatives in a step is the pool's :meth:`NegativePool.route` (the one place that
decides it): every sample meets all K (the paper); with ``split_batch`` sample i meets negative
(i + iteration) mod K only; with ``samples_per_step`` n, the SPN term uses n samples of the batch drawn at
random (a generator seeded from the run's seed and the iteration: the same on every rank and after a resume;
each rank draws from its own local batch), which rotate over the negatives when split.
"""
import copy
import hashlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from mclir_basicsr.errors import MCLIRError


class NegativePoolStateError(MCLIRError, RuntimeError):
    """A saved pool that does not fit the current options or architecture."""


def _float_and_other_tensors(module):
    """(floating tensors, other tensors) of a module: parameters then buffers, in a fixed order."""
    tensors = [p for _, p in module.named_parameters()] + [b for _, b in module.named_buffers()]
    floats = [t for t in tensors if t.is_floating_point()]
    others = [t for t in tensors if not t.is_floating_point()]
    return floats, others


class PeriodicRefresh:
    """Negative k every ``update_every[k]`` iterations, with ``decay[k]``."""
    kind = 'periodic'

    def __init__(self, update_every: Sequence[int], decay: Sequence[float]):
        self.update_every = [int(p) for p in update_every]
        self.decay = [float(d) for d in decay]

    def measure(self, out, gt):
        """No statistic: the periods alone decide."""
        return None

    def due(self, current_iter, statistic=None):
        """[(k, decay)] of the negatives to refresh after iteration ``current_iter``."""
        return [(k, self.decay[k]) for k, period in enumerate(self.update_every) if current_iter % period == 0]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def error_statistic(out: torch.Tensor, gt: torch.Tensor, kind: str = 'residual_std') -> torch.Tensor:
    """The adaptive trigger's statistic of one batch, a 0-dim float32 tensor. ``residual_std``: each
    sample's standard deviation of 2 * (out - gt) over C, H, W, averaged over the batch (the official
    code's); ``residual_abs``: mean |out - gt|."""
    with torch.no_grad():
        residual = out.detach().float() - gt.float()
        if kind == 'residual_abs':
            return residual.abs().mean()
        if kind != 'residual_std':
            raise ValueError(f'unknown adaptive statistic {kind!r}: residual_std or residual_abs')
        return (2 * residual).flatten(1).std(dim=1).mean()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a 0-dim tensor over the DDP ranks (the value itself when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= torch.distributed.get_world_size()
    return value


class AdaptiveRefresh:
    """One negative, round robin, with ``decay`` after a step whose statistic exceeds ``threshold``, at least
    ``min_gap`` iterations after the previous adaptive refresh."""
    kind = 'adaptive'

    def __init__(self, num_negatives: int, threshold: float, decay: float = 0.001, min_gap: int = 1,
                 statistic: str = 'residual_std'):
        if min_gap < 1:
            raise ValueError(f'min_gap must be >= 1, got {min_gap}')
        self.num_negatives, self.threshold, self.decay = int(num_negatives), float(threshold), float(decay)
        self.min_gap, self.statistic = int(min_gap), statistic
        self.count, self.last_iter = 0, None  # adaptive refreshes so far, iteration of the last one

    def measure(self, out, gt) -> float:
        """The statistic of this step, averaged over the ranks (every rank gets the same number)."""
        return float(mean_over_ranks(error_statistic(out, gt, self.statistic)))

    def due(self, current_iter, statistic=None):
        if statistic is None:
            raise ValueError('the adaptive refresh needs the error statistic of the step')
        if statistic <= self.threshold:
            return []
        if self.last_iter is not None and current_iter - self.last_iter < self.min_gap:
            return []
        k = self.count % self.num_negatives
        self.count += 1
        self.last_iter = current_iter
        return [(k, self.decay)]

    def state_dict(self):
        return {'count': self.count, 'last_iter': self.last_iter}

    def load_state_dict(self, state):
        self.count, self.last_iter = int(state['count']), state['last_iter']


class AveragedCopy:
    """One negative model: a frozen copy of a network that :meth:`update` moves toward it,
    ``theta <- decay * theta + (1 - decay) * theta_net``. Stored in ``dtype`` (float32, or bfloat16 to halve
    its memory), optionally channels_last; :meth:`__call__` runs it without gradient, under ``autocast`` when
    given, and returns float32."""

    def __init__(self, net: nn.Module, fresh: Optional[nn.Module] = None, fresh_weight: float = 0.0,
                 dtype: torch.dtype = torch.float32, autocast: Optional[torch.dtype] = None, channels_last=False):
        self.module = copy.deepcopy(net)
        if fresh_weight > 0:  # theta = w * theta_fresh + (1 - w) * theta, before the storage format is applied
            with torch.no_grad():
                torch._foreach_lerp_(_float_and_other_tensors(self.module)[0], _float_and_other_tensors(fresh)[0],
                                     fresh_weight)
        self.module.requires_grad_(False).eval()
        self.dtype, self.autocast, self.channels_last = dtype, autocast, channels_last
        self.forward = None  # a function (module, x) -> y run in place of module(x), e.g. a compiled forward
        if dtype != torch.float32:
            self.module.to(dtype=dtype)
        if channels_last:
            self.module.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float):
        dst_f, dst_o = _float_and_other_tensors(self.module)
        src_f, src_o = _float_and_other_tensors(net)
        if len(dst_f) != len(src_f):
            raise NegativePoolStateError('a negative and the network have different tensors')
        if self.dtype != torch.float32:  # lerp in the source precision, then store
            src_f = [s.to(self.dtype) for s in src_f]
        torch._foreach_lerp_(dst_f, src_f, 1.0 - decay)
        for t, s in zip(dst_o, src_o):
            t.copy_(s)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype != torch.float32 and self.autocast is None:
            x = x.to(self.dtype)
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return (self.module(x) if self.forward is None else self.forward(self.module, x)).float()


@dataclass(frozen=True)
class Routing:
    """Which samples of a batch the SPN term uses in a step, and which negative each of them meets."""
    samples: Optional[torch.Tensor] = None  # (n,) sorted indices into the batch; None: every sample
    owners: Optional[torch.Tensor] = None  # (n,) the negative each used sample meets; None: all K

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The used samples of a batch tensor (x itself when every sample is used)."""
        return x if self.samples is None else x.index_select(0, self.samples.to(x.device))

    def part(self, start: int, stop: int) -> 'Routing':
        """The routing of the batch's samples start..stop-1 (a micro-batch of an accumulated step), indices
        relative to ``start``: a step is routed once over all its samples, then each micro-batch takes its part."""
        if self.samples is None:
            return Routing(None, None if self.owners is None else self.owners[start:stop])
        mask = (self.samples >= start) & (self.samples < stop)
        return Routing(self.samples[mask] - start, None if self.owners is None else self.owners[mask])

    def used(self, batch: int) -> int:
        """How many of a batch of ``batch`` samples the SPN term uses."""
        return batch if self.samples is None else int(self.samples.numel())


def step_generator(seed: int, iteration: int) -> torch.Generator:
    """A CPU generator for the random choices of one iteration, from the run's seed alone (the global RNG is
    never touched, so the rest of training draws the same numbers with or without them)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(iteration)) % (2 ** 63))


class NegativePool:
    """K negative models (:class:`AveragedCopy`), the schedule that refreshes them (periodic by default) and the
    routing of samples to negatives (:meth:`route`)."""

    def __init__(self, net: nn.Module, update_every: Sequence[int], decay: Sequence[float], init_decay: float = 0.1,
                 make_fresh: Optional[Callable[[], nn.Module]] = None, dtype: torch.dtype = torch.float32,
                 autocast: Optional[torch.dtype] = None, channels_last: bool = False, schedule=None,
                 split_batch: bool = False, samples_per_step: Optional[int] = None):
        if len(update_every) != len(decay) or not update_every:
            raise ValueError('update_every and decay need one entry per negative (K >= 1)')
        if init_decay > 0 and make_fresh is None:
            raise ValueError('init_decay > 0 needs make_fresh (a function building a fresh network)')
        self.update_every = [int(p) for p in update_every]
        self.decay = [float(d) for d in decay]
        self.schedule = schedule or PeriodicRefresh(self.update_every, self.decay)
        self.init_decay = float(init_decay)
        self.split_batch, self.samples_per_step = bool(split_batch), samples_per_step
        self.arch = type(net).__name__
        self.refreshes = [0] * len(self.update_every)
        self.last_statistic = None
        device = next(iter(net.parameters())).device
        self.copies = [AveragedCopy(net, make_fresh().to(device) if self.init_decay > 0 else None, self.init_decay,
                                    dtype, autocast, channels_last) for _ in self.update_every]

    def use_forward(self, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        """Run every negative as ``forward(module, x)`` (one function for the K copies: e.g. the architecture's
        forward compiled once, :mod:`mclir_basicsr.models.compiling`)."""
        for c in self.copies:
            c.forward = forward

    @property
    def negatives(self) -> List[nn.Module]:
        """The K negative networks (modules), in order."""
        return [c.module for c in self.copies]

    def __len__(self):
        return len(self.copies)

    @torch.no_grad()
    def broadcast(self, src: int = 0):
        """Make every rank's negatives equal to rank `src`'s (the fresh inits differ per rank)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for neg in self.negatives:
                for t in neg.state_dict().values():
                    torch.distributed.broadcast(t, src)

    # ------------------------------------------------------------------ refresh
    def refresh(self, k: int, net: nn.Module, decay: Optional[float] = None):
        """theta_k <- d * theta_k + (1 - d) * theta, now; d = ``decay`` or the periodic ``decay[k]``."""
        self.copies[k].update(net, self.decay[k] if decay is None else decay)
        self.refreshes[k] += 1

    def step(self, current_iter: int, net: nn.Module, out: Optional[torch.Tensor] = None,
             gt: Optional[torch.Tensor] = None) -> List[int]:
        """Refresh the negatives the schedule says are due (call after the optimiser step; the adaptive
        schedule needs the step's output and ground truth, of the whole batch). Returns the refreshed indices."""
        statistic = self.last_statistic = self.schedule.measure(out, gt)  # None for the periodic schedule
        due = self.schedule.due(current_iter, statistic)
        for k, decay in due:
            self.refresh(k, net, decay)
        return [k for k, _ in due]

    # ------------------------------------------------------------------ routing and forward
    def owners(self, batch: int, rotation: int) -> torch.Tensor:
        """Which negative each of ``batch`` samples meets in the split estimator: (i + rotation) mod K, (batch,)."""
        return (torch.arange(batch) + rotation) % len(self.copies)

    def route(self, batch: int, iteration: int, seed: int = 0) -> Routing:
        """This iteration's :class:`Routing` of a batch of ``batch`` samples: a random subset of
        ``samples_per_step`` of them (all when None or not fewer than the batch), each meeting every negative or,
        with ``split_batch``, negative (j + iteration) mod K for the j-th used sample."""
        samples, n = None, batch
        if self.samples_per_step is not None and self.samples_per_step < batch:
            n = self.samples_per_step
            samples = torch.randperm(batch, generator=step_generator(seed, iteration))[:n].sort().values
        return Routing(samples, self.owners(n, iteration % len(self.copies)) if self.split_batch else None)

    @torch.inference_mode()
    def outputs(self, x: torch.Tensor, routing: Routing = Routing()) -> torch.Tensor:
        """The negatives' outputs for the used samples of batch ``x``: (K, n, C, H, W) when every used sample
        meets every negative, (n, C, H, W) when each meets its owner (the K negatives then run n samples in all)."""
        x = routing.select(x)
        if routing.owners is None:
            return torch.stack([c(x) for c in self.copies])
        owners = routing.owners.to(x.device)
        out = None
        for k, c in enumerate(self.copies):
            index = (owners == k).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            y = c(x.index_select(0, index))
            if out is None:
                out = y.new_empty((x.shape[0],) + y.shape[1:])
            out.index_copy_(0, index, y)
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All negatives' outputs for one batch, stacked on a new first dim: (K, B, C, H, W)."""
        return self.outputs(x)

    def split(self, x: torch.Tensor, rotation: int):
        """Split-batch negatives of the whole batch: sample i through negative (i + rotation) mod K only.
        Returns (outputs (B, C, H, W), owners (B,) on x's device)."""
        owners = self.owners(x.shape[0], rotation).to(x.device)
        return self.outputs(x, Routing(owners=owners)), owners

    # ------------------------------------------------------------------ state
    def fingerprints(self):
        """A short hash of each negative's tensors (to compare negatives across ranks)."""
        out = []
        for neg in self.negatives:
            h = hashlib.sha1()
            for t in neg.state_dict().values():
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            out.append(h.hexdigest()[:16])
        return out

    def state_dict(self):
        return {
            'version': 1,
            'arch': self.arch,
            'update_every': list(self.update_every),
            'decay': list(self.decay),
            'init_decay': self.init_decay,
            'refreshes': list(self.refreshes),
            'schedule': {'kind': self.schedule.kind, **self.schedule.state_dict()},
            'negatives': [{k: v.detach().cpu().clone() for k, v in neg.state_dict().items()}
                          for neg in self.negatives],
        }

    def load_state_dict(self, state):
        """Restore negatives. Different K or architecture: NegativePoolStateError, naming both."""
        saved_k = len(state['negatives'])
        if saved_k != len(self.negatives):
            raise NegativePoolStateError(
                f'the training state holds {saved_k} negative model(s) but the options define {len(self)} '
                f'(train.negatives.update_every has {len(self)} entries); resume with the same K or start a new run')
        if state.get('arch') != self.arch:
            raise NegativePoolStateError(
                f'the training state holds negatives of architecture {state.get("arch")!r} but network_g is '
                f'{self.arch!r}; resume with the same network_g or start a new run')
        for k, (neg, sd) in enumerate(zip(self.negatives, state['negatives'])):
            own = neg.state_dict()
            bad = sorted(set(own) ^ set(sd)) + sorted(
                n for n in set(own) & set(sd) if own[n].shape != sd[n].shape)
            if bad:
                raise NegativePoolStateError(
                    f'negative {k} in the training state does not fit network_g ({self.arch}): '
                    f'tensors differ at {", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}; '
                    'resume with the same network_g options or start a new run')
            neg.load_state_dict(sd)
        self.refreshes = list(state.get('refreshes', self.refreshes))
        schedule = dict(state.get('schedule') or {'kind': 'periodic'})
        if schedule.pop('kind') == self.schedule.kind:  # a run resumed with the other trigger starts it afresh
            self.schedule.load_state_dict(schedule)
