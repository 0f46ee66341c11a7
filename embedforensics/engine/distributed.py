"""Data parallel embedding with accelerate: split batches, gather rows by explicit index.

Why this shape: gathering per-process outputs and trimming the padded duplicates by
length is a known source of duplicated or missing rows. Here every process plans the
same batches from the same token lengths (a deterministic plan, no communication), runs
its share of *whole batches*, and gathers its vectors together with the row index of each
vector; the index, not the position, puts every row back, and a check that the gathered
indices are exactly ``0..n-1`` once each turns any mismatch into an error. Because each
batch holds the same rows whatever the number of processes, N processes give the same
embeddings as one, bit for bit, in the same order.

Launch with ``accelerate launch --multi_gpu --num_processes N -m embedforensics run RECIPE``
on GPUs, ``ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node N -m embedforensics
run RECIPE`` on the CPU, or ``embedforensics run --num-processes N RECIPE``, which picks
one of the two. Without a launcher there is one process and nothing here communicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def accelerate_state() -> Any:
    """accelerate's ``PartialState``, on the CPU when asked (``ACCELERATE_USE_CPU=1``).

    accelerate only sets up CPU processes (gloo) when the state is created with
    ``cpu=True``; the launchers say so through ``ACCELERATE_USE_CPU``. Several processes
    and no GPU also mean the CPU.
    """
    import os

    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU")
    if not cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch

        cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def launch_command(n_processes: int, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command (and extra environment) that runs ``embedforensics ARGS`` in N processes.

    With GPUs: ``accelerate launch --multi_gpu``. On the CPU, accelerate's own launcher
    needs MPI for more than one process, so torch's ``torchrun`` starts them and
    ``ACCELERATE_USE_CPU=1`` tells accelerate to join them with gloo.
    """
    import sys

    import torch

    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(n_processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "embedforensics",
               *args]
        return cmd, {}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(n_processes), "-m", "embedforensics", *args]
    return cmd, {"ACCELERATE_USE_CPU": "1"}


_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched() -> bool:
    """True when a launcher (torchrun, accelerate, MPI) started several processes."""
    import os

    return any(int(os.environ.get(v, "1") or 1) > 1 for v in _WORLD_SIZE_VARS)


class Workers:
    """This process's place among the accelerate processes (one when not launched).

    Not launched, nothing is imported: a warm-cache run never needs torch.
    """

    def __init__(self) -> None:
        self.state: Any = None
        self.rank, self.world = 0, 1
        if launched():
            self.state = accelerate_state()
            self.rank = int(self.state.process_index)
            self.world = int(self.state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj``, on every process."""
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather_rows(self, index: np.ndarray, arrays: dict[str, np.ndarray], n_rows: int
                    ) -> dict[str, np.ndarray]:
        """Every process's rows, put in order ``0..n_rows-1`` by their explicit index.

        ``index[k]`` is the row of ``arrays[name][k]``. Shares may differ in size: each is
        padded to the largest with index -1, gathered as tensors, and the padding dropped
        by its index, never by length. Raises RuntimeError unless every row arrives
        exactly once. Runs on every process and returns the same result everywhere.
        """
        import torch
        from accelerate.utils import gather, pad_across_processes

        names = sorted(arrays)
        if self.world == 1:
            order = np.argsort(index, kind="stable")
            got = np.asarray(index)[order]
            if len(got) != n_rows or not np.array_equal(got, np.arange(n_rows)):
                raise RuntimeError(f"rows lost or repeated: {len(got)} rows for {n_rows}, "
                                   f"{len(np.setdiff1d(np.arange(n_rows), got))} missing")
            return {name: np.ascontiguousarray(arrays[name][order], dtype=np.float32)
                    for name in names}
        device = self.state.device
        idx = pad_across_processes(torch.as_tensor(index, dtype=torch.int64).to(device),
                                   dim=0, pad_index=-1)
        all_idx = gather(idx).cpu().numpy()
        keep = all_idx >= 0
        got = all_idx[keep]
        if len(got) != n_rows or not np.array_equal(np.sort(got), np.arange(n_rows)):
            missing = np.setdiff1d(np.arange(n_rows), got)
            dup = len(got) - len(np.unique(got))
            raise RuntimeError(f"data-parallel gather lost or duplicated rows: {len(got)} "
                               f"rows for {n_rows}, {len(missing)} missing, {dup} repeated")
        out: dict[str, np.ndarray] = {}
        for name in names:
            values = pad_across_processes(torch.from_numpy(np.ascontiguousarray(
                arrays[name])).to(device), dim=0, pad_index=0)
            flat = gather(values).cpu().numpy()[keep]
            ordered = np.empty((n_rows, flat.shape[1]), dtype=np.float32)
            ordered[got] = flat
            out[name] = ordered
        return out
