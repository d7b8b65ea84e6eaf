"""Checkpoint guards for a BasicSR model: no checkpoint with NaN/Inf weights, clear mismatch errors.

``class M(CheckpointGuardMixin, SRModel)``: before every save (periodic and ``latest``) the
networks named by :meth:`CheckpointGuardMixin.networks_to_check` are checked for non-finite
weights, so the last good checkpoint on disk is never overwritten by a broken one; a checkpoint
that does not fit ``network_g`` fails with one message naming the file and what to do.
"""
import torch


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit network_g."""


class NonFiniteError(FloatingPointError):
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
