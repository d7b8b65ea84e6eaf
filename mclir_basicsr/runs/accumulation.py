"""Gradient accumulation's data side (``train.accumulate`` N, add-on runs of a model that runs a step as
micro-batches): the training loader hands each BasicSR iteration the N x B samples of one optimiser step.

Why here and not in the model: BasicSR's loop feeds the model one batch per iteration and counts iterations,
so a model stepping its optimiser every N-th iteration would make ``total_iter``, the scheduler, logging,
saving and resume count micro-batches. Handing one iteration N x B samples keeps every count in optimiser
steps, keeps the data order and the random crops those of one batch of N x B (the estimator is the same), and
needs nothing new for exact resume: a training state is written between steps, never inside one. Only the
input batch is N x B; the model runs it a micro-batch of B at a time (activation memory is one micro-batch's).
"""
from basicsr.utils.registry import MODEL_REGISTRY

from mclir_basicsr.options import accumulation


def micro_batches_per_step(opt):
    """N for an option dict whose model runs steps as micro-batches, else 1 (BasicSR's own models are left
    alone: they would train on N x B samples at once)."""
    model_type = opt.get('model_type')
    if model_type not in MODEL_REGISTRY:
        return 1
    if not getattr(MODEL_REGISTRY.get(model_type), 'runs_steps_as_micro_batches', False):
        return 1
    return accumulation(opt)


def wrap(create_train_val_dataloader):
    """BasicSR's ``create_train_val_dataloader`` with the training loader's batch N x B for the time it is built
    (the option dict is left as it was: the model reads B and N from it)."""

    def create(opt, logger):
        n = micro_batches_per_step(opt)
        train = (opt.get('datasets') or {}).get('train')
        if n == 1 or not train:
            return create_train_val_dataloader(opt, logger)
        batch = train['batch_size_per_gpu']
        train['batch_size_per_gpu'] = batch * n
        try:
            result = create_train_val_dataloader(opt, logger)
        finally:
            train['batch_size_per_gpu'] = batch
        logger.info(f'Gradient accumulation: each iteration is one optimiser step on {n} x {batch} = {n * batch} '
                    f'samples per GPU, run as {n} micro-batches of {batch}; the batch size, iterations per epoch and '
                    'total_iter above count optimiser steps.')
        return result
    create.wrapped = create_train_val_dataloader
    return create
