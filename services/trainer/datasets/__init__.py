"""Dataset intake: validate an uploaded CSV table, infer its schema, store it.

Pure Python (pandas/numpy); no gRPC. The DatasetService servicer drives an
:class:`Upload` from :meth:`DatasetIntake.begin_upload`; what is stored, and
how it is read back, is ``services.common.dataset_store``.

- ``upload``: the upload state machine (limits, gzip, staging, atomic commit);
- ``scan``: decoding to UTF-8, the CSV structure, counting each column's values;
- ``inference``: each column's kind and summary.
"""

from services.trainer.datasets.upload import DEFAULT_MISSING_MARKERS, DatasetIntake, IntakeLimits, Upload

__all__ = ["DEFAULT_MISSING_MARKERS", "DatasetIntake", "IntakeLimits", "Upload"]
