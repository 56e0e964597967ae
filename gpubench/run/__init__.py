"""Running work for a command: prepare a run, plan its memory, measure every mode round by
round (:func:`gpubench.run.harness.compare`), check their results, and the runs built on it
(counterfactuals, sweeps, accuracy, the FAQ's plan, the doctor's probe).

Nothing here prints; progress goes to a callback. Submodules are imported where they are
needed (importing this package loads no torch).
"""
