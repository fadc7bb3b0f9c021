"""Phone calls through Twilio Programmable Voice or a Twilio-compatible provider."""

from connectors.voice.connector import VoiceConnector

__all__ = ["VoiceConnector"]
