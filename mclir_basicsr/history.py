"""NegativePool: the "history" of MCLIR, K lagged copies of the network being trained.

A refresh of negative k, always from the bare, unwrapped network after the optimiser step, is

    theta_k <- d * theta_k + (1 - d) * theta

and *when* it happens is the pool's schedule, one of two triggers:

* :class:`PeriodicRefresh` (the paper): negative k every ``update_every[k]`` iterations (at the
  iterations that are multiples of it), with ``d = decay[k]``;
* :class:`AdaptiveRefresh` (the official FFA-Net code, here for any network): after a step whose
  error statistic (by default the batch mean of each sample's standard deviation of
  2 * (out - gt)) exceeds a threshold, one negative, round robin, with ``d = adaptive_decay``
  (0.001: a near-total copy), at least ``min_gap`` iterations after the previous one. The
  statistic is averaged over the ranks in DDP, so every rank takes the same decision.

for parameters and floating-point buffers alike (integer buffers such as BatchNorm's
``num_batches_tracked`` are copied). At construction each negative starts as

    theta_k = init_decay * theta_fresh_k + (1 - init_decay) * theta

where ``theta_fresh_k`` is a freshly initialised copy of the architecture (the official
``neg_start``). Negatives are plain modules held in a list, never registered under the trained
model, never wrapped in DistributedDataParallel, always in eval mode without gradients. The
refresh is a handful of ``torch._foreach_lerp_`` calls, the same on every rank.
"""
import copy
import hashlib
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn


class NegativePoolStateError(RuntimeError):
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


class NegativePool:
    """K negative models and the schedule that refreshes them (periodic by default)."""

    def __init__(self, net: nn.Module, update_every: Sequence[int], decay: Sequence[float], init_decay: float = 0.1,
                 make_fresh: Optional[Callable[[], nn.Module]] = None, dtype: torch.dtype = torch.float32,
                 autocast: Optional[torch.dtype] = None, channels_last: bool = False, schedule=None):
        if len(update_every) != len(decay) or not update_every:
            raise ValueError('update_every and decay need one entry per negative (K >= 1)')
        self.update_every = [int(p) for p in update_every]
        self.decay = [float(d) for d in decay]
        self.schedule = schedule or PeriodicRefresh(self.update_every, self.decay)
        self.last_statistic = None
        self.init_decay = float(init_decay)
        self.dtype = dtype
        self.autocast = autocast
        self.channels_last = channels_last
        self.arch = type(net).__name__
        self.refreshes = [0] * len(self.update_every)
        self.negatives: List[nn.Module] = []
        for _ in self.update_every:
            neg = copy.deepcopy(net)
            if self.init_decay > 0:
                if make_fresh is None:
                    raise ValueError('init_decay > 0 needs make_fresh (a function building a fresh network)')
                fresh = make_fresh().to(next(iter(net.parameters())).device)
                self._blend(neg, fresh, net, self.init_decay)
            self.negatives.append(self._prepare(neg))

    @torch.no_grad()
    def broadcast(self, src: int = 0):
        """Make every rank's negatives equal to rank `src`'s (the fresh inits differ per rank)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for neg in self.negatives:
                for t in neg.state_dict().values():
                    torch.distributed.broadcast(t, src)

    def __len__(self):
        return len(self.negatives)

    # ------------------------------------------------------------------ weights
    def _prepare(self, neg):
        neg.requires_grad_(False).eval()
        if self.dtype != torch.float32:
            neg.to(dtype=self.dtype)
        if self.channels_last:
            neg.to(memory_format=torch.channels_last)
        return neg

    @staticmethod
    @torch.no_grad()
    def _blend(out, a, b, weight_a):
        """out <- weight_a * a + (1 - weight_a) * b (a, b, out: same architecture)."""
        fo, oo = _float_and_other_tensors(out)
        fa, _ = _float_and_other_tensors(a)
        fb, ob = _float_and_other_tensors(b)
        torch._foreach_copy_(fo, fb)
        torch._foreach_lerp_(fo, fa, weight_a)
        for t, s in zip(oo, ob):
            t.copy_(s)

    @torch.no_grad()
    def refresh(self, k: int, net: nn.Module, decay: Optional[float] = None):
        """theta_k <- d * theta_k + (1 - d) * theta, now; d = ``decay`` or the periodic ``decay[k]``."""
        decay = self.decay[k] if decay is None else decay
        dst_f, dst_o = _float_and_other_tensors(self.negatives[k])
        src_f, src_o = _float_and_other_tensors(net)
        if len(dst_f) != len(src_f):
            raise NegativePoolStateError(f'negative {k} and the network have different tensors')
        if self.dtype != torch.float32:  # lerp in the source precision, then store
            src_f = [s.to(self.dtype) for s in src_f]
        torch._foreach_lerp_(dst_f, src_f, 1.0 - decay)
        for t, s in zip(dst_o, src_o):
            t.copy_(s)
        self.refreshes[k] += 1

    def step(self, current_iter: int, net: nn.Module, out: Optional[torch.Tensor] = None,
             gt: Optional[torch.Tensor] = None) -> List[int]:
        """Refresh the negatives the schedule says are due (call after the optimiser step; the adaptive
        schedule needs the step's output and ground truth). Returns the refreshed indices."""
        statistic = self.last_statistic = self.schedule.measure(out, gt)  # None for the periodic schedule
        due = self.schedule.due(current_iter, statistic)
        for k, decay in due:
            self.refresh(k, net, decay)
        return [k for k, _ in due]

    # ------------------------------------------------------------------ forward
    def _forward(self, neg, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype != torch.float32 and self.autocast is None:
            x = x.to(self.dtype)
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return neg(x).float()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All negatives' outputs for one batch, stacked on a new first dim: (K, B, C, H, W)."""
        return torch.stack([self._forward(neg, x) for neg in self.negatives])

    def owners(self, batch: int, rotation: int) -> torch.Tensor:
        """Which negative each sample meets in the split-batch estimator: (i + rotation) mod K, (B,)."""
        return (torch.arange(batch) + rotation) % len(self.negatives)

    @torch.inference_mode()
    def split(self, x: torch.Tensor, rotation: int):
        """Split-batch negatives: sample i goes through negative (i + rotation) mod K only, so the K
        negatives together run one batch. Returns (outputs (B, C, H, W), owners (B,) on x's device)."""
        owners = self.owners(x.shape[0], rotation).to(x.device)
        out = None
        for k, neg in enumerate(self.negatives):
            index = (owners == k).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            y = self._forward(neg, x.index_select(0, index))
            if out is None:
                out = y.new_empty((x.shape[0],) + y.shape[1:])
            out.index_copy_(0, index, y)
        return out, owners

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
