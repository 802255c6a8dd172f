"""`modelapp publish|versions|fetch`: model versions in blob storage, and the store options they share."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson
from modelapp_bundle import (
    DOCKERIGNORE,
    BundleError,
    Manifest,
    manifest_for_directory,
    render_dockerfile,
    validate_segment,
)
from pydantic import SecretStr

from modelapp_operator.cli.command import EXIT_OK, Command, UsageError
from modelapp_operator.cli.settings import CliSettings
from modelapp_operator.store import (
    AzureBlobStore,
    BlobCredentials,
    ContainerNotFound,
    ManifestInvalid,
    StoreOptions,
    VersionExists,
    download_verified,
    normalize_prefix,
    store_from_credentials,
)

# --- shared store options -------------------------------------------------------------------------

STORE_HELP = """\
storage location and credentials:
  --connection-string, or --account-url with --sas-token / --account-key / nothing (Entra ID via
  DefaultAzureCredential, e.g. workload identity). Each flag falls back to its environment variable:
  MODELAPP_CONNECTION_STRING, MODELAPP_ACCOUNT_URL, MODELAPP_SAS_TOKEN, MODELAPP_ACCOUNT_KEY,
  MODELAPP_CONTAINER, MODELAPP_PREFIX. Prefer the environment for secrets: flags show up in `ps`."""


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("storage (flags override MODELAPP_* environment variables)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--connection-string", metavar="CS", help="storage connection string")
    where.add_argument("--account-url", metavar="URL", help="blob service URL")
    auth = group.add_mutually_exclusive_group()
    auth.add_argument("--sas-token", metavar="T", help="SAS token (with --account-url)")
    auth.add_argument("--account-key", metavar="K", help="account key (with --account-url)")
    group.add_argument("--container", metavar="C", help="blob container")
    group.add_argument("--prefix", metavar="P", help="model folder in the container, e.g. diabetes/")


def resolve_credentials(
    args: argparse.Namespace, settings: CliSettings
) -> tuple[str | None, BlobCredentials]:
    """Flags first; a location given as a flag never mixes with a connection string from the environment."""

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    if args.connection_string and (args.sas_token or args.account_key):
        raise UsageError("--sas-token/--account-key go with --account-url, not --connection-string")
    if args.connection_string:
        return None, BlobCredentials(connection_string=args.connection_string)
    mounted = _mounted_credentials(settings) if not (args.sas_token or args.account_key) else None
    if mounted is not None and mounted.connection_string:
        return None, mounted
    sas = args.sas_token or secret(settings.sas_token)
    key = None if args.sas_token else (args.account_key or secret(settings.account_key))
    creds = mounted or BlobCredentials(sas_token=sas, account_key=key, account_name=settings.account_name)
    if args.account_url:
        return args.account_url, creds
    if (
        mounted is None
        and settings.connection_string is not None
        and not (args.sas_token or args.account_key)
    ):
        return None, BlobCredentials(connection_string=secret(settings.connection_string))
    if settings.account_url:
        return settings.account_url, creds
    raise UsageError(
        "no storage location: give --connection-string or --account-url "
        "(or set MODELAPP_CONNECTION_STRING / MODELAPP_ACCOUNT_URL)"
    )


def _mounted_credentials(settings: CliSettings) -> BlobCredentials | None:
    """The credentials in MODELAPP_CREDENTIALS_DIR (a mounted Secret), read with the operator's key mapping."""
    folder = settings.credentials_dir
    if folder is None:
        return None
    try:
        files = {
            p.name: p.read_text() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        }
    except OSError as exc:
        raise UsageError(f"cannot read the credentials in {folder}: {exc.strerror}") from None
    creds = BlobCredentials.from_mapping(files)
    if not creds.secrets:
        raise UsageError(f"{folder} holds none of connectionString, sasToken or accountKey")
    return creds


def _token_credential(settings: CliSettings, creds: BlobCredentials) -> Any:
    """With ``credential: workload-identity`` and no secret: the federated token alone, never IMDS."""
    if settings.credential != "workload-identity" or creds.secrets:
        return None
    from azure.identity.aio import WorkloadIdentityCredential

    try:
        return WorkloadIdentityCredential()
    except ValueError:
        raise UsageError(
            "workload identity: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE are not all set; "
            "is the pod labelled azure.workload.identity/use=true and its ServiceAccount annotated with "
            "azure.workload.identity/client-id?"
        ) from None


