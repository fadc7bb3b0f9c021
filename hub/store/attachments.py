"""Files of messages as the API serves them: the blob and who may read it."""

from __future__ import annotations

from sqlalchemy import select

from hub.store.database import Database
from hub.store.records import StoredAttachment
from hub.store.schema import attachments, conversations, messages


class Attachments:
    """Reads of the attachments table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, attachment_id: str) -> StoredAttachment | None:
        """An attachment with what deciding who may see it needs: its conversation's id and
        assignee. None if there is no such attachment."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(
                        attachments.c.id,
                        attachments.c.name,
                        attachments.c.content_type,
                        attachments.c.blob_ref,
                        conversations.c.id.label("conversation_id"),
                        conversations.c.assignee,
                    )
                    .join(messages, messages.c.id == attachments.c.message_id)
                    .join(conversations, conversations.c.id == messages.c.conversation_id)
                    .where(attachments.c.id == attachment_id)
                )
            ).first()
        if row is None:
            return None
        return StoredAttachment(
            id=row.id,
            name=row.name,
            content_type=row.content_type,
            blob_ref=row.blob_ref,
            conversation_id=row.conversation_id,
            assignee=row.assignee,
        )
