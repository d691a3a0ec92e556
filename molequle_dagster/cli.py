"""`molequle`: the project's command line.

    molequle sync        the README's run command: initial sync (or a tick) against the sandbox or Marketo
    molequle sandbox     run the local Marketo sandbox in the foreground
    molequle settings    validate a settings file and summarise it
    molequle tables      rows per lake table

Runs go through the Dagster instance in DAGSTER_HOME (default ./.dagster_home, SQLite), so
`dagster dev` on the same DAGSTER_HOME shows them, with their lineage and metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_HOME = ".dagster_home"
SANDBOX_PORT = 8377

# The repository root's dagster.yaml, for an installed package without the repository (a test keeps
# the two equal).
EMBEDDED_DAGSTER_YAML = """\
# Embedded default instance (written by `molequle sync`): SQLite storage in this folder, plus the same
# concurrency pools as production so that at most 2 bulk exports run at once.
concurrency:
  pools:
    default_limit: 2
    granularity: op
telemetry:
  enabled: false
nux:
  enabled: false
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text) if text != "0" else 0
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molequle", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sync = sub.add_parser("sync", help="sync Marketo into the lake (initial sync first, then ticks)")
    sync.add_argument(
        "--settings", help="settings file (default: $MOLEQULE_SETTINGS or the sandbox defaults)"
    )
    sync.add_argument(
        "--sandbox",
        choices=["auto", "yes", "no"],
        default="auto",
        help="start the embedded Marketo sandbox (auto: when the settings point at it)",
    )
    sync.add_argument("--people", type=_positive_int, default=2000, help="sandbox size in people")
    sync.add_argument("--seed", type=int, default=42, help="sandbox data seed")

    sandbox = sub.add_parser("sandbox", help="run the local Marketo sandbox in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=_port, default=SANDBOX_PORT)
    sandbox.add_argument("--people", type=_positive_int, default=2000)
    sandbox.add_argument("--seed", type=int, default=42)
    sandbox.add_argument(
        "--profile",
        choices=["fast", "marketo"],
        default="fast",
        help="fast: instant bulk jobs; marketo: minutes per job, status every 60 s",
    )

    settings = sub.add_parser("settings", help="validate a settings file and summarise it")
    settings.add_argument("path", nargs="?", help="settings file (default: $MOLEQULE_SETTINGS or defaults)")

    tables = sub.add_parser("tables", help="rows per lake table")
    tables.add_argument("--lake", help="lake URI (default: from the settings)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"sync": _sync, "sandbox": _sandbox, "settings": _settings, "tables": _tables}[args.command](
            args
        )
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the CLI's last line of defence: one clear line, no traceback noise
        from molequle_dagster.settings import SettingsError

        if isinstance(error, SettingsError):
            print(f"molequle: {error}", file=sys.stderr)
            return 2
        raise


# --- commands ----------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> int:
    from molequle_dagster.settings import load_settings, settings_path

    path = args.path or settings_path()
    s = load_settings(path)
    print(f"{path}: valid")
    print(
        f"  Marketo: {s.marketo.base_url} (credentials from ${s.marketo.client_id_env}, "
        f"${s.marketo.client_secret_env})"
    )
    print(
        f"  smart list: {s.people.smart_list.name or s.people.smart_list.id}; "
        f"{len(s.people.export_fields)} person fields"
    )
    print(f"  activity types: {', '.join(t.name for t in s.activities.types)}")
    print(f"  history: {s.sync.history_days} days; every {s.sync.interval_minutes} minutes")
    print(f"  actions: {', '.join(a.name for a in s.actions) or 'none'}; lake: {s.storage.lake_uri}")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import serve_forever

    config = SandboxConfig.for_profile(args.profile)
    config.data.people = args.people
    config.data.seed = args.seed
    print(
        f"Marketo sandbox on http://{args.host}:{args.port} ({args.people} people, seed {args.seed}, "
        f"{args.profile} profile); client id {config.clients[0].client_id}",
        flush=True,
    )
    serve_forever(config, args.host, args.port)
    return 0


def _tables(args: argparse.Namespace) -> int:
    from molequle_dagster.lake import Lake
    from molequle_dagster.views import default_lake_uri

    lake = Lake(args.lake or default_lake_uri())
    for name, rows in table_counts(lake).items():
        print(f"{name:28} {rows:>12,}")
    return 0


def table_counts(lake) -> dict[str, int]:
    """Rows per table: a keyed table's current rows (from its manifest), every day of a day table, a log."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for info in lake.storage.list(lake.storage.root):
        if info.type != pafs.FileType.Directory or info.base_name.startswith("_"):
            continue
        name = info.base_name
        kind = lake.kind(name)
        if kind == "keyed":
            manifest = lake.storage.read_json(lake.storage.path(name, "_manifest.json")) or {}
            counts[name] = int(manifest.get("rows", 0))
        elif kind == "days":
            days = lake.days(name)
            counts[name] = sum(pq.ParquetFile(days.path(d), filesystem=lake.storage.fs).metadata.num_rows
                               for d in days.days())
        elif kind == "log":
            table = lake.log(name).read(columns=[])
            counts[name] = table.num_rows if table is not None else 0
    return dict(sorted(counts.items()))


def _sync(args: argparse.Namespace) -> int:
    if args.settings:
        os.environ["MOLEQULE_SETTINGS"] = str(Path(args.settings).resolve())
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(DEFAULT_HOME).resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)

    from molequle_dagster.settings import load_settings

    settings = load_settings()
    parsed = urlparse(settings.marketo.base_url)  # $MARKETO_BASE_URL already applied: one URL
    local = parsed.hostname in {"127.0.0.1", "localhost"}
    if args.sandbox == "yes" and not local:
        print(
            f"molequle sync: --sandbox yes needs marketo.base_url (or $MARKETO_BASE_URL) on this machine, "
            f"got {settings.marketo.base_url}; use --sandbox no to sync that Marketo",
            file=sys.stderr,
        )
        return 2
    use_sandbox = args.sandbox == "yes" or (args.sandbox == "auto" and local)
    started = time.monotonic()
    server = None
    if use_sandbox:
        server = _start_sandbox(args, parsed.port or SANDBOX_PORT, settings)
    try:
        from molequle_dagster.sync_runner import run_sync

        report = run_sync(progress=lambda line: print(line, flush=True), log_level="WARNING")
        counts = server.control.call_counts() if server else {}
    finally:
        if server is not None:
            server.stop()
    _print_summary(report, counts, time.monotonic() - started, home)
    return 0 if report.success or _only_paused(report) else 1


def _only_paused(report) -> bool:
    """Stopped by Marketo's quota and nothing else: not a failure, the sync continues after the reset."""
    return report.paused_until is not None and len(report.failures) == 1


def _start_sandbox(args: argparse.Namespace, port: int, settings):
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer

    config = SandboxConfig.for_profile("fast")
    config.data.people = args.people
    config.data.seed = args.seed
    client = config.clients[0]
    os.environ.setdefault(settings.marketo.client_id_env, client.client_id)
    os.environ.setdefault(settings.marketo.client_secret_env, client.client_secret)
    server = SandboxServer(config, port=port).start()
    print(f"Started the Marketo sandbox on {server.base_url} ({args.people} people, seed {args.seed})")
    return server


def _print_summary(report, sandbox_counts: dict[str, int], seconds: float, home: Path) -> None:
    from molequle_dagster.lake import Lake

    lake = Lake(report.lake_uri)
    print()
    if _only_paused(report):
        outcome = f"paused until {report.paused_until.isoformat()} (Marketo's quota; run it again then)"
    else:
        outcome = "succeeded" if report.success else "FAILED"
    print(f"{report.kind.capitalize()} sync {outcome}: {len(report.runs)} Dagster runs in {seconds:.1f} s")
    for line in report.failures:
        print(f"  {'paused' if _only_paused(report) else 'failed'}: {line}")
    print("Rows per table:")
    for name, rows in table_counts(lake).items():
        print(f"  {name:28} {rows:>12,}")
    calls = sum(sandbox_counts.values()) if sandbox_counts else report.api_calls
    print(
        f"Marketo API calls: {calls:,}; bulk exports: {report.exports}; "
        f"export bytes: {report.export_bytes:,}"
    )
    print(
        f'Data lake: {lake.location("")}  (read a table: python -c '
        f'"from molequle_dagster.views import read_pandas; '
        f"print(read_pandas('people'))\")"
    )
    print(f"Dagster instance: {home}")
    print("See the runs and the lineage in the Dagster UI:")
    print(f"  DAGSTER_HOME={home} .venv/bin/dagster dev -m molequle_dagster.definitions")
    print(
        "  (to materialize from the UI, keep a sandbox running: .venv/bin/molequle sandbox, "
        "with MARKETO_CLIENT_ID=molequle-sandbox MARKETO_CLIENT_SECRET=sandbox-secret)"
    )


if __name__ == "__main__":
    sys.exit(main())