def open_store(args: argparse.Namespace, settings: CliSettings) -> tuple[AzureBlobStore, str]:
    """The store and the normalised prefix the command works on."""
    container = args.container or settings.container
    if not container:
        raise UsageError("no container: give --container (or set MODELAPP_CONTAINER)")
    prefix = normalize_prefix(args.prefix if args.prefix is not None else settings.prefix)
    account_url, creds = resolve_credentials(args, settings)
    options = StoreOptions(
        connection_timeout=settings.connection_timeout,
        read_timeout=settings.read_timeout,
        retry_total=settings.retry_total,
    )
    token = _token_credential(settings, creds)
    store = store_from_credentials(
        account_url, container, creds, options=options, token_credential=token, owns_token_credential=True
    )
    return store, prefix


def version_arg(text: str) -> str:
    try:
        return validate_segment(text, "version")
    except BundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def sha256_arg(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise argparse.ArgumentTypeError(f"expected 64 lowercase hex digits, got {text!r}")
    return text


def name_arg(text: str) -> str:
    try:
        return validate_segment(text, "name")
    except BundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def metric_arg(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep or not key.strip():
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


# --- publish --------------------------------------------------------------------------------------


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", type=Path, help="bundle directory (model.onnx, ...)")
    parser.add_argument("--version", required=True, type=version_arg, help="version to publish, e.g. 1.2.0")
    parser.add_argument("--name", type=name_arg, help="bundle name (default: local manifest's, else DIR's)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        type=metric_arg,
        metavar="NAME=VALUE",
        help="metric recorded in the manifest (repeatable; overrides the local modelapp.json)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the version if it already exists")
    parser.add_argument(
        "--create-container", action="store_true", help="create the container if it does not exist yet"
    )
    add_store_arguments(parser)


async def publish(args: argparse.Namespace, settings: CliSettings) -> int:
    directory: Path = args.directory
    if not await asyncio.to_thread(directory.is_dir):
        raise UsageError(f"{directory} is not a directory")
    manifest = await asyncio.to_thread(
        manifest_for_directory, directory, version=args.version, name=args.name, metrics=dict(args.metric)
    )
    store, prefix = open_store(args, settings)
    async with store:
        if args.create_container:
            await store.ensure_container()
        try:
            await store.upload_version(prefix, directory, manifest, overwrite=args.force)
        except VersionExists as exc:
            raise VersionExists(f"{exc}; use --force to overwrite it") from None
        except ContainerNotFound as exc:
            raise ContainerNotFound(f"{exc}; create it, or pass --create-container") from None
        where = store.location(prefix, manifest.version)
    print(
        f"published {manifest.name} {manifest.version} ({len(manifest.files)} files, "
        f"sha256 {manifest.short_sha}) to {where}"
    )
    return EXIT_OK


PUBLISH = Command(
    "publish",
    help="upload a model bundle as a new version",
    description=(
        "Upload DIR as version V: every file with its sha256, then modelapp.json last, so the operator\n"
        "never sees a half-uploaded version. Labels, preprocess, contract and metrics come from\n"
        "DIR/modelapp.json when present."
    ),
    epilog=f"""{STORE_HELP}

examples:
  modelapp publish ./model --version 1.0.0 --metric r2=0.46 \\
      --connection-string "$AZURITE_CS" --container models --prefix diabetes/
  MODELAPP_ACCOUNT_URL=https://acct.blob.core.windows.net MODELAPP_CONTAINER=models \\
      modelapp publish ./model --prefix diabetes/ --version 1.1.0   # Entra ID login
""",
    arguments=_publish_arguments,
    run=publish,
)


# --- versions -------------------------------------------------------------------------------------


def _versions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    add_store_arguments(parser)


async def versions(args: argparse.Namespace, settings: CliSettings) -> int:
    store, prefix = open_store(args, settings)
    rows: list[dict[str, Any]] = []
    async with store:
        for ref in await store.list_versions(prefix):
            row: dict[str, Any] = {"version": ref.version, "etag": ref.etag}
            try:
                manifest = await store.read_manifest(prefix, ref.version)
            except ManifestInvalid as exc:
                row["error"] = str(exc)
            else:
                assert manifest is not None
                row.update(_manifest_row(manifest))
            rows.append(row)
    rows.sort(key=lambda r: (r.get("created", ""), r["version"]))
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_versions_table(rows))
    return EXIT_OK


VERSIONS = Command(
    "versions",
    help="list the complete versions of a model",
    description="List versions whose manifest exists (half-uploaded versions are not shown).",
    epilog=f"""{STORE_HELP}

examples:
  modelapp versions --connection-string "$AZURITE_CS" --container models --prefix diabetes/
  modelapp versions --container models --prefix diabetes/ --json | jq '.[].version'
""",
    arguments=_versions_arguments,
    run=versions,
)


def _manifest_row(manifest: Manifest) -> dict[str, Any]:
    return {
        "name": manifest.name,
        "created": manifest.created.isoformat(),
        "sha256": manifest.sha256,
        "metrics": manifest.metrics or {},
    }


def format_versions_table(rows: list[dict[str, Any]]) -> str:
    table = [("VERSION", "CREATED", "SHA256", "METRICS")]
    for row in rows:
        if "error" in row:
            table.append((row["version"], "-", "-", "invalid manifest"))
            continue
        metrics = ",".join(f"{k}={v:g}" for k, v in sorted(row["metrics"].items())) or "-"
        table.append((row["version"], row["created"], row["sha256"][:12], metrics))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:3])) + "  " + r[3] for r in table
    )


