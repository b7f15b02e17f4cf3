"""Batches cut ahead on a worker thread (:class:`odisr.train.prefetch.BatchStream`): the same batches, bit for bit,
as cut serially; checkpoint state that replays the next batch; errors raised where the batch is wanted.

The trainer's use of it under a real SIGKILL and resume: ``tests/test_train_resume.py``. Budget: < 1 s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from odisr.degrade import degrade
from odisr.train.data import Batch, DataError, PanoramaPair, PatchSampler, PatchSpec, make_batch
from odisr.train.prefetch import BatchStream

CPU = torch.device("cpu")
BATCH, PATCH, SCALE = 4, 8, 2


def _pairs() -> list[PanoramaPair]:
    rng = np.random.default_rng(0)
    hrs = [rng.integers(0, 256, (2 * h * SCALE, 4 * h * SCALE, 3), dtype=np.uint8) for h in (8, 12)]
    return [PanoramaPair(f"synthetic{i}", *degrade(hr, SCALE)) for i, hr in enumerate(hrs)]


def _sampler(pairs: list[PanoramaPair], seed: int = 0) -> PatchSampler:
    return PatchSampler([p.lr.shape[:2] for p in pairs], PATCH, sampling="sphere", flip=True, roll=True, seed=seed)


def _stream(pairs: list[PanoramaPair], *, ahead: bool, seed: int = 0) -> BatchStream:
    def make(specs: Sequence[PatchSpec]) -> Batch:
        return make_batch(pairs, specs, slice(0, BATCH), PATCH, SCALE, CPU)

    return BatchStream(_sampler(pairs, seed), BATCH, make, ahead=ahead)


def _same(a: Batch, b: Batch) -> bool:
    fields = ("lr", "hr", "condition", "row_weights")
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields) and a.weight_mean == b.weight_mean


def test_batches_cut_ahead_are_the_serial_batches_and_checkpoints_replay_the_next_one() -> None:
    pairs = _pairs()
    with _stream(pairs, ahead=False) as serial:
        expected = [serial.next() for _ in range(6)]
    assert not _same(expected[0], expected[1])  # the comparison below can fail

    with _stream(pairs, ahead=True) as ahead:
        got = [ahead.next() for _ in range(3)]
        assert ahead._pending is not None  # the 4th batch is being cut (drawn, so the sampler is one draw ahead)
        state = ahead.state_dict()  # what a checkpoint after 3 iterations stores
        got += [ahead.next() for _ in range(3)]
    assert all(_same(a, b) for a, b in zip(got, expected, strict=True))

    with _stream(pairs, ahead=True, seed=99) as resumed:  # a new process: another seed, then the checkpoint
        resumed.load_state_dict(state)
        assert all(_same(resumed.next(), b) for b in expected[3:])


def test_the_last_batch_draws_nothing_ahead_and_ahead_can_be_switched() -> None:
    pairs = _pairs()
    with _stream(pairs, ahead=True) as stream:
        stream.next(more=False)
        before = stream.sampler.state_dict()
        assert stream._pending is None and stream.state_dict() == before
        stream.next()  # ahead again: the next draw is pending
        assert stream.state_dict() != stream.sampler.state_dict()
        stream.ahead = False
        with _stream(pairs, ahead=False) as serial:
            expected = [serial.next() for _ in range(4)]
        assert _same(stream.next(), expected[2]) and _same(stream.next(), expected[3])
        assert stream._pending is None


def test_an_error_cutting_a_batch_ahead_is_raised_by_the_call_that_wants_it() -> None:
    pairs = _pairs()
    calls = []

    def make(specs: Sequence[PatchSpec]) -> Batch:
        calls.append(len(specs))
        if len(calls) == 2:
            raise DataError("panorama 1 could not be cut")
        return make_batch(pairs, specs, slice(0, BATCH), PATCH, SCALE, CPU)

    with BatchStream(_sampler(pairs), BATCH, make, ahead=True) as stream:
        stream.next()  # fine; the second batch fails on the worker thread
        with pytest.raises(DataError, match="panorama 1 could not be cut"):
            stream.next()
        stream.next(more=False)  # the failure is not raised again: the next batch is cut anew
    assert calls == [BATCH, BATCH, BATCH]
