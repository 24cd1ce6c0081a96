"""Who may call the operator API (pure)."""

from __future__ import annotations

import grpc

from cos.service import OperatorSettings

Code = grpc.StatusCode


def test_the_token_lets_in_and_nothing_else_does() -> None:
    access = OperatorSettings(token="s3cret")
    assert access.refusal({"authorization": "Bearer s3cret"}, []) is None
    assert access.refusal({"authorization": "bearer s3cret"}, []) is None  # scheme: any case
    for wrong in ({}, {"authorization": "Bearer s3cre"}, {"authorization": "s3cret"}):
        assert access.refusal(wrong, []) is Code.UNAUTHENTICATED


def test_with_no_credential_configured_it_is_closed() -> None:
    assert OperatorSettings().refusal({"authorization": "Bearer anything"}, []) is (
        Code.PERMISSION_DENIED
    )
    assert OperatorSettings(api_open=True).refusal({}, []) is None


def test_an_allowed_client_certificate_lets_in() -> None:
    access = OperatorSettings(client_names=["ops.example"])
    assert access.refusal({}, ["ops.example"]) is None
    assert access.refusal({}, ["someone.else"]) is Code.UNAUTHENTICATED
