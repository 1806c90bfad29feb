"""Trains the tiny test model a few steps with plain PyTorch and with DeepSpeed ZeRO stages 2 and 3 on
CPU (DeepSpeed's CPU accelerator, gloo, one process) and prints each run's losses as JSON.

Run by tests/test_training.py in a process of its own (DeepSpeed picks its accelerator at import and
initialises torch.distributed). Lightning trains with DeepSpeed on CUDA only, so this drives DeepSpeed
directly: what it checks is the model's side, that ZeRO-3's hooks gather every weight the forward and
the backward read (a dataclass output hid them: the backward failed on an H200, 2026-12-04).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
os.environ.setdefault("MASTER_PORT", "29533")

import deepspeed  # noqa: E402
import torch  # noqa: E402

from modrwkv.processing.loader import DroppingCollator  # noqa: E402
from modrwkv.training import config_from_dict  # noqa: E402
from modrwkv.training.recipe import setup_data, setup_model  # noqa: E402
from test_training import colour_samples, config  # noqa: E402

STEPS, LR, CLIP = 3, 3e-3, 1.0  # CLIP: train.grad_clip's default (and DeepSpeed's)


def batches(model):
    config_ = config_from_dict(config(Path(sys.argv[1]), "zero", batch_size=8, micro_batch_size=8))
    dataset, _ = setup_data(config_, model, colour_samples(8 * STEPS))
    collate = DroppingCollator(model.collator())
    return [collate([dataset[i] for i in range(8 * step, 8 * step + 8)]).batch for step in range(STEPS)]


def fresh_model():
    model = setup_model(config_from_dict(config(Path(sys.argv[1]), "zero")), None, None)
    model.lm.use_weight_layout("training")
    return model


def run(stage: int) -> list[float]:
    """Losses of STEPS steps: plain PyTorch (stage 0) or a DeepSpeed engine at ZeRO `stage`."""
    torch.manual_seed(0)
    model = fresh_model()
    data = batches(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    losses = []
    if stage == 0:
        model.train()  # as DeepSpeed's engine does
        optimizer = torch.optim.AdamW(trained, lr=LR, weight_decay=0.0)
        for batch in data:
            loss = model.forward_batch(batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, CLIP)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return losses
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(trained, lr=LR, weight_decay=0.0),
                                      config={"train_micro_batch_size_per_gpu": 8, "gradient_clipping": CLIP,
                                              "zero_optimization": {"stage": stage}})
    for batch in data:
        loss = engine.module.forward_batch(batch).loss
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    return losses


if __name__ == "__main__":
    # One process needs no shared-memory collectives, whose C++ op DeepSpeed would otherwise compile
    # at start (~35 s on a fresh machine).
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")
    print(json.dumps({name: run(stage) for name, stage in (("plain", 0), ("zero2", 2), ("zero3", 3))}))
