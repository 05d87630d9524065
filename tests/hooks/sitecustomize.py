"""Fault injection for the resume tests, kept out of the toolkit's code.

The tests put this folder on PYTHONPATH for the processes they start, so Python imports this
module at start-up. It does nothing unless NMT_TEST_KILL_AT_STEP=N is set: then the process
SIGKILLs itself right after update N (that update's checkpoint saves done, TensorBoard
flushed), the way a machine dies under a preempted job.
"""

import os

if os.environ.get("NMT_TEST_KILL_AT_STEP"):
    import signal

    from nmt.train.trainer import Trainer

    _KILL_AT = int(os.environ["NMT_TEST_KILL_AT_STEP"])
    _any_rank = Trainer._any_rank  # called once after every update, after its saves

    def _die_at_step(self, flag):
        if self.step == _KILL_AT:
            self.logbook.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return _any_rank(self, flag)

    Trainer._any_rank = _die_at_step
