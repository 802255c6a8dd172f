"""Which account hosts the operator sends credentials to, and which token audiences it lets a host ask for."""

from __future__ import annotations

from typing import Any

import pytest
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.store import (
    DEFAULT_ACCOUNT_HOSTS,
    BlobCredentials,
    HostNotAllowed,
    StoreConfigError,
    StoreOptions,
    TokenScopeRefused,
    host_allowed,
    store_from_credentials,
)
from modelapp_operator.store.credential import STORAGE_SCOPE, StorageOnlyCredential

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "url",
    [
        "https://acct.blob.core.windows.net",
        "https://ACCT.Blob.Core.Windows.Net/",
        "https://acct.blob.core.chinacloudapi.cn",
        "https://acct.blob.core.usgovcloudapi.net",
        "https://acct.z17.blob.storage.azure.net",
        "https://acct-secondary.blob.core.windows.net",
    ],
)
def test_azure_account_hosts_are_allowed_by_default(url: str) -> None:
    assert host_allowed(url, DEFAULT_ACCOUNT_HOSTS)


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example",
        "https://acct.blob.core.windows.net.attacker.example",
        "https://blob.core.windows.net",
        "https://acct.blob.core.windows.net@attacker.example/",
        "https://acct.queue.core.windows.net",
        "http://127.0.0.1:10000/devstoreaccount1",
        "https://acct.blob.core.windows.net:99999",
        "not a url",
        "",
    ],
)
def test_other_hosts_are_refused_by_default(url: str) -> None:
    assert not host_allowed(url, DEFAULT_ACCOUNT_HOSTS)


@pytest.mark.parametrize(
    ("url", "patterns", "allowed"),
    [
        ("http://127.0.0.1:10000/devstoreaccount1", ["127.0.0.1:10000"], True),
        ("http://127.0.0.1:10001/devstoreaccount1", ["127.0.0.1:10000"], False),
        ("http://127.0.0.1:10001/devstoreaccount1", ["127.0.0.1:*"], True),
        ("http://127.0.0.1:10001/devstoreaccount1", ["127.0.0.1"], True),
        ("https://models.internal.example", ["*.internal.example"], True),
        ("https://models.internal.example", ["models.internal.example:443"], True),
        ("http://models.internal.example", ["models.internal.example:443"], False),
    ],
)
def test_patterns_name_hosts_or_host_and_port(url: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(url, patterns) is allowed


def test_the_setting_takes_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS", "127.0.0.1:10000, *.blob.core.windows.net")
    assert OperatorSettings().allowed_account_hosts == ["127.0.0.1:10000", "*.blob.core.windows.net"]
    monkeypatch.delenv("MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS")
    assert OperatorSettings().allowed_account_hosts == list(DEFAULT_ACCOUNT_HOSTS)


AZURITE_CS = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5LWtleS1rZXkta2V5;"
    "BlobEndpoint=http://attacker.example:10000/devstoreaccount1;"
)


@pytest.mark.parametrize(
    ("url", "creds"),
    [
        (None, BlobCredentials(connection_string=AZURITE_CS)),
        ("https://attacker.example", BlobCredentials(sas_token="sv=1&sig=abcd")),
        ("https://attacker.example", BlobCredentials(account_key="a2V5LWtleS1rZXkta2V5", account_name="a")),
        ("https://attacker.example", BlobCredentials()),
    ],
    ids=["connection-string", "sas", "account-key", "token"],
)
def test_a_store_for_a_refused_host_is_never_built(url: str | None, creds: BlobCredentials) -> None:
    options = StoreOptions(allowed_hosts=DEFAULT_ACCOUNT_HOSTS)
    with pytest.raises(HostNotAllowed, match=r"attacker\.example") as err:
        store_from_credentials(url, "models", creds, options=options)
    assert isinstance(err.value, StoreConfigError)
    assert "a2V5LWtleS1rZXkta2V5" not in str(err.value)


def test_a_token_credential_needs_https() -> None:
    options = StoreOptions(allowed_hosts=("127.0.0.1:10000",))
    with pytest.raises(StoreConfigError, match="https"):
        store_from_credentials(
            "http://127.0.0.1:10000/devstoreaccount1", "models", BlobCredentials(), options=options
        )


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        self.scopes.append(scopes)
        return ("token", 0)

    async def close(self) -> None:
        self.closed = True


async def test_the_credential_wrapper_issues_storage_tokens_only() -> None:
    inner = Recorder()
    wrapped = StorageOnlyCredential(inner)  # type: ignore[arg-type]
    await wrapped.get_token(STORAGE_SCOPE, tenant_id="t")
    for scopes in [
        ("https://management.azure.com/.default",),
        (STORAGE_SCOPE, "https://vault.azure.net/.default"),
    ]:
        with pytest.raises(TokenScopeRefused, match=r"storage\.azure\.com"):
            await wrapped.get_token(*scopes)
    assert inner.scopes == [(STORAGE_SCOPE,)]
    await wrapped.close()
    assert inner.closed
