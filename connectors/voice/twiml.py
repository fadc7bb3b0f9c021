"""The TwiML a call is answered with, built with the SDK's ``VoiceResponse``. Pure.

Every answer is a function of the settings, the caller's language and the URLs the connector
hands in (never string concatenation: the SDK escapes what a prompt or a URL contains).
"""

from __future__ import annotations

from dataclasses import dataclass

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from connectors.voice.settings import AfterWait, VoiceSettings


@dataclass(frozen=True, slots=True)
class Urls:
    """Where Twilio asks next for this call (absolute, as Twilio signs them)."""

    wait: str
    choice: str
    queue_result: str
    recorded: str
    recording: str
    transcription: str


def queue_name(inbox: str) -> str:
    """The provider queue an inbox's callers wait in (the hub's routing queue is separate)."""
    return f"channelhub-{inbox}"[:64]


def _say(response: VoiceResponse | Gather, text: str, language: str) -> None:
    if text:
        response.say(text, language=language)


def answer(
    settings: VoiceSettings,
    *,
    inbox: str,
    language: str,
    urls: Urls,
    open_now: bool,
) -> str:
    """The answer to a new call: the recording announcement, the greeting, then ``<Enqueue>``
    (open) or the closed message and what follows after hours (closed)."""
    response = VoiceResponse()
    if settings.record_calls:
        _say(response, settings.text(settings.recording_announcement, language), language)
    _say(response, settings.text(settings.greeting, language), language)
    if not open_now:
        _say(response, settings.text(settings.closed_message, language), language)
        return _after(response, settings, settings.after_hours, language, urls)
    response.enqueue(
        queue_name(inbox), wait_url=urls.wait, wait_url_method="POST", action=urls.queue_result
    )
    return str(response.to_xml())


def hold(
    settings: VoiceSettings, *, language: str, position: int, waited: float, urls: Urls
) -> str:
    """The wait URL's answer: ``<Leave>`` once the caller waited ``max_wait``, else the hold
    message with their place in line inside a one-key ``<Gather>`` (1 voicemail, 2 callback),
    then the hold music; Twilio asks again when it has played."""
    response = VoiceResponse()
    if waited >= settings.max_wait:
        response.leave()
        return str(response.to_xml())
    gather = Gather(num_digits=1, action=urls.choice, method="POST", timeout=1)
    message = settings.text(settings.hold_message, language).replace("{position}", str(position))
    _say(gather, message, language)
    if settings.hold_music_url:
        gather.play(settings.hold_music_url)
    else:
        gather.pause(length=5)
    response.append(gather)
    return str(response.to_xml())


def leave() -> str:
    """Out of the line (a key was pressed): the ``<Enqueue>`` action says what follows."""
    response = VoiceResponse()
    response.leave()
    return str(response.to_xml())


def keep_waiting() -> str:
    """An answer that changes nothing: back to the wait URL's loop."""
    return str(VoiceResponse().to_xml())


def after_wait(settings: VoiceSettings, choice: AfterWait, language: str, urls: Urls) -> str:
    """What a caller who left the line gets: voicemail or a callback confirmation."""
    return _after(VoiceResponse(), settings, choice, language, urls)


def _after(
    response: VoiceResponse,
    settings: VoiceSettings,
    choice: AfterWait,
    language: str,
    urls: Urls,
) -> str:
    if choice is AfterWait.CALLBACK:
        _say(response, settings.text(settings.callback_message, language), language)
        response.hangup()
        return str(response.to_xml())
    _say(response, settings.text(settings.voicemail_prompt, language), language)
    response.record(
        max_length=settings.voicemail_max_length,
        play_beep=True,
        action=urls.recorded,
        method="POST",
        recording_status_callback=urls.recording,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed",
        transcribe=settings.transcribe or None,
        transcribe_callback=urls.transcription if settings.transcribe else None,
    )
    response.hangup()
    return str(response.to_xml())


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())


def conference(
    name: str,
    *,
    caller: bool,
    status_callback: str,
    recording_callback: str | None,
    hold_music_url: str | None,
) -> str:
    """Join the conference ``name`` (the conversation's id). The caller's leg ends the
    conference when it hangs up and waits (with hold music) until an agent is there; an
    agent's leg starts it and may leave without ending it, so a transfer brings the next."""
    response = VoiceResponse()
    dial = Dial()
    dial.conference(
        name,
        start_conference_on_enter=not caller,
        end_conference_on_exit=caller,
        beep=False,
        wait_url=hold_music_url if caller and hold_music_url else None,
        status_callback=status_callback,
        status_callback_event="start end join leave hold",
        status_callback_method="POST",
        record="record-from-start" if recording_callback else None,
        recording_status_callback=recording_callback,
        recording_status_callback_event="completed" if recording_callback else None,
    )
    response.append(dial)
    return str(response.to_xml())


def spoken(text: str, language: str) -> str:
    """A call that reads ``text`` to whoever answers, then hangs up (a text reply)."""
    response = VoiceResponse()
    response.say(text, language=language)
    response.hangup()
    return str(response.to_xml())
