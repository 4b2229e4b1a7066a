"""streamscribe keys create | list | revoke: the API keys of a data directory's store.

A running server sees a new or revoked key at its next request (it looks keys up in the store).
"""

from __future__ import annotations

import argparse
import string
import time
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..errors import InvalidRequest
from ..store.base import KeyStore
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
        help="an operator's key (once keys own transcripts, it sees every key's)",
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
        action.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    data_dir = load_settings({"data_dir": args.data_dir}).data_dir
    if args.action != "create" and not store_path(data_dir).is_file():
        raise InvalidRequest(f"no transcript store in {data_dir}: is --data-dir the server's data directory?")
    store = open_store(data_dir)
    try:
        match args.action:
            case "create":
                return _create(store, args.name, args.admin)
            case "list":
                return _list(store)
            case _:
                return _revoke(store, args.name)
    finally:
        store.close()


def _create(store: KeyStore, name: str, admin: bool) -> int:
    if not name or len(name) > _MAX_NAME_LENGTH or not set(name) <= _NAME_CHARACTERS:
        raise InvalidRequest(f"a key name is 1-{_MAX_NAME_LENGTH} letters, digits, '-', '_', '.' or '@'")
    key = new_api_key()
    store.create_key(name, key_hash(key), admin)
    print(f"created {'admin ' if admin else ''}key {name!r}; it is shown once, store it now:")
    print(key)
    return 0


def _list(store: KeyStore) -> int:
    keys = store.keys()
    if not keys:
        print("no keys: the server asks for no credential")
    for key in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(key.created_at))
        print(f"{key.name}\t{'admin' if key.admin else 'tenant'}\tcreated {created}")
    return 0


def _revoke(store: KeyStore, name: str) -> int:
    if not store.revoke_key(name):
        print(f"no key named {name!r}")
        return 1
    print(f"revoked key {name!r}")
    return 0
