"""SendCommand's document checks as boto3 sees them: DocumentHash against the resolved version
(InvalidDocument), the 64 KB limit on content plus parameter values (MaxDocumentSizeExceeded) and
the platform of nodes named in InstanceIds (UnsupportedPlatformType). Each error is the modeled
exception class botocore raises for SendCommand."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import DOCUMENT

WINDOWS_ONLY = json.dumps(
    {
        "schemaVersion": "2.2",
        "mainSteps": [
            {"action": "aws:runPowerShellScript", "name": "ps", "inputs": {"runCommand": ["Write-Output hi"]}}
        ],
    }
)


def described_hash(ssm, name: str) -> str:
    doc = ssm.describe_document(Name=name)["Document"]
    assert doc["HashType"] == "Sha256"
    return doc["Hash"]


def test_document_hash_of_another_document_is_invalid_document(ssm, node):
    good = described_hash(ssm, DOCUMENT)
    sent = ssm.send_command(
        InstanceIds=[node],
        DocumentName=DOCUMENT,
        DocumentHash=good,
        DocumentHashType="Sha256",
        Parameters={"commands": ["true"]},
    )
    assert sent["Command"]["Status"] == "Pending"

    wrong = "0" * 64
    with pytest.raises(ssm.exceptions.InvalidDocument) as info:
        ssm.send_command(
            InstanceIds=[node],
            DocumentName=DOCUMENT,
            DocumentHash=wrong,
            DocumentHashType="Sha256",
            Parameters={"commands": ["true"]},
        )
    assert info.value.response["Error"]["Message"] == f"document hash {wrong} does not match Sha256."


def test_content_plus_parameters_over_64_kb_is_max_document_size_exceeded(ssm, node):
    content = len(ssm.get_document(Name=DOCUMENT)["Content"].encode())
    with pytest.raises(ssm.exceptions.MaxDocumentSizeExceeded) as info:
        ssm.send_command(
            InstanceIds=[node],
            DocumentName=DOCUMENT,
            Parameters={"commands": ["#" + "a" * (64 * 1024 - content)]},
        )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_windows_document_on_the_local_node_is_unsupported_platform_type(ssm, node):
    name = f"WindowsOnly-{uuid.uuid4().hex[:8]}"
    created = ssm.create_document(Name=name, Content=WINDOWS_ONLY, DocumentType="Command")
    assert created["DocumentDescription"]["PlatformTypes"] == ["Windows"]
    with pytest.raises(ssm.exceptions.UnsupportedPlatformType) as info:
        ssm.send_command(InstanceIds=[node], DocumentName=name)
    message = info.value.response["Error"]["Message"]
    assert message.startswith(f"Cannot perform operation for instance id {node} of platform type "), message
