"""Training, in pieces: ``data`` (file lists, validation split, patch sampler), ``objective``
(rate-distortion loss), ``checkpoint`` (exact resume, exports), ``dist`` (torchrun),
``validate``, ``log`` (log.csv, progress, plot), ``trainer`` (:class:`Trainer`, the one
training step), ``loop`` (``slimfast train``'s run) and ``schedule`` (the lambda search).

The command lines are :mod:`slimfast.tools.train` and :mod:`slimfast.tools.schedule`.
"""
