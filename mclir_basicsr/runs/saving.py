"""One save path for checkpoints and training states: atomic, with BasicSR's retries, written by rank 0 (W6).

BasicSR writes with a bare ``torch.save`` (a crash while saving truncates the file). :class:`AtomicSaveMixin`
writes the same files (names and content as BaseModel's) through :func:`mclir_basicsr.io_utils.save_with_retries`.
The add-on's models inherit it; in an opted-in run of another model, BaseModel's two save methods are swapped
for the mixin's for that run (:func:`mclir_basicsr.runs.use`). What a training state holds is
:meth:`AtomicSaveMixin.training_state` (BasicSR's four entries), which a model extends by overriding it
(:class:`mclir_basicsr.runs.resume.ExactResumeMixin` adds every rank's RNG states and the model's own state):
``training_state`` runs on every rank (it may gather across ranks), only rank 0 writes.
"""
import os

from mclir_basicsr.io_utils import cpu_state_dict, dist_info, master_only, save_with_retries
from mclir_basicsr.runs.interrupts import INTERRUPTS


def basicsr_training_state(model, epoch, current_iter):
    """What BasicSR's ``BaseModel.save_training_state`` saves."""
    return {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in model.optimizers],
            'schedulers': [s.state_dict() for s in model.schedulers]}


class AtomicSaveMixin:
    """BaseModel's ``save_network`` / ``save_training_state``, written atomically with retries.

    Put it before BasicSR's model class: ``class MyModel(AtomicSaveMixin, SRModel)``."""

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
        save_dict = {key: cpu_state_dict(self.get_bare_model(n)) for n, key in zip(nets, keys)}
        label = 'latest' if current_iter == -1 else current_iter
        save_with_retries(save_dict, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'), 'model')

    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:  # BasicSR's "latest" save at the end of training: no state, the network is saved
            INTERRUPTS.training_ended()
            return
        build = getattr(self, 'training_state', None)  # absent on BaseModel when swapped in for an opted-in run
        state = build(epoch, current_iter) if build is not None else basicsr_training_state(self, epoch, current_iter)
        if dist_info()[0] == 0:
            path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
            save_with_retries(state, path, 'training state')

    def training_state(self, epoch, current_iter):
        """The training state to save (called on every rank); extend it in a subclass."""
        return basicsr_training_state(self, epoch, current_iter)
