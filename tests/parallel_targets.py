"""A stand-in for a benchmark run, for tests of ``recbole_eimf.process_pool`` (module level:
spawned processes import it by name; nothing heavy is imported)."""

import os
import signal


def die_fail_or_answer(job):
    """Seed 1: the process is killed mid-run (as by the out-of-memory killer); seed 2: the run
    raises; otherwise: a record."""
    if job.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if job.seed == 2:
        raise ValueError(f"{job.model} failed on purpose")
    return {"model": job.model, "seed": job.seed, "pid": os.getpid()}
