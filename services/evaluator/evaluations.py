"""The evaluator's domain: gather the real training rows, the real held-out rows
and a synthetic table, score them (``metrics.evaluate``), store the report.

Where the rows come from:
- a model: the real rows are split exactly as the model recorded (its holdout
  indices), and synthetic rows are drawn from the sampler;
- an uploaded synthetic table: it must have the real table's columns, and the
  real rows get a seeded split (stratified on the target when there is one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.dataset_store import DatasetRepository
from services.common.errors import (
    Cancelled,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    SynthError,
)
from services.common.holdout import split_holdout
from services.common.logs import current_context, log_context
from services.common.models import ModelRegistry
from services.common.quality import TASKS, EvaluationInputs, Report, check_schema, evaluate
from services.common.schema import ColumnInfo
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, request_key, write_json_atomic
from services.evaluator.sampler_client import SamplerClient

log = logging.getLogger(__name__)
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class EvaluationRequest:
    dataset_id: str
    model_id: str = ""
    synthetic_dataset_id: str = ""
    target_column: str = ""
    task: str = "auto"
    seed: int | None = None
    synthetic_rows: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    request_id: str = ""  # AIP-155 idempotency key

    def key(self) -> RequestKey | None:
        """The request id with a digest of everything else asked."""
        asked = {k: v for k, v in dataclasses.asdict(self).items() if k != "request_id"}
        digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
        return request_key(self.request_id, digest)


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float


class ReportStore:
    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    def save(self, report: Report, request: RequestKey | None = None) -> Report:
        """Store ``report``; returns what is stored for ``request``, which is
        another report when a concurrent retry of it stored first."""
        with self._store.staging() as staged:
            write_json_atomic(staged / REPORT_FILE, report.to_dict())
            created = self._store.commit_once(staged, "reports", report.id, request)
        return report if created else self.get(report.id)

    def get(self, report_id: str) -> Report:
        return Report.from_dict(read_json(self._store.existing("reports", report_id) / REPORT_FILE))

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[list[Report], str]:
        ids, token = self._store.page("reports", page_size, page_token)
        return load_page(ids, self.get), token

    def delete(self, report_id: str) -> None:
        self._store.delete("reports", report_id)


class EvaluationMetrics:
    """The evaluator's domain metrics (``synth_evaluation_*``): verdicts and
    error codes are the only labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reports = Counter(
            "synth_evaluation_reports_total", "Reports stored, by overall verdict.", ["verdict"], registry=registry
        )
        self.failures = Counter(
            "synth_evaluation_failures_total",
            "Evaluations that ended without a report, by error code (CANCELLED: the client left).",
            ["code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "synth_evaluation_seconds",
            "Time to compute and store one report.",
            buckets=(1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1800),
            registry=registry,
        )
        self.running = Gauge("synth_evaluation_running", "Evaluations computing now.", registry=registry)
        self.waiting = Gauge(
            "synth_evaluation_waiting", "Evaluations waiting for a turn (MAX_CONCURRENT).", registry=registry
        )


class Evaluations:
    def __init__(
        self,
        store: ArtifactStore,
        datasets: DatasetRepository,
        models: ModelRegistry,
        sampler: SamplerClient,
        *,
        max_synthetic_rows: int = 1_000_000,
        holdout_fraction: float = 0.2,
        max_concurrent: int = 1,
        n_jobs: int | None = -1,
        metrics: EvaluationMetrics | None = None,
    ) -> None:
        self._store = store
        self.metrics = metrics or EvaluationMetrics(CollectorRegistry())
        self._datasets = datasets
        self._models = models
        self._sampler = sampler
        self._max_rows = max_synthetic_rows
        self._holdout_fraction = holdout_fraction
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._n_jobs = n_jobs
        self.reports = ReportStore(store)

    def stream(self, request: EvaluationRequest, is_active: Callable[[], bool]) -> Iterator[Progress | Report]:
        """Progress events while the report is computed (on a worker thread),
        then the stored report. Bad requests fail before the first event. A
        retry of a request whose report is stored gets that report at once."""
        earlier = self._store.find_request("reports", request.key())
        if earlier is not None:
            yield self.reports.get(earlier)
            return
        self._check(request)
        events: queue.Queue[Progress | Report | BaseException] = queue.Queue()
        context = current_context()

        def progress(stage: str, fraction: float) -> None:
            if not is_active():
                raise Cancelled("the client cancelled the evaluation")
            events.put(Progress(stage, float(fraction)))

        def work() -> None:
            with log_context(**context):
                try:
                    events.put(self.run(request, progress))
                except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                    events.put(err)

        threading.Thread(target=work, name="evaluation", daemon=True).start()
        while True:
            item = events.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Report):
                return

    def run(self, request: EvaluationRequest, progress: Callable[[str, float], None]) -> Report:
        self._check(request)
        if not self._slots.acquire(blocking=False):
            self.metrics.waiting.inc()
            try:
                progress("waiting for another evaluation to finish", 0.0)
                self._slots.acquire()
            finally:
                self.metrics.waiting.dec()
        self.metrics.running.inc()
        try:
            report = self._run(request, progress)
        except SynthError as err:
            self.metrics.failures.labels(err.code).inc()
            raise
        except Exception:
            self.metrics.failures.labels("INTERNAL").inc()
            raise
        finally:
            self.metrics.running.dec()
            self._slots.release()
        self.metrics.reports.labels(report.verdict or "none").inc()
        self.metrics.seconds.observe(report.seconds)
        return report

    def _check(self, request: EvaluationRequest) -> None:
        if bool(request.model_id) == bool(request.synthetic_dataset_id):
            raise InvalidArgument(
                "name exactly one synthetic source: a model_id or a synthetic_dataset_id",
                violations=[FieldViolation("synthetic", "set model_id or synthetic_dataset_id")],
            )
        if request.task not in TASKS:
            raise InvalidArgument(f"unknown task {request.task!r}; use one of {', '.join(TASKS)}")
        if request.synthetic_rows < 0:
            raise InvalidArgument("synthetic_row_count must not be negative")
        if request.synthetic_rows > self._max_rows:
            raise ResourceExhausted(
                f"{request.synthetic_rows} synthetic rows asked for; at most {self._max_rows} per report "
                "(SYNTH_EVALUATOR_MAX_SYNTHETIC_ROWS)",
                reason="TOO_MANY_ROWS",
            )
        dataset = self._datasets.get(request.dataset_id)
        names = [c.name for c in dataset.columns]
        if request.target_column and request.target_column not in names:
            raise InvalidArgument(
                f"target column {request.target_column!r} is not in dataset {dataset.id} (columns: {', '.join(names)})",
                violations=[FieldViolation("target_column", f"unknown column {request.target_column!r}")],
            )
        if request.model_id:
            model = self._models.get(request.model_id)
            if model.dataset_id != request.dataset_id:
                raise InvalidArgument(
                    f"model {model.id} was trained on dataset {model.dataset_id}, not {request.dataset_id}",
                    violations=[FieldViolation("model_id", "trained on another dataset")],
                )
            if model.holdout.holdout_rows == 0:
                raise FailedPrecondition(
                    f"model {model.id} held out no rows, so nothing is left to test on; "
                    "train with holdout_fraction > 0",
                    reason="NO_HOLDOUT",
                )
        else:
            self._datasets.get(request.synthetic_dataset_id)

    def _run(self, request: EvaluationRequest, progress: Callable[[str, float], None]) -> Report:
        started = time.perf_counter()
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        progress("loading the real rows", 0.01)
        dataset = self._datasets.get(request.dataset_id)
        real = self._datasets.load_frame(request.dataset_id)
        columns = dataset.columns
        engine = engine_reason = ""
        if request.model_id:
            model = self._models.get(request.model_id)
            # the schema the model was trained with (a job may exclude columns or learn them as categories)
            columns = [ColumnInfo.from_dict(c) for c in model.columns]
            engine, engine_reason = model.engine, (model.selection or {}).get("reason", "")
            holdout = self._models.holdout_indices(request.model_id)
            train = np.setdiff1d(np.arange(len(real)), holdout)
            rows = request.synthetic_rows or len(train)
            progress(f"drawing {rows} synthetic rows from the model", 0.03)
            synthetic = self._sampler.draw(request.model_id, rows, seed)
        else:
            target = real[request.target_column] if request.target_column else None
            train, holdout = split_holdout(target, len(real), self._holdout_fraction, seed)
            progress("loading the synthetic rows", 0.03)
            synthetic = self._datasets.load_frame(request.synthetic_dataset_id)
            check_schema(dataset.columns, synthetic)
        report = evaluate(
            EvaluationInputs(
                real_train=real.iloc[train].reset_index(drop=True),
                real_holdout=real.iloc[holdout].reset_index(drop=True),
                synthetic=synthetic,
                columns=columns,
                target=request.target_column or None,
                task=request.task,
                seed=seed,
                thresholds=dict(request.thresholds),
                n_jobs=self._n_jobs,
            ),
            progress=lambda stage, fraction: progress(stage, 0.05 + 0.93 * fraction),
        )
        report.id = self._store.new_id("reports", request.key())
        report.dataset_id = request.dataset_id
        report.model_id = request.model_id
        report.synthetic_dataset_id = request.synthetic_dataset_id
        report.engine, report.engine_reason = engine, engine_reason
        report.create_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report.seconds = time.perf_counter() - started
        progress("storing the report", 0.99)
        report = self.reports.save(report, request.key())
        log.info("report stored", extra={"report_id": report.id, "seconds": round(report.seconds, 1)})
        return report
