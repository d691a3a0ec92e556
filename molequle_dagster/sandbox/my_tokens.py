"""Program and folder "My Tokens": the `{{my.X}}` values emails and campaigns use (Get Tokens by Folder Id).

A token is defined on a program or a folder (`InstanceState.my_tokens`). A program sees its own tokens and
those of the folders above it; where two define the same name, the nearest one wins (a program overrides
its folder), which is what a Request Campaign token override may target.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.model import InstanceState

FOLDER_TYPES = ("Folder", "Program")
APP_URL = "https://app-sandbox.marketo.com/#"


def folder_chain(state: InstanceState, folder_type: str, folder_id: int) -> list[tuple[str, int]] | None:
    """The folder and the folders above it, nearest first; None when no such folder or program exists."""
    folders = {folder_id for folder_id, _name in catalog.FOLDERS}
    if folder_type == "Folder":
        return [("Folder", folder_id)] if folder_id in folders else None
    match = state.programs.filter(pc.equal(state.programs["id"], folder_id))
    if match.num_rows == 0:
        return None
    parent = match["folderId"][0].as_py()
    return [("Program", folder_id), *([("Folder", parent)] if parent in folders else [])]


def tokens_of(
    state: InstanceState, folder_type: str, folder_id: int, *, inherited: bool = True
) -> list[dict[str, Any]] | None:
    """The tokens a folder or program sees (with where each is defined), sorted by name; None when the
    folder does not exist."""
    with state.lock:
        chain = folder_chain(state, folder_type, folder_id)
        if chain is None:
            return None
        defined = [dict(t) for t in state.my_tokens]
        programs = {r["id"]: r["type"] for r in state.programs.select(["id", "type"]).to_pylist()}
    seen: dict[str, dict[str, Any]] = {}
    for where in chain if inherited else chain[:1]:
        for token in defined:
            if (token["folderType"], token["folderId"]) == where and token["name"] not in seen:
                seen[token["name"]] = {**token, "computedUrl": _url(where, programs)}
    return [seen[name] for name in sorted(seen)]


def token_names(state: InstanceState, folder_type: str, folder_id: int) -> set[str]:
    return {t["name"] for t in tokens_of(state, folder_type, folder_id) or []}


def _url(where: tuple[str, int], program_types: dict[int, str]) -> str:
    """The token's place in the UI: the My Tokens tab (…C3) of the folder (#MF) or program defining it."""
    kind, folder_id = where
    if kind == "Folder":
        return f"{APP_URL}MF{folder_id}C3"
    return f"{APP_URL}{catalog.PROGRAM_URL_PREFIX.get(program_types.get(folder_id, ''), 'PG')}{folder_id}C3"
