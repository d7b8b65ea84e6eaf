"""``python -m train_with_signal -opt X.yml ...``: ``python -m mclir_basicsr.train``, this process sending itself a
signal inside a training step (as Ctrl-C lands inside ``loss.backward()``), for the interrupt tests.

STOP_SIGNAL (SIGINT / SIGTERM) at iteration STOP_AT, on the rank STOP_RANK only when set (STOP_AT=validation: while
the first validation image is tested instead); with STOP_SECOND=1 the same signal again while the interrupt's save
writes its first file (after the window in which a second signal is taken as a launcher relaying the first)."""
import os
import signal
import time


def _patch():
    import torch

    from mclir_basicsr.models.model_contrastive_model import ModelContrastiveModel
    from mclir_basicsr.runs.interrupts import INTERRUPTS, RELAYED_WITHIN_S
    sig = getattr(signal, os.environ['STOP_SIGNAL'])
    at, rank = os.environ['STOP_AT'], os.environ.get('STOP_RANK')
    if at == 'validation':
        test = ModelContrastiveModel.test

        def test_then_signal(self):
            os.kill(os.getpid(), sig)
            return test(self)

        ModelContrastiveModel.test = test_then_signal
    else:
        step = ModelContrastiveModel.optimize_parameters

        def optimize_parameters(self, current_iter):
            if current_iter == int(at) and (rank is None or int(os.environ.get('RANK', '0')) == int(rank)):
                os.kill(os.getpid(), sig)
            return step(self, current_iter)

        ModelContrastiveModel.optimize_parameters = optimize_parameters
    if os.environ.get('STOP_SECOND') == '1':
        save, sent = torch.save, []

        def save_then_signal(obj, f, *args, **kwargs):
            if INTERRUPTS.saving and not sent:
                sent.append(True)
                time.sleep(RELAYED_WITHIN_S + 0.5)
                os.kill(os.getpid(), sig)
            return save(obj, f, *args, **kwargs)

        torch.save = save_then_signal


if __name__ == '__main__':
    _patch()
    from mclir_basicsr.train import main
    main()
