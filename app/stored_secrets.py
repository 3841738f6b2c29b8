"""Every secret the service stores encrypted, re-encrypted under CREDENTIALS_KEY's first key.

By the models' convention a column whose name ends in `_enc` holds a token of app.core.crypto: the
accounts' Kite api secrets, access tokens and egress proxy URLs, the webhooks' secrets. Rotation
reads each with any key of CREDENTIALS_KEY and writes it back under the first, so the old key can
then be dropped. Nothing here shows a secret: a row that cannot be read is named by table, column
and id only.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, select, update
from sqlalchemy.orm import Session

from app.core.crypto import rotate, under_first_key
from app.models import Base


@dataclass(frozen=True)
class Rotation:
    reencrypted: int  # were under another key, now under the first
    unchanged: int    # already under the first key: left as they were


class UnreadableSecret(RuntimeError):
    """A stored secret that no key of CREDENTIALS_KEY decrypts: the rotation changes nothing."""


def encrypted_columns() -> list[Column]:
    return [column for table in Base.metadata.sorted_tables for column in table.columns
            if column.name.endswith("_enc")]


def rotate_stored_secrets(session: Session) -> Rotation:
    """Re-encrypt under the first key each stored secret that is under another, in the caller's
    transaction. The rows are locked while it runs, so a secret written meanwhile (a login's new
    token) waits instead of being overwritten with the old one."""
    reencrypted = unchanged = 0
    for column in encrypted_columns():
        table = column.table
        (key,) = table.primary_key.columns  # every table of secrets has a one-column key
        rows = session.execute(select(key, column).where(column.is_not(None)).with_for_update()).all()
        for row_id, token in rows:
            if under_first_key(token):
                unchanged += 1
                continue
            try:
                rotated = rotate(token)
            except RuntimeError:
                raise UnreadableSecret(
                    f"{table.name}.{column.name} of {key.name} {row_id!r} is under no key of CREDENTIALS_KEY: "
                    "add the key it was stored with (after the first) and run this again; nothing was changed"
                ) from None
            session.execute(update(table).where(key == row_id).values({column.name: rotated}))
            reencrypted += 1
    return Rotation(reencrypted=reencrypted, unchanged=unchanged)
