"""Credentials never reach messages: scrubbing, reprs and construction errors."""

from __future__ import annotations

import pytest
from modelapp_operator.store import (
    BlobCredentials,
    StoreConfigError,
    account_name_from_url,
    scrub,
    store_from_credentials,
)

pytestmark = pytest.mark.unit

KEY = "c2VjcmV0LWtleS1ub3QtcmVhbC8rPT0xMjM0NTY3ODkwYWJjZGVm+/=="
SAS = "sv=2024-08-04&ss=b&srt=co&sp=rl&se=2030-01-01T00:00:00Z&sig=AbC%2Bdef%3D"
CS = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"


def test_given_secrets_are_removed_raw_and_url_encoded() -> None:
    text = f"failed with key {KEY} / quoted c2VjcmV0LWtleS1ub3QtcmVhbC8rPT0xMjM0NTY3ODkwYWJjZGVm%2B%2F%3D%3D"
    out = scrub(text, [KEY])
    assert "c2VjcmV0" not in out
    assert out.count("***") == 2


def test_connection_string_parts_are_removed_but_not_the_endpoint() -> None:
    out = scrub(f"bad {CS} and the key alone {KEY}", [CS])
    assert KEY not in out
    assert "AccountName=acct" not in out  # the whole string went
    assert scrub("endpoint core.windows.net", [CS]) == "endpoint core.windows.net"


def test_credential_shapes_are_removed_even_when_unknown() -> None:
    text = "GET https://a.blob.core.windows.net/c?sv=1&sig=SECRETSIG&se=2 AccountKey=SECRETKEY; x"
    out = scrub(text)
    assert "SECRETSIG" not in out
    assert "SECRETKEY" not in out
    assert "https://a.blob.core.windows.net/c?sv=1&sig=***&se=2" in out


def test_sas_token_is_removed() -> None:
    assert "AbC" not in scrub(f"url?{SAS}", [SAS])


def test_credentials_repr_hides_secrets() -> None:
    creds = BlobCredentials(connection_string=CS, sas_token=SAS, account_key=KEY, account_name="acct")
    text = repr(creds) + str(creds)
    assert KEY not in text
    assert "sig=" not in text
    assert "acct" in text
    assert creds.secrets == (CS, SAS, KEY)


def test_credentials_from_a_secret() -> None:
    creds = BlobCredentials.from_mapping({"connectionString": CS + "\n"})
    assert creds.connection_string == CS
    assert creds.kind == "connection string"
    assert BlobCredentials.from_mapping({"sas_token": SAS}).kind == "SAS token"
    assert BlobCredentials.from_mapping({"accountKey": KEY, "accountName": "a"}).account_name == "a"
    assert BlobCredentials.from_mapping({}).kind == "DefaultAzureCredential"


def test_malformed_connection_string_error_has_no_secret() -> None:
    bad = f"AccountKey={KEY};garbage"
    with pytest.raises(StoreConfigError) as info:
        store_from_credentials(None, "models", BlobCredentials(connection_string=bad))
    assert KEY not in str(info.value)
    assert info.value.__cause__ is None


def test_account_url_is_required_without_a_connection_string() -> None:
    with pytest.raises(StoreConfigError, match=r"account URL is required"):
        store_from_credentials(None, "models", BlobCredentials(sas_token=SAS))


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://acct.blob.core.windows.net", "acct"),
        ("https://acct.blob.core.windows.net/", "acct"),
        ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://azurite:10000/devstoreaccount1/", "devstoreaccount1"),
        ("https://storage.example.com", None),
    ],
)
def test_account_name_from_url(url: str, name: str | None) -> None:
    assert account_name_from_url(url) == name


async def test_entra_id_is_used_without_secrets() -> None:
    store = store_from_credentials("https://acct.blob.core.windows.net", "models", BlobCredentials())
    try:
        assert store.location("diabetes/", "1") == "https://acct.blob.core.windows.net/models/diabetes/1/"
    finally:
        await store.close()


async def test_entra_id_with_a_client_id() -> None:
    creds = BlobCredentials(client_id="00000000-0000-0000-0000-000000000001")
    assert creds.kind == "DefaultAzureCredential"
    store = store_from_credentials("https://acct.blob.core.windows.net", "models", creds)
    await store.close()
