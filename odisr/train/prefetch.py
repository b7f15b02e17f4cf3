"""The stream of training batches: the next batch is cut on a background thread while the current one trains.

On a GPU the training step is queued work: while the device computes iteration ``k``, the host would otherwise
sit idle until the step's end and only then cut, convert and copy iteration ``k + 1``'s patches (≈ 6 ms for 16
patches of 64² LR at ×4 on one core of the development machine, :func:`odisr.train.data.make_batch`), leaving the
GPU idle for that long every iteration. :class:`BatchStream` draws the next patch positions as soon as a batch is
handed out and cuts them on one worker thread (numpy's copies and the pinned, asynchronous host-to-device copy
run without the GIL), so the host work of iteration ``k + 1`` overlaps the device work of iteration ``k``.

Exact resume is kept: the positions are drawn ahead, so the sampler's generator is one draw ahead of the
iterations trained; :meth:`BatchStream.state_dict` returns the generator state from *before* that draw, which is
the state a checkpoint of iteration ``k`` must hold (a resumed run draws iteration ``k + 1``'s positions again).
The batches are the same, bit for bit, with and without prefetching (``tests/test_train_prefetch.py``; the
SIGKILL-and-resume test runs with it).

The trainer prefetches on CUDA (config ``data.prefetch: null``); on the CPU a step takes seconds and its batch
≈ 6 ms (0.2–0.3 % of the step, measured on 2 cores: CAMixerSR-S ×4, batch 8, patch 48), and a worker thread would
only share the cores with the step: ``data.prefetch: true`` turns it on there too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from odisr.train.data import Batch, PatchSampler, PatchSpec

__all__ = ["BatchStream"]


class BatchStream:
    """Global batches of ``size`` patch positions from ``sampler``, made into this rank's :class:`Batch` by
    ``make(specs)``; with ``ahead``, each batch is made on a worker thread while the previous one is used.

    ``ahead`` may be changed between calls. Errors of ``make`` (e.g. unusable data) are raised by the :meth:`next`
    call that wants that batch. Use as a context manager, or call :meth:`close`, to stop the worker thread.
    """

    def __init__(
        self, sampler: PatchSampler, size: int, make: Callable[[Sequence[PatchSpec]], Batch], *, ahead: bool
    ) -> None:
        self.sampler, self.size, self.make, self.ahead = sampler, size, make, ahead
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[Batch] | None = None
        self._state_before: dict[str, Any] | None = None  # sampler state before the pending batch's draw

    def next(self, *, more: bool = True) -> Batch:
        """The next batch; with ``more`` (and ``ahead``), starts making the one after it.

        Pass ``more=False`` for the run's last iteration, so that no batch is drawn that no iteration uses.
        """
        if self._pending is not None:
            pending, self._pending, self._state_before = self._pending, None, None
            batch = pending.result()
        else:
            batch = self.make(self.sampler.draw(self.size))
        if more and self.ahead:
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="odisr-batches")
            self._state_before = self.sampler.state_dict()
            self._pending = self._pool.submit(self.make, self.sampler.draw(self.size))
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler state of the iterations handed out so far (before any batch drawn ahead)."""
        return self._state_before if self._state_before is not None else self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict`); a batch drawn ahead is dropped."""
        self._drop_pending()
        self.sampler.load_state_dict(state)

    def close(self) -> None:
        """Wait for a batch being made, drop it and stop the worker thread."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending.exception()  # waits; its error (if any) is of a batch nobody asked for
        self._pending = self._state_before = None
