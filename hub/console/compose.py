"""What an agent may send on a conversation, asked of its channel before they type.

The channel decides (WhatsApp allows free text only within 24 hours of the customer's last
message, SMS counts segments); this module turns its answers into console fields and checks a
reply against them, so a reply the channel must refuse is refused when the agent sends it, not
minutes later by the provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from connectors.base import ComposeInfo, Connector
from hub.envelope import Identity, Template
from hub.store.records import Conversation


class ReplyRefused(Exception):
    """A reply the channel cannot send as asked; ``code`` is an agent-protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Via:
    """Another channel instance a reply leaves through, to the customer's address there."""

    inbox: str
    channel: str
    recipient: Identity


class ComposeAdvisor:
    def __init__(
        self, connectors: Mapping[str, Connector], clock: Callable[[], float] = time.time
    ) -> None:
        self.connectors = connectors
        self.clock = clock

    def info(self, conversation: Conversation) -> ComposeInfo:
        connector = self.connectors.get(conversation.inbox)
        recipient = conversation.recipient
        if connector is None or recipient is None:
            return ComposeInfo()
        return connector.compose(recipient, conversation.last_inbound_at, self.clock())

    def alternatives(self, conversation: Conversation) -> list[Via]:
        """Other inboxes that can reach this conversation's customer, at the addresses the
        customer is known by (a fax customer with an email identity: every email inbox)."""
        customer = conversation.customer or {}
        identities = customer.get("identities") or []
        out = []
        for name, connector in sorted(self.connectors.items()):
            kinds = connector.capabilities.recipient_kinds
            if name == conversation.inbox or not kinds:
                continue
            for identity in identities:
                if identity.get("kind") in kinds and identity.get("address"):
                    out.append(
                        Via(
                            name,
                            connector.channel,
                            Identity(kind=identity["kind"], address=identity["address"]),
                        )
                    )
        return out

    def route(self, conversation: Conversation, via: str, to: str | None) -> Via:
        """The alternative the agent picked, or :class:`ReplyRefused` if it is not one."""
        for option in self.alternatives(conversation):
            if option.inbox == via and option.recipient.address == (to or ""):
                return option
        raise ReplyRefused(
            "bad_via",
            f"inbox {via!r} cannot reach this customer at {to!r}; pick one of compose.alternatives",
        )

    def check_files(self, inbox: str) -> None:
        """:class:`ReplyRefused` unless ``inbox``'s channel can carry files."""
        connector = self.connectors.get(inbox)
        if connector is None or not connector.capabilities.attachments:
            channel = connector.channel if connector is not None else inbox
            raise ReplyRefused("bad_attachment", f"{channel} replies cannot carry files")

    def view(self, conversation: Conversation) -> dict[str, Any]:
        """The ``compose`` field of a conversation in the console."""
        view = asdict(self.info(conversation))
        view["alternatives"] = [
            {
                "inbox": option.inbox,
                "channel": option.channel,
                "kind": option.recipient.kind,
                "address": option.recipient.address,
            }
            for option in self.alternatives(conversation)
        ]
        opt_out = conversation.opt_out
        if opt_out is not None:
            view.update(
                mode="blocked",
                reason=f"the customer opted out with {opt_out.keyword!r}; "
                "nothing can be sent until they write START",
            )
        return view

    def preview(self, conversation: Conversation, text: str) -> dict[str, Any]:
        connector = self.connectors.get(conversation.inbox)
        return connector.preview(text) if connector is not None else {}

    def check(
        self,
        conversation: Conversation,
        text: str,
        template: str | None,
        variables: dict[str, str],
    ) -> tuple[str, Template | None]:
        """The text to store and the template to send, or :class:`ReplyRefused`."""
        if conversation.opt_out is not None:
            raise ReplyRefused("opted_out", "the customer opted out of messages from this inbox")
        info = self.info(conversation)
        if template is None:
            if info.mode == "template":
                raise ReplyRefused(
                    "template_required", info.reason or "this channel needs a template now"
                )
            return text, None
        connector = self.connectors.get(conversation.inbox)
        recipient = conversation.recipient
        if connector is None or recipient is None:
            raise ReplyRefused("bad_template", "this conversation's channel has no templates")
        try:
            rendered = connector.render_template(recipient, template, variables)
        except ValueError as exc:
            raise ReplyRefused("bad_template", str(exc)) from None
        return rendered, Template(name=template, variables=dict(variables))
