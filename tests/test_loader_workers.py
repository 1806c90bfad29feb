"""The training data loader's worker processes (modrwkv.processing.loader): a worker started with spawn or
forkserver imports no Lightning, and seeds its random generators as Lightning's worker init function did.

This module's top level imports no Lightning (the tests import modrwkv.training inside): a spawned worker
imports the module of the dataset class below to unpickle it, and would otherwise import Lightning itself.
"""

import random
import sys

import numpy as np
import pytest
import torch

from modrwkv.data.sample import Message, Sample
from modrwkv.processing.loader import ProcessedDataset, seed_worker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def random_states():
    """The global generators' states put back after a test that seeds them."""
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    yield
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


class ReportsLightning(ProcessedDataset):
    """Processes each sample in the worker, then drops it with, as the drop reason, whether the worker's
    process has imported Lightning by then (the collated batch counts the reasons)."""

    def __getitem__(self, index: int) -> tuple[None, str]:
        processed, reason = super().__getitem__(index)
        assert processed is not None, reason
        return None, f"lightning imported: {'lightning' in sys.modules}"


def test_a_spawn_started_training_loader_worker_imports_no_lightning(monkeypatch):
    """A worker started with spawn or forkserver (macOS's and Windows' default, Linux's from Python 3.14)
    imports the modules of what it unpickles: the dataset, the collator and the worker init function used
    to live in modrwkv.training, whose import loads Lightning (~2-7 s), at every start of the loader."""
    import types

    from torch.utils.data import DataLoader

    from modrwkv.training import build_model, config_from_dict, recipe
    from modrwkv.processing.loader import DroppingCollator

    config = config_from_dict({"model": {"lm": {"config": {"n_layer": 1, "n_embd": 64, "dim_w": 32, "dim_a": 32,
                                                           "dim_v": 32, "dim_g": 32}},
                                         "encoders": {"image": {"name": "tiny", "options": {"image_size": 16}}}}},
                              needs_data=False)
    model = build_model(config.model, seed=0)
    samples = [Sample([Message("user", "<image>\nWhat colour is it?"), Message("assistant", "red")],
                      images=[np.full((16, 16, 3), 40 * i, np.uint8)], source=f"grey[{i}]") for i in range(4)]
    started = []

    def spawned_loader(*args, **kwargs):
        loader = DataLoader(*args, **kwargs, multiprocessing_context="spawn")
        started.append(loader.multiprocessing_context.get_start_method())
        return loader

    monkeypatch.setattr(recipe, "DataLoader", spawned_loader)
    data = recipe.TrainData(ReportsLightning(samples, model.processor()), DroppingCollator(model.collator()),
                            micro_batch_size=4, total_micro_batches=1, seed=0, shuffle=False, lengths=None,
                            num_workers=1)
    data.trainer = types.SimpleNamespace(world_size=1, global_rank=0, global_step=0, accumulate_grad_batches=1)
    batches = list(data.train_dataloader())
    assert started == ["spawn"] and "lightning" in sys.modules  # the main process has it; the worker does not
    assert [b.dropped for b in batches] == [{"too_long": 0, "bad_media": 0, "lightning imported: False": 4}]


@pytest.mark.parametrize("base", [0, 7, 2**31 + 3, 2**63 - 10])
@pytest.mark.parametrize("worker_id,rank", [(0, 0), (1, 0), (5, 3)])
def test_a_worker_is_seeded_as_lightnings_worker_init_function_seeds_it(base, worker_id, rank, random_states):
    """seed_worker reimplements Lightning's pl_worker_init_function (whose module imports Lightning): the
    same torch, `random` and NumPy states for each loader seed, worker and rank, so a run draws what it drew
    with Lightning's function. A worker's torch starts seeded with the loader's base seed + worker id."""
    from lightning.fabric.utilities.seed import pl_worker_init_function

    def seeded_by(init) -> tuple:
        torch.manual_seed(base + worker_id)
        init(worker_id, rank)
        return torch.get_rng_state(), random.getstate(), np.random.get_state()

    ours, lightnings = seeded_by(seed_worker), seeded_by(pl_worker_init_function)
    assert torch.equal(ours[0], lightnings[0])
    assert ours[1] == lightnings[1]
    assert ours[2][0] == lightnings[2][0] and np.array_equal(ours[2][1], lightnings[2][1])
    assert ours[2][2:] == lightnings[2][2:]
    # and a seed of its own for each worker and rank
    torch.manual_seed(base + worker_id + 1)
    seed_worker(worker_id + 1, rank)
    assert not torch.equal(torch.get_rng_state(), ours[0])
