"""SMS, MMS and WhatsApp through Twilio's messaging API or a Twilio-compatible provider."""

from connectors.sms.connector import SmsConnector

__all__ = ["SmsConnector"]
