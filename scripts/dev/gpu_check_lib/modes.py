"""The two modes' sizes: 'gpu' (one GPU, about 8 minutes) and 'cpu' (tiny, what the test suite runs)."""
STAGES = ('setup', 'tests', 'bench', 'compare')

TINY_EDSR = ['--arch-opt', '{num_feat: 8, num_block: 1}', '--batch', '4', '--patch', '12']
TINY_SWINIR = ['--arch-opt', '{embed_dim: 12, depths: [1], num_heads: [2], img_size: 8, window_size: 4}',
               '--batch', '4', '--patch', '8']
MODES = {
    'gpu': {
        'budgets': {'setup': 45, 'tests': 150, 'bench': 115, 'compare': 150},
        'bench_args': ['--device', 'cuda', '--repeats', '5', '--iters', '10', '--warmup', '3'],
        'bench_archs': {'edsr_light_x2': [], 'swinir_light_x4': []},
        'bench_variants': 'baseline,spn_k4,spn_k4+split,spn_k4+split+amp,baseline+amp,spn_k4+split+amp16,'
                          'baseline+amp16',
        'compare': {'quick': False, 'network': {'num_feat': 64, 'num_block': 16}, 'lr': 2e-4, 'iters': 3000,
                    'val_freq': 500, 'seeds': [0, 1], 'jobs': 4, 'num_gpu': 1,
                    'train_set': {'gt_size': 96, 'batch_size_per_gpu': 16, 'num_worker_per_gpu': 2}},
    },
    'cpu': {
        # CPU: about 2 CPU-minutes in all; the budgets only catch a hang on a loaded CI machine
        'budgets': {'setup': 120, 'tests': 480, 'bench': 360, 'compare': 360},
        'bench_args': ['--device', 'cpu', '--repeats', '1', '--iters', '1', '--warmup', '1', '--threads', '1',
                       '--layers', 'relu1_2:1'],
        'bench_archs': {'edsr_light_x2': TINY_EDSR, 'swinir_light_x4': TINY_SWINIR},
        'bench_variants': 'baseline,spn_k4,spn_k4+split,spn_k4+split+amp,baseline+amp',
        'compare': {'quick': True, 'network': None, 'lr': None, 'iters': 20, 'val_freq': 10, 'seeds': [0],
                    'jobs': 2, 'num_gpu': 0},
    },
}