# --- fetch ----------------------------------------------------------------------------------------


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", required=True, type=version_arg, help="version to download")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to fill")
    parser.add_argument(
        "--expect-sha256",
        type=sha256_arg,
        metavar="HEX",
        help="fail, leaving nothing, unless the version's bundle sha256 is this (the operator passes the one it resolved)",
    )
    docker = parser.add_argument_group("image build context")
    docker.add_argument("--dockerfile", action="store_true", help="also write DIR/Dockerfile")
    docker.add_argument("--base-image", metavar="IMG", help="FROM image for --dockerfile (the scorer)")
    docker.add_argument("--source", metavar="URL", help="source label (default: the version's blob URL)")
    add_store_arguments(parser)


async def fetch(args: argparse.Namespace, settings: CliSettings) -> int:
    if args.dockerfile and not args.base_image:
        raise UsageError("--dockerfile needs --base-image")
    store, prefix = open_store(args, settings)
    out: Path = args.out
    async with store:
        manifest = await download_verified(store, prefix, args.version, out, args.expect_sha256)
        source = args.source or store.location(prefix, args.version)
    if args.dockerfile:
        dockerfile = render_dockerfile(
            args.base_image, manifest.name, manifest.version, manifest.sha256, source
        )
        await asyncio.to_thread((out / "Dockerfile").write_text, dockerfile)
        await asyncio.to_thread((out / ".dockerignore").write_text, DOCKERIGNORE)
    print(
        f"fetched {manifest.name} {manifest.version} into {out} "
        f"({len(manifest.files)} files verified, sha256 {manifest.short_sha})"
    )
    return EXIT_OK


FETCH = Command(
    "fetch",
    help="download and verify a version into a directory",
    description=(
        "Download version V into a hidden .staging-* directory inside DIR, verify every sha256 against\n"
        "the manifest, and only then move the files into place. Nothing is written outside DIR (its\n"
        "parent, the working directory, HOME and TMPDIR may be read-only). On a mismatch nothing is\n"
        "left in DIR."
    ),
    epilog=f"""{STORE_HELP}

examples:
  modelapp fetch --container models --prefix diabetes/ --version 1.0.0 --out /models/diabetes
  modelapp fetch --version 1.0.0 --out /workspace --dockerfile \\
      --base-image registry.example/scoring-service:0.1.0   # Kaniko build context
""",
    arguments=_fetch_arguments,
    run=fetch,
)

COMMANDS = (PUBLISH, VERSIONS, FETCH)
