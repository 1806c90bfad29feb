import os
import signal
import warnings

# The official `rwkv` package reads these at import time; it is the numerical oracle of the tests.
os.environ.setdefault("RWKV_V7_ON", "1")
os.environ.setdefault("RWKV_CUDA_ON", "0")
os.environ.setdefault("RWKV_JIT_ON", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)

# A test run that a non-interactive shell started in the background (`cmd &`, as some CI runners
# do) inherits SIGINT ignored, and so would every command a test starts: the tests that press
# Ctrl-C in a command need it as a terminal gives it. A Python handler here is reset to the default
# in each child at exec, where an ignored signal would stay ignored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Under pytest-xdist (pyproject.toml's addopts: one worker per core) each worker, and every command its
# tests start, uses one thread: a second OpenMP thread per worker waits for a core the other worker
# holds, which makes the tiny models' ops many times slower. Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # also where a plugin imported torch before this file

# Without CUDA no Triton kernel can run compiled; run them in Triton's interpreter instead, so that
# tests/test_fla_interpreted.py can check fla's kernels on CPU. Triton reads this when it is imported
# (Lightning imports it), hence here, first. See tests/triton_interpreter.py.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from modrwkv.lm import RWKV7, RWKV7Config  # noqa: E402
from modrwkv.lm.random_weights import random_official_state_dict  # noqa: E402

TINY = RWKV7Config(n_layer=3, n_embd=128, vocab_size=1024, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=64)


def make_model(config: RWKV7Config = TINY, seed: int = 0, dtype: torch.dtype = torch.float32) -> RWKV7:
    model = RWKV7(config)
    model.load_state_dict(random_official_state_dict(config, seed, layer0_value_lora=False))
    return model.to(dtype).eval()


@pytest.fixture
def tiny_model() -> RWKV7:
    return make_model()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tiny models: they run fastest on one, and on a shared 2-core
    machine a second OpenMP thread that waits for a busy core can make every op 10-50x slower.
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float32_matmul_precision():
    """`torch.set_float32_matmul_precision` for one test, the previous state restored after: the setting
    is process-wide, and the official `rwkv` package (the tests' oracle) turns TF32 on when imported.
    Saved and restored through `fp32_precision`, the one reading torch answers whichever API set it."""
    previous = torch.backends.cuda.matmul.fp32_precision
    yield torch.set_float32_matmul_precision
    torch.backends.cuda.matmul.fp32_precision = previous


@pytest.fixture
def busy_core():
    """A process spinning on a core beside the test, as another user's job would: none of this process's
    children (a child's CPU time counts as its parent's once reaped), so it is started by a child that exits.
    Skips where the busy cores cannot be measured (no /proc/stat: not Linux) or there is one core (a single
    thread has no other to wait for). Yields the number of cores this process may use."""
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/proc/stat").exists():
        pytest.skip("the busy cores are measured from /proc/stat (Linux)")
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: a single thread has no other to wait for, so there is nothing to warn about")
    # (it spins 5 minutes at most: a test run killed before its teardown leaves no core taken for ever)
    spin = "import time; end = time.monotonic() + 300\nwhile time.monotonic() < end: pass"
    start = (f"import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', {spin!r}], "
             "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    spinner = int(subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, timeout=60,
                                 check=True).stdout)
    try:
        yield cores
    finally:
        os.kill(spinner, signal.SIGKILL)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pyproject's `--dist loadgroup` sends the tests of one xdist_group to one worker, which builds the
    group's costly module fixture once: each worker appends "@GROUP" to those tests' node ids as it collects
    them, and the scheduler reads the group there. pytest-xdist 3.8 writes the suffix into `item._nodeid`,
    which pytest 9.2 no longer reads (a node's id is `item._id`): the suffix was lost, every group was split
    over both workers and its fixture built on each (pytest-xdist issue 1386). Where it was lost, it is
    written here, as xdist writes it."""
    if not config.getoption("loadgroup", default=False):  # set on xdist's workers under --dist loadgroup
        return
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = type(item._id).parse(item.nodeid + suffix)


def _default_image_limit() -> tuple[int | None, str]:
    from PIL import Image

    from modrwkv.encoders import media

    return Image.MAX_IMAGE_PIXELS, media._how_to_raise


_DEFAULT_IMAGE_LIMIT = _default_image_limit()  # at import, before any test or fixture changes it


@pytest.fixture(autouse=True)
def _restore_image_limit():
    """The image size limit is process-wide (`set_max_image_pixels`, Pillow's MAX_IMAGE_PIXELS): a
    test that sets it, or runs a CLI command that does, leaves it as it found it."""
    from PIL import Image

    from modrwkv.encoders import media

    yield
    # The defaults, not what the test found: a module-scoped fixture that trains sets the limit before
    # its tests start, and restoring that left it for the modules after (test_media read train's wording).
    Image.MAX_IMAGE_PIXELS, media._how_to_raise = _DEFAULT_IMAGE_LIMIT
