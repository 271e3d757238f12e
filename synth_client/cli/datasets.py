"""``synth datasets upload|list|show|preview|delete``."""

from __future__ import annotations

import argparse
import json

from synth_client.cli.common import _client
from synth_client.cli.output import _print_dataset, _print_json, _print_table, _progress_bar, _to_dict, _when
from synth_client.errors import SynthError


def _cmd_upload(args: argparse.Namespace) -> int:
    kinds = {}
    for item in args.kind:
        column, sep, kind = item.partition("=")
        if not sep:
            raise SynthError("INVALID_ARGUMENT", f"--kind {item!r}: expected COLUMN=KIND")
        kinds[column] = kind
    with _client(args) as client:
        dataset = client.upload_dataset(
            args.file,
            name=args.name,
            encoding=args.encoding,
            kinds=kinds,
            missing_markers=args.missing,
            on_progress=None if args.json else _progress_bar(args.file.stat().st_size),
        )
    if args.json:
        _print_json(dataset)
    else:
        _print_dataset(dataset)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.list_datasets()
    if args.json:
        print(json.dumps([_to_dict(d) for d in items], indent=1))
        return 0
    rows = [[d.id, d.display_name, str(d.row_count), str(d.column_count), _when(d)] for d in items]
    _print_table(["ID", "NAME", "ROWS", "COLUMNS", "CREATED"], rows)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.get_dataset(args.dataset_id)
    if args.json:
        _print_json(dataset)
    else:
        _print_dataset(dataset)
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    with _client(args) as client:
        columns, rows = client.preview_dataset(args.dataset_id, args.rows)
    if args.json:
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=1))
    else:
        _print_table(columns, [["<missing>" if v is None else v for v in row] for row in rows])
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_dataset(args.dataset_id)
    print(f"deleted {args.dataset_id}")
    return 0
