"""The split of the machine between decoding and the model (``fiftyone_ram.scheduling``): the plans for the
released and the tiny sizes on CPUs and GPUs, and the prefetch thread's order, errors and early stop."""

from __future__ import annotations

import threading
import time

import pytest

from fiftyone_ram.models.registry import resolve_config
from fiftyone_ram.scheduling import multiply_adds, plan_loading, planned_run, prefetch


@pytest.fixture(scope="module")
def released_macs() -> float:
    return multiply_adds(resolve_config("ram_swin_large_14m"), 4585)


def test_released_ram_costs_what_its_sizes_say(released_macs):
    assert 140e9 < released_macs < 180e9  # Swin-L 384 ~104 G plus the 4,585-query head ~54 G


@pytest.mark.parametrize("cores", [2, 16])
def test_released_size_on_cpu_gives_the_model_every_core(released_macs, cores):
    plan = plan_loading(released_macs, "bf16", "cpu", cores=cores)
    assert (plan.num_workers, plan.torch_threads, plan.pin_memory) == (1, cores, False)
    assert plan.decode_share < 0.1 * cores  # one worker idles most of the time


def test_gpu_keeps_the_device_fed(released_macs):
    plan = plan_loading(released_macs, "bf16", "cuda", cores=16)
    assert (plan.num_workers, plan.torch_threads, plan.pin_memory) == (15, None, True)
    assert plan_loading(released_macs, "bf16", "cuda", cores=64).num_workers == 16  # capped


def test_tiny_model_shares_the_cores_and_user_choice_is_kept(parity_dir):
    tiny = multiply_adds(resolve_config(parity_dir / "fixtures_tiny.json", family="ram"), 4585)
    plan = plan_loading(tiny, "fp32", "cpu", cores=8)
    assert plan.num_workers >= 2 and plan.num_workers + plan.torch_threads == 8
    given = plan_loading(tiny, "fp32", "cpu", cores=8, num_workers=3)
    assert (given.num_workers, given.torch_threads) == (3, None)


def test_planned_run_sets_and_restores_threads(tiny_tagger):
    import torch

    import fiftyone_ram.fiftyone as forf

    before = torch.get_num_threads()
    model = forf.from_tagger(tiny_tagger("ram"))
    with planned_run(model) as plan:
        assert plan is not None and torch.get_num_threads() == plan.torch_threads
    assert torch.get_num_threads() == before
    with planned_run(object()) as plan:  # not our model: nothing planned
        assert plan is None


def test_prefetch_keeps_order_and_runs_ahead():
    produced = []

    def items():
        for i in range(5):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(items(), depth=2):
        time.sleep(0.02)
        assert len(produced) >= min(item + 2, 5) or item == 4  # the producer is ahead of the consumer
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_raises_in_place_and_stops_early():
    def failing():
        yield 1
        raise OSError("disk gone")

    out = prefetch(failing())
    assert next(out) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(out)

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    stream = prefetch(endless())
    assert next(stream) == 0
    stream.close()  # the thread ends instead of waiting forever on a full queue
    deadline = time.time() + 2
    while any(t.name == "fiftyone-ram-prefetch" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "fiftyone-ram-prefetch" for t in threading.enumerate())


def test_a_run_keeps_the_heap_out_of_the_collector_and_gives_it_back():
    import gc

    from fiftyone_ram.scheduling import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # frozen by someone else: left as it is
    try:
        before = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()


def test_apply_model_runs_inside_the_models_frozen_heap(tiny_model_settings, parity_pngs):
    import gc

    import fiftyone as fo

    import fiftyone_ram.fiftyone as forf

    model = forf.load_model(**tiny_model_settings("ram"))
    seen = []
    inner = model.predict_outputs
    model.predict_outputs = lambda batch: seen.append(gc.get_freeze_count()) or inner(batch)
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in parity_pngs[:2]])
        dataset.apply_model(model, "ram", batch_size=2)
        assert seen and all(count > 0 for count in seen) and gc.get_freeze_count() == 0
        assert len(dataset.exists("ram")) == 2
    finally:
        dataset.delete()
