"""Answers streamed as they are generated: ``generate``'s streamer for a batch, handing each row's new text to
the request that asked it (``Question.stream``), so a streamed answer arrives token by token even when it is
generated with others."""

from __future__ import annotations

from typing import Callable, Sequence

from transformers.generation.streamers import BaseStreamer

Sink = Callable[[str], None]  # takes the next piece of one answer (called on the model's thread)


class RowStreamer(BaseStreamer):
    """Each row's new text to its sink (rows without one are skipped). The pieces a sink gets add up to a prefix
    of the row's answer as ``decode`` gives it (special tokens left out, white space stripped): text is held back
    while it ends in a partial character or at white space."""

    def __init__(self, tokenizer, sinks: Sequence[Sink | None]):
        self.tokenizer, self.sinks = tokenizer, list(sinks)
        self.ids: list[list[int]] = [[] for _ in self.sinks]
        self.sent = [""] * len(self.sinks)
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate's first put: the prompt (or the decoder's start token), not an answer
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.sinks[row] is not None:
                self.ids[row].append(token)
                self._send(row)

    def _send(self, row: int) -> None:
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True).strip()
        sent = self.sent[row]
        if len(text) > len(sent) and text.startswith(sent) and not text.endswith("\ufffd"):
            self.sinks[row](text[len(sent):])
            self.sent[row] = text

    def end(self) -> None:
        pass


def streamer_options(tokenizer, sinks: Sequence[Sink | None], num_beams: int) -> dict:
    """``{"streamer": ...}`` for ``generate`` when a row asks to be streamed; {} otherwise, and for beam search
    (whose answer is known only at the end: it arrives whole)."""
    if num_beams != 1 or not any(sink is not None for sink in sinks):
        return {}
    return {"streamer": RowStreamer(tokenizer, sinks)}


def rest_of(answer: str, sent: str) -> str:
    """What a stream that sent ``sent`` still owes of ``answer`` (nothing where ``sent`` is no prefix of it: what
    was sent cannot be taken back)."""
    return answer[len(sent):] if answer.startswith(sent) else ""
