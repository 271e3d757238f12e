"""The HTTP/JSON API's routes, one per RPC. The HTTP server dispatches on this
table and the OpenAPI document is generated from it, so the two cannot drift.

Conventions: JSON bodies and responses are the RPC's request and response
messages in protobuf's JSON mapping with the proto field names
(``dataset_id``); path and query parameters fill request fields of the same
name. Custom methods use AIP-136's ``:verb`` suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.backends import METHODS, Method


@dataclass(frozen=True)
class Route:
    http_method: str
    pattern: str  # "/v1/datasets/{dataset_id}"
    rpc: str  # "/synth.v1.DatasetService/GetDataset"
    summary: str
    # json: unary call; upload: a CSV body; events: a job's events as
    # server-sent events (training and evaluation jobs alike); download: a
    # streamed file; evaluate: the deprecated Evaluate, events or the final report.
    kind: str = "json"
    # Request fields read from the query string (GET/DELETE) besides path ones.
    query: tuple[str, ...] = ()
    # Request fields from a JSON body.
    body: bool = False
    description: str = ""
    tag: str = ""
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        rx = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", re.escape(self.pattern))
        object.__setattr__(self, "regex", re.compile(f"^{rx}$"))

    @property
    def method(self) -> Method:
        return METHODS[self.rpc]

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.pattern)


_D, _T, _M, _S, _E = (
    "/synth.v1.DatasetService/",
    "/synth.v1.TrainingService/",
    "/synth.v1.ModelService/",
    "/synth.v1.SamplingService/",
    "/synth.v1.EvaluationService/",
)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/datasets",
        _D + "UploadDataset",
        "Upload a CSV table (optionally gzip-compressed)",
        kind="upload",
        tag="datasets",
        description=(
            "The body is the file itself (any content type, e.g. `text/csv`; `Transfer-Encoding: chunked` "
            "works) or `multipart/form-data` with the file in a part named `file` (other fields before it). "
            "Header fields come from the query string or form fields: `display_name`, `encoding`, "
            "`missing_marker` (repeatable), `kind` (repeatable, `column=categorical`) and `request_id` (a UUID: "
            "a retry with the same one returns the dataset already stored). Larger than the "
            "upload limit: 413. The table is validated and typed; a bad file gives 400 with the row or "
            "column named in `details`, and nothing is stored."
        ),
    ),
    Route("GET", "/v1/datasets", _D + "ListDatasets", "List datasets, newest first", query=("page_size", "page_token")),
    Route("GET", "/v1/datasets/{dataset_id}", _D + "GetDataset", "A dataset and its inferred schema"),
    Route("DELETE", "/v1/datasets/{dataset_id}", _D + "DeleteDataset", "Delete a dataset"),
    Route("GET", "/v1/datasets/{dataset_id}/preview", _D + "PreviewDataset", "The first rows", query=("row_count",)),
    Route("POST", "/v1/jobs", _T + "StartTraining", "Start a CTGAN training job", body=True),
    Route("GET", "/v1/jobs", _T + "ListTrainingJobs", "List training jobs", query=("page_size", "page_token")),
    Route("GET", "/v1/jobs/{job_id}", _T + "GetTrainingJob", "A training job"),
    Route("POST", "/v1/jobs/{job_id}:cancel", _T + "CancelTrainingJob", "Cancel a queued or running job"),
    Route(
        "GET",
        "/v1/jobs/{job_id}/events",
        _T + "WatchTraining",
        "A job's progress as server-sent events",
        kind="events",
        query=("after_sequence",),
        description=(
            "`text/event-stream`: one event per WatchTrainingResponse, `id` = its sequence, `event` = the "
            "event kind (queued, started, epoch, checkpoint, resumed, succeeded, failed, cancelled), `data` = "
            "the message as JSON. Ends after the terminal event. Re-attach with `after_sequence` or the "
            "`Last-Event-ID` header: no event is lost or repeated. Comment lines keep idle streams alive."
        ),
    ),
    Route("GET", "/v1/models", _M + "ListModels", "List trained models", query=("page_size", "page_token")),
    Route("GET", "/v1/models/{model_id}", _M + "GetModel", "A model's metadata"),
    Route("DELETE", "/v1/models/{model_id}", _M + "DeleteModel", "Delete a model"),
    Route(
        "POST",
        "/v1/models/{model_id}:sample",
        _S + "SampleRows",
        "Generate synthetic rows, streamed as a CSV download",
        kind="download",
        body=True,
        description=(
            "The body is a SampleRowsRequest (`row_count`, `seed`, `conditions`, `format`...). The answer "
            "streams as it is generated (`text/csv`, or `application/vnd.apache.arrow.stream` for "
            "OUTPUT_FORMAT_ARROW_IPC) with the header's seed and row count in `X-Synth-Seed` and "
            "`X-Synth-Row-Count`. A failure after the first byte ends the chunked body without its last "
            "chunk, so clients see an incomplete transfer rather than a short file."
        ),
    ),
    Route(
        "POST",
        "/v1/evaluations",
        _E + "StartEvaluation",
        "Start an evaluation job: utility, fidelity and privacy of a synthetic set",
        body=True,
        description=(
            "Returns at once with the queued job (`job.id`, `eval-...`). Follow it with "
            "`GET /v1/evaluations/{job_id}/events`; once it has succeeded, `GET /v1/reports/{report_id}` has "
            "the report. Send a `request_id` (a UUID) to make a retry return the same job."
        ),
    ),
    Route(
        "GET",
        "/v1/evaluations",
        _E + "ListEvaluationJobs",
        "List evaluation jobs, newest first",
        query=("page_size", "page_token"),
    ),
    Route("GET", "/v1/evaluations/{job_id}", _E + "GetEvaluationJob", "An evaluation job"),
    Route(
        "POST", "/v1/evaluations/{job_id}:cancel", _E + "CancelEvaluationJob", "Cancel a queued or running evaluation"
    ),
    Route(
        "GET",
        "/v1/evaluations/{job_id}/events",
        _E + "WatchEvaluation",
        "An evaluation's progress as server-sent events",
        kind="events",
        query=("after_sequence",),
        description=(
            "`text/event-stream`, as a training job's events: one event per WatchEvaluationResponse, `id` = "
            "its sequence, `event` = the event kind (queued, started, progress, succeeded, failed, cancelled), "
            "`data` = the message as JSON. A failed event carries a google.rpc.Status (`failed.status`, its "
            "`details` an ErrorInfo with the reason). Ends after the terminal event. Re-attach with "
            "`after_sequence` or the `Last-Event-ID` header: no event is lost or repeated."
        ),
    ),
    Route(
        "POST",
        "/v1/reports",
        _E + "Evaluate",
        "Deprecated: evaluate and wait (use POST /v1/evaluations)",
        kind="evaluate",
        body=True,
        description=(
            "Deprecated, kept for one release: starts an evaluation job as `POST /v1/evaluations` does and "
            "follows it. With `Accept: text/event-stream`: `progress` events then one `report` event (data: "
            "the EvaluateResponse as JSON). Otherwise the call waits and answers the final EvaluateResponse."
        ),
    ),
    Route("GET", "/v1/reports", _E + "ListReports", "List evaluation reports", query=("page_size", "page_token")),
    Route("GET", "/v1/reports/{report_id}", _E + "GetReport", "An evaluation report"),
    Route("DELETE", "/v1/reports/{report_id}", _E + "DeleteReport", "Delete a report"),
)


def match(http_method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route for a request, its path parameters, and the methods the path
    allows (for 405)."""
    allowed = []
    for route in ROUTES:
        found = route.regex.match(path)
        if found is None:
            continue
        if route.http_method == http_method:
            return route, found.groupdict(), []
        allowed.append(route.http_method)
    return None, {}, allowed
