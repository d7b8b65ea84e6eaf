"""The adaptive refresh's record in the run's tensorboard folder: every step's statistic
(``negatives/statistic``) and every refresh (``negatives/refreshed``, the negative's index), not only BasicSR's
``print_freq`` samples of the log. Rank 0 only, and only for runs that log to tensorboard as BasicSR does."""
import atexit
import os


class RefreshEvents:
    """A SummaryWriter in BasicSR's ``tb_logger/<name>`` folder, opened at the first event."""

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
