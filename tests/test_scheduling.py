"""The split of the machine between decoding and the model (``fiftyone_ram.scheduling``): the plans for the
released and the tiny sizes on CPUs and GPUs, and the prefetch thread's order, errors and early stop."""

from __future__ import annotations

import threading
import time

import pytest

from fiftyone_ram.models.registry import resolve_config
from fiftyone_ram.scheduling import multiply_adds, plan_for_model, plan_loading, prefetch


@pytest.fixture(scope="module")
def released_macs() -> float:
    return multiply_adds(resolve_config("ram_swin_large_14m"), 4585)


def test_released_ram_costs_what_its_sizes_say(released_macs):
    assert 140e9 < released_macs < 180e9  # Swin-L 384 ~104 G plus the 4,585-query head ~54 G


@pytest.mark.parametrize("cores", [2, 16])
def test_released_size_on_cpu_gives_the_model_every_core(released_macs, cores):
    plan = plan_loading(released_macs, "bf16", "cpu", cores=cores)
    assert (plan.num_workers, plan.pin_memory) == (1, False)
    assert plan.decode_share < 0.1 * cores  # one worker idles most of the time


def test_gpu_keeps_the_device_fed(released_macs):
    plan = plan_loading(released_macs, "bf16", "cuda", cores=16)
    assert (plan.num_workers, plan.pin_memory) == (15, True)
    assert plan_loading(released_macs, "bf16", "cuda", cores=64).num_workers == 16  # capped


def test_tiny_model_shares_the_cores_and_user_choice_is_kept(parity_dir):
    tiny = multiply_adds(resolve_config(parity_dir / "fixtures_tiny.json", family="ram"), 4585)
    plan = plan_loading(tiny, "fp32", "cpu", cores=8)
    assert 2 <= plan.num_workers < 8  # decoding gets cores in proportion to its cost; the model keeps some
    assert plan_loading(tiny, "fp32", "cpu", cores=8, num_workers=3).num_workers == 3


def test_a_plan_only_advises(tiny_tagger):
    """The plan for our model changes nothing in the process (it may be the App server or a notebook)."""
    import torch

    import fiftyone_ram.fiftyone as forf

    before = torch.get_num_threads()
    plan = plan_for_model(forf.from_tagger(tiny_tagger("ram")))
    assert plan is not None and plan.num_workers >= 1 and torch.get_num_threads() == before
    assert plan_for_model(object()) is None  # not our model: nothing planned


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


def test_a_library_run_changes_no_process_wide_setting(tiny_model_settings, parity_pngs):
    """Tagging from Python (as the App server and notebooks do) leaves torch's threads, the garbage collector
    and FiftyOne's config as the process had them."""
    import gc

    import fiftyone as fo
    import torch

    import fiftyone_ram.driver as frd
    import fiftyone_ram.fiftyone as forf

    def settings():
        return torch.get_num_threads(), gc.get_freeze_count(), gc.isenabled(), fo.config.show_progress_bars

    model = forf.load_model(**tiny_model_settings("ram"))
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in parity_pngs[:3]])
        before = settings()
        seen = []
        frd.tag_samples(dataset, model, "ram", batch_size=2, progress=lambda fraction, label: seen.append(settings()))
        dataset.apply_model(model, "again", batch_size=2)
        assert settings() == before and seen and all(s == before for s in seen)
        assert len(dataset.exists("ram")) == 3 and len(dataset.exists("again")) == 3
    finally:
        dataset.delete()
