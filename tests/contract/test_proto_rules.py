"""The synth.v1 contract follows our API rules (STYLE.md, buf style, AIPs),
checked by descriptor introspection of the generated code."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
import synth.v1
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

from scripts.proto_lock import current_fields, read_lock

FILES: list[FileDescriptor] = [
    importlib.import_module(f"synth.v1.{m.name}").DESCRIPTOR
    for m in pkgutil.iter_modules(synth.v1.__path__)
    if m.name.endswith("_pb2")
]
SERVICES = [s for f in FILES for s in f.services_by_name.values()]
METHODS = [m for s in SERVICES for m in s.methods]


def _messages() -> list[Descriptor]:
    out: list[Descriptor] = []

    def walk(d: Descriptor) -> None:
        out.append(d)
        for n in d.nested_types:
            if not n.GetOptions().map_entry:
                walk(n)

    for f in FILES:
        for d in f.message_types_by_name.values():
            walk(d)
    return out


def _enums() -> list[EnumDescriptor]:
    enums = [e for f in FILES for e in f.enum_types_by_name.values()]
    return enums + [e for m in _messages() for e in m.enum_types]


def test_every_file_is_in_the_versioned_package() -> None:
    assert len(FILES) >= 5
    for f in FILES:
        assert f.package == "synth.v1", f.name
        assert f.name.startswith("synth/v1/"), f.name


def test_the_platform_services_exist() -> None:
    names = {s.full_name for s in SERVICES}
    assert {
        "synth.v1.DatasetService",
        "synth.v1.TrainingService",
        "synth.v1.ModelService",
        "synth.v1.SamplingService",
        "synth.v1.EvaluationService",
    } <= names


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_services_are_named_xxx_service(service) -> None:  # type: ignore[no-untyped-def]
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*Service", service.name)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_each_rpc_has_its_own_request_and_response(method) -> None:  # type: ignore[no-untyped-def]
    assert method.input_type.name == f"{method.name}Request"
    assert method.output_type.name == f"{method.name}Response"


def test_no_message_is_shared_between_rpcs() -> None:
    used = [m.input_type.full_name for m in METHODS] + [m.output_type.full_name for m in METHODS]
    assert len(used) == len(set(used))


@pytest.mark.parametrize("enum", _enums(), ids=lambda e: e.full_name)
def test_enums_start_with_unspecified_zero_and_are_prefixed(enum) -> None:  # type: ignore[no-untyped-def]
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper()
    assert enum.values[0].number == 0
    assert enum.values[0].name == f"{prefix}_UNSPECIFIED"
    for value in enum.values:
        assert value.name.startswith(prefix + "_"), value.name


@pytest.mark.parametrize("method", [m for m in METHODS if m.name.startswith("List")], ids=lambda m: m.name)
def test_list_rpcs_paginate(method) -> None:  # type: ignore[no-untyped-def]
    req = method.input_type.fields_by_name
    assert req["page_size"].type == FieldDescriptor.TYPE_INT32
    assert req["page_token"].type == FieldDescriptor.TYPE_STRING
    assert method.output_type.fields_by_name["next_page_token"].type == FieldDescriptor.TYPE_STRING


@pytest.mark.parametrize("method", [m for m in METHODS if m.server_streaming], ids=lambda m: m.name)
def test_streamed_messages_carry_a_sequence_number(method) -> None:  # type: ignore[no-untyped-def]
    if method.output_type.name == "UploadDatasetResponse":
        pytest.skip("client stream")
    assert method.output_type.fields_by_name["sequence"].type == FieldDescriptor.TYPE_INT64


def test_client_streams_send_a_header_first() -> None:
    for method in METHODS:
        if method.client_streaming:
            oneof = method.input_type.oneofs[0]
            assert oneof.fields[0].name == "header", method.name


def test_names_follow_the_style() -> None:
    for message in _messages():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", message.name), message.full_name
        for f in message.fields:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name), f"{message.full_name}.{f.name}"


def test_field_numbers_are_never_renumbered_or_reused() -> None:
    locked = read_lock()
    current = current_fields()
    unlocked = sorted(set(current) - set(locked))
    assert not unlocked, f"new fields not recorded: run `python scripts/proto_lock.py` ({unlocked[:5]})"
    by_message: dict[str, dict[int, str]] = {}
    for name, number in current.items():
        by_message.setdefault(name.rsplit(".", 1)[0], {})[number] = name
    for name, number in locked.items():
        if name in current:
            assert current[name] == number, f"{name} was renumbered from {number} to {current[name]}"
            continue
        owner = by_message.get(name.rsplit(".", 1)[0], {})
        assert number not in owner, f"{name}'s number {number} is reused by {owner.get(number)}: reserve it"
