"""The parent's side: worker processes forked from a server that has imported torch and BasicSR, and
``run_rounds``, which builds them one after the other and times them in interleaved rounds."""
import multiprocessing as mp
import time

from bench.jobs import serve


class Worker:
    """A process forked from a server that has imported torch and BasicSR (and nothing else, so each
    process's peak memory is its own; a fresh interpreter would not do: importing torch alone peaks at
    ~0.7 GB RSS, above what a small variant needs), talked to over a pipe."""
    ctx = None

    def __init__(self, task):
        if Worker.ctx is None:
            Worker.ctx = mp.get_context('forkserver')
            Worker.ctx.set_forkserver_preload(['mclir_basicsr', 'torch', 'basicsr'])
        self.conn, child = Worker.ctx.Pipe()
        self.proc = Worker.ctx.Process(target=serve, args=(task, child), daemon=True)
        self.proc.start()
        child.close()
        self.error = None

    def ask(self, message=None):
        """Send `message` (if any) and return the reply; a process that died replies with an error."""
        try:
            if message is not None:
                self.conn.send(message)
            reply = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(10)
            reply = {'error': f'the worker process died (exit code {self.proc.exitcode}); out of memory?'}
        if 'error' in reply:
            self.error = reply
        return reply

    def close(self):
        self.conn.close()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


def run_once(task):
    w = Worker(task)
    try:
        return w.ask()
    finally:
        w.close()


def run_rounds(jobs, repeats, log, device):
    """Start every job's worker, one at a time (each builds and warms up alone), then time `repeats`
    rounds in which every live worker runs one repetition in turn, the order rotating from round to
    round, so a slow stretch of the machine falls on all rows alike. Returns {key: record}: 'samples'
    (one per round, None once the worker failed) and the worker's final record, or 'error'."""
    workers, records = {}, {}
    try:
        for key, task in jobs.items():
            t0 = time.time()
            print(f'[{device}] {key}: building and warming up ...', file=log, flush=True)
            w = workers[key] = Worker(task)
            records[key] = {'samples': []}
            reply = w.ask()
            if 'error' in reply:
                print(f'[{device}] {key} failed: {reply["error"]}\n{reply.get("traceback", "")}', file=log)
            else:
                print(f'[{device}] {key}: ready in {time.time() - t0:.1f} s', file=log, flush=True)
        keys = list(jobs)
        for r in range(repeats):
            t0 = time.time()
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                w = workers[key]
                reply = None if w.error else w.ask('rep')
                if reply is not None and 'error' in reply:
                    print(f'[{device}] {key} failed in round {r + 1}: {reply["error"]}', file=log, flush=True)
                records[key]['samples'].append(None if reply is None or 'error' in reply else reply['sample'])
            print(f'[{device}] round {r + 1}/{repeats} done in {time.time() - t0:.1f} s', file=log, flush=True)
        for key, w in workers.items():
            failed_before = w.error is not None
            final = w.error or w.ask('done')
            records[key].update(final)
            if 'error' in final and not failed_before:
                print(f'[{device}] {key} failed: {final["error"]}', file=log)
    finally:
        for w in workers.values():
            w.close()
    return records
