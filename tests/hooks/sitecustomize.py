"""Fault injection for the resume tests, kept out of the toolkit's code.

The tests put this folder on PYTHONPATH for the processes they start, so Python imports this
module at start-up. It does nothing unless NMT_TEST_KILL_AT_STEP=N is set: then the process
SIGKILLs itself right after update N (that update's checkpoint saves done, TensorBoard
flushed), the way a machine dies under a preempted job; or NMT_TEST_TERM_IN_FINAL_SEARCH=1:
then it sends itself SIGTERM as the final beam search starts.
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

if os.environ.get("NMT_TEST_TERM_IN_FINAL_SEARCH"):
    # SIGTERM to itself as the final beam search starts (after the greedy test scores).
    import signal

    from nmt.train.final import FinalScoring

    _final_search = FinalScoring.final_search

    def _term_first(self, step):
        os.kill(os.getpid(), signal.SIGTERM)
        return _final_search(self, step)

    FinalScoring.final_search = _term_first
