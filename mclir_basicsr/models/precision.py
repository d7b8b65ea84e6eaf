"""The precision of a training step: ``train.amp`` (the network's forward and every loss under torch.autocast,
float16 with a GradScaler) and ``train.use_grad_clip`` (the gradient norm clipped before the optimiser step,
after unscaling under the float16 scaler, as the official fork's models clip it)."""
import torch


class StepPrecision:
    """Autocast, the float16 GradScaler, clipping and the count of the steps the scaler skipped."""

    def __init__(self, amp, device_type, clip=None):
        self.amp, self.device_type, self.clip = amp, device_type, clip
        self.scaler = torch.amp.GradScaler(device_type) if amp == torch.float16 else None
        self.skipped = 0

    def autocast(self):
        """The context of the step's forward and losses."""
        return torch.autocast(self.device_type, dtype=self.amp, enabled=self.amp is not None)

    def loss_is_usable(self, loss):
        """A 0-dim float tensor: 1 when the optimiser step may go on. Under the float16 scaler an infinite loss
        is an overflow the scaler handles by skipping the step; NaN is never usable."""
        loss = loss.detach()
        return (~torch.isnan(loss) if self.scaler is not None else torch.isfinite(loss)).to(torch.float32)

    def backward_and_step(self, loss, optimizer, parameters):
        """loss.backward(), the clip, optimizer.step() (through the scaler under float16)."""
        self.backward(loss)
        self.step(optimizer, parameters)

    def backward(self, loss):
        """loss.backward(), scaled under float16; called once per micro-batch when gradients accumulate: the
        gradients of every micro-batch sum at one scale, which :meth:`step` unscales once."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer, parameters):
        """The clip and optimizer.step() on the gradients summed since the last step (the scaler skips a step whose
        gradients hold inf/NaN and lowers its scale)."""
        if self.scaler is None:
            if self.clip:
                torch.nn.utils.clip_grad_norm_(parameters, self.clip)
            optimizer.step()
            return
        scale = self.scaler.get_scale()
        if self.clip:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(parameters, self.clip)
        self.scaler.step(optimizer)  # skipped when the gradients hold inf/NaN
        self.scaler.update()
        if self.scaler.get_scale() < scale:
            self.skipped += 1

    def log(self, log_dict):
        """Add the scaler's scale and the skipped steps to a step's log (float16 only)."""
        if self.scaler is not None:
            log_dict['amp_scale'] = self.scaler.get_scale()
            log_dict['amp_skipped'] = self.skipped

    def state_dict(self):
        return {'amp_scaler': self.scaler.state_dict() if self.scaler is not None else None,
                'amp_skipped': self.skipped}

    def load_state_dict(self, state, logger):
        self.skipped = state.get('amp_skipped') or 0
        if self.scaler is None:
            return
        if state.get('amp_scaler') is not None:
            self.scaler.load_state_dict(state['amp_scaler'])
        else:
            logger.warning('The training state has no float16 GradScaler state (saved without train.amp: '
                           'float16): the scaler starts afresh.')
