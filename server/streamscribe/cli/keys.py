"""streamscribe keys create | list | revoke: the API keys of a data directory's store.

A running server sees a new or revoked key at its next request (it looks keys up in the store).
"""

from __future__ import annotations

import argparse
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..errors import InvalidRequest
from ..store.base import ApiKey, KeyStore
from ..store.sqlite import open_store, store_path
from ..transports.auth import key_hash, new_api_key

_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.@")
_MAX_NAME_LENGTH = 64


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True, help="create, list or revoke")
    create = actions.add_parser(
        "create", help="make a key and print it once, as the last line (only its hash is stored)"
    )
    create.add_argument("name", help="who or what the key is for (letters, digits, - _ . @)")
    create.add_argument(
        "--admin",
        action="store_true",
        help="an operator's key: it sees and may delete every key's transcripts and sessions",
    )
    create.add_argument(
        "--max-streams",
        type=_count,
        help="live streams it may hold open at once (default: the server's limits)",
    )
    create.add_argument(
        "--max-replays",
        type=_count,
        help="files it may have transcribed at once (default: the server's limit)",
    )
    create.add_argument(
        "--audio-retention-h",
        type=_non_negative("hours"),
        help="hours its recordings are kept after their second pass; 0 keeps none (default: the server's setting)",
    )
    create.add_argument(
        "--max-audio-mb",
        type=_non_negative("megabytes"),
        help="disk its kept recordings may take; past it new streams and uploads are refused "
        "(default: no quota)",
    )
    listing = actions.add_parser("list", help="the keys' names, rights and ages (never the keys)")
    revoke = actions.add_parser(
        "revoke", help="delete a key: new requests with it are refused (streams already open go on)"
    )
    revoke.add_argument("name", help="the name the key was created with")
    for action in (create, listing, revoke):
        action.add_argument(
            "--data-dir",
            type=Path,
            help="the server's data directory (default: STREAMSCRIBE_DATA_DIR, or its default)",
        )
        action.add_argument(
            "--database-url",
            metavar="URL",
            help="the servers' PostgreSQL database, when they run with one (default: "
            "STREAMSCRIBE_DATABASE_URL, else the SQLite store in --data-dir)",
        )
        action.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings({"data_dir": args.data_dir, "database_url": args.database_url})
    store = _open_key_store(settings.data_dir, settings.database_url, args.action)
    try:
        match args.action:
            case "create":
                limits = ApiKey(
                    name=args.name,
                    admin=args.admin,
                    created_at=time.time(),
                    max_streams=args.max_streams,
                    max_replays=args.max_replays,
                    audio_retention_h=args.audio_retention_h,
                    max_audio_mb=args.max_audio_mb,
                )
                return _create(store, limits)
            case "list":
                return _list(store)
            case _:
                return _revoke(store, args.name)
    finally:
        store.close()


def _open_key_store(data_dir: Path, database_url: str | None, action: str) -> KeyStore:
    if database_url is not None:
        from ..store.postgres import open_postgres_store

        return open_postgres_store(database_url)
    if action != "create" and not store_path(data_dir).is_file():
        raise InvalidRequest(f"no transcript store in {data_dir}: is --data-dir the server's data directory?")
    return open_store(data_dir)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a count is 0 or more")
    return value


def _non_negative(unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{unit} are 0 or more")
        return value

    return parse


def _create(store: KeyStore, key: ApiKey) -> int:
    name = key.name
    if not name or len(name) > _MAX_NAME_LENGTH or not set(name) <= _NAME_CHARACTERS:
        raise InvalidRequest(f"a key name is 1-{_MAX_NAME_LENGTH} letters, digits, '-', '_', '.' or '@'")
    secret = new_api_key()
    store.create_key(key, key_hash(secret))
    print(f"created {'admin ' if key.admin else ''}key {name!r}; it is shown once, store it now:")
    print(secret)
    return 0


def _list(store: KeyStore) -> int:
    keys = store.keys()
    if not keys:
        print("no keys: the server asks for no credential")
    for key in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(key.created_at))
        limits = [
            f"{label} {value:g}"
            for label, value in (
                ("max streams", key.max_streams),
                ("max replays", key.max_replays),
                ("audio kept h", key.audio_retention_h),
                ("max audio MB", key.max_audio_mb),
            )
            if value is not None
        ]
        print("\t".join([key.name, "admin" if key.admin else "tenant", f"created {created}", *limits]))
    return 0


def _revoke(store: KeyStore, name: str) -> int:
    if not store.revoke_key(name):
        print(f"no key named {name!r}")
        return 1
    print(f"revoked key {name!r}")
    return 0
