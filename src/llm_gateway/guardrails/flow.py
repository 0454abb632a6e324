"""One request's guardrails: before the call, beside it, after it, and over its stream.

A stream's text passes through two filters per choice. Output checks (`post_call`) hold a look-behind window of
`window_chars`: text leaves only once it was scanned with at least that much after it (scans run every
RELEASE_STEP characters), and never in the middle of a finding, so a masked or blocked value never reaches the
client (a finding longer than the window is the limit). Reversible placeholders are then restored, holding back
only a tail that could still become one. With output checks, a tool call's arguments are held until the call is
complete (the next call starts or its choice ends) and are then checked whole, like a whole answer's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import orjson

from llm_gateway.guardrails.base import (
    BLOCK,
    DURING,
    ERROR_OPEN,
    LOG_ONLY,
    MASK,
    PASS,
    POST,
    PRE,
    Check,
    GuardrailBlocked,
    Span,
    Verdict,
)
from llm_gateway.guardrails.masking import Restorer, Vault, apply, merged
from llm_gateway.guardrails.texts import answer_slots, request_slots
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import NATIVE_BODY

log = logging.getLogger("llm_gateway.guardrails")
FAILED = object()  # a check that failed open
WHOLE_TEXT = ("webhook", "llm_judge", "prompt_injection")  # checks of a whole text, not of spans within it
HOLD_ALL = 1 << 40
RELEASE_STEP = 16  # a stream's text is scanned (and released) each time this much more arrived past the window


class RequestGuard:
    __slots__ = ("checks", "ctx", "during_checks", "post_checks", "vault", "verdicts", "window")

    def __init__(self, ctx: RequestContext, checks: tuple[Check, ...]) -> None:
        self.ctx = ctx
        self.checks = checks
        self.during_checks = [c for c in checks if DURING in c.modes]
        self.post_checks = [c for c in checks if POST in c.modes]
        self.window = max((c.config.window_chars for c in self.post_checks), default=0)
        if any(c.config.type in WHOLE_TEXT for c in self.post_checks):
            self.window = HOLD_ALL  # they judge a whole answer: a stream is checked once, when it is complete
        self.vault: Vault | None = None
        self.verdicts: dict[tuple[str, str, str], Verdict] = {}

    def note(self, check: Check, stage: str, action: str, entities: list[str] | None = None) -> None:
        verdict = self.verdicts.get((check.name, stage, action))
        if verdict is None:
            verdict = self.verdicts[(check.name, stage, action)] = Verdict(check.name, stage, action)
        if entities:
            verdict.entities.extend(e for e in entities if e not in verdict.entities)

    async def _run(self, check: Check, texts: list[str], stage: str) -> Any:
        try:
            return await check.scan(texts, stage)
        except Exception as exc:
            log.warning("guardrail %s failed at %s: %s", check.name, stage, type(exc).__name__)
            if check.config.on_error == "open":
                self.note(check, stage, ERROR_OPEN)
                return FAILED
            self.note(check, stage, BLOCK, ["CHECK_FAILED"])
            raise GuardrailBlocked(check.name, stage) from None

    async def _decide(self, checks: list[Check], texts: list[str], stage: str) -> list[list[tuple[Span, str]]]:
        """Run `checks` over `texts`; raise on a block; the spans to mask in each text, with their action."""
        if len(checks) == 1:
            results = [await self._run(checks[0], texts, stage)]
        else:
            results = await asyncio.gather(*(self._run(c, texts, stage) for c in checks))
        masks: list[list[tuple[Span, str]]] = [[] for _ in texts]
        for check, found in zip(checks, results, strict=True):
            if found is FAILED:
                continue
            entities = [s.entity for spans in found for s in spans]
            if not entities:
                self.note(check, stage, PASS)
                continue
            action = check.action
            if action == BLOCK:
                self.note(check, stage, BLOCK, entities)
                raise GuardrailBlocked(check.name, stage)
            self.note(check, stage, action, entities)
            if action != LOG_ONLY:
                for i, spans in enumerate(found):
                    masks[i].extend((s, action if stage == PRE else MASK) for s in spans)
        return masks

    # -- before the call
    async def before(self) -> None:
        ctx = self.ctx
        ctx.extensions.pop(NATIVE_BODY, None)  # the canonical body: what the guardrails read and rewrite
        pre = [c for c in self.checks if PRE in c.modes]
        slots = request_slots(ctx.endpoint, ctx.body)
        if not pre or not slots:
            return
        texts = [container[key] for container, key in slots]
        masks = await self._decide(pre, texts, PRE)
        if not any(masks):
            return
        vault = self.vault = Vault()
        for (container, key), text, spans in zip(slots, texts, masks, strict=True):
            if spans:
                container[key] = apply(text, spans, vault)
        ctx.request.body = orjson.dumps(ctx.body)  # what goes upstream: the masked text
        if ctx.cache is not None:  # an answer to masked text is not stored for others who send the same
            ctx.cache.store = False

    # -- beside the call
    @property
    def parallel(self) -> bool:
        return bool(self.during_checks) and bool(request_slots(self.ctx.endpoint, self.ctx.body))

    async def during(self, send: Awaitable[Any]) -> Any:
        """Await the upstream call and the `during_call` checks together; a block cancels the call."""
        texts = [c[k] for c, k in request_slots(self.ctx.endpoint, self.ctx.body)]
        sending = asyncio.ensure_future(send)
        await asyncio.sleep(0)  # the call starts first: a check that decides at once still runs beside it
        try:
            await self._decide(self.during_checks, texts, DURING)
        except BaseException:
            sending.cancel()
            try:
                result = await sending
            except BaseException:
                pass
            else:
                result[1].release()
            raise
        return await sending

    async def cached(self, answer: bytes) -> bytes:
        """An answer from the cache (which another caller may have stored) checked as the upstream's would be:
        the `during_call` checks, which have no call to run beside, then the answer's own."""
        if self.during_checks:
            texts = [c[k] for c, k in request_slots(self.ctx.endpoint, self.ctx.body)]
            if texts:
                await self._decide(self.during_checks, texts, DURING)
        return await self.answer(answer)

    # -- after the call
    @property
    def restorer(self) -> Restorer | None:
        vault = self.vault
        return Restorer(vault.originals) if vault is not None and vault.originals else None

    async def answer(self, body: bytes) -> bytes:
        """A whole answer (OpenAI JSON) checked, masked or refused, and its placeholders restored."""
        restorer = self.restorer
        if not self.post_checks and restorer is None:
            return body
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        slots = answer_slots(data) if isinstance(data, dict) else []
        texts = [container[key] for container, key in slots]
        texts = await self.finished(texts, [key == "arguments" for _, key in slots], restorer)
        for (container, key), text in zip(slots, texts, strict=True):
            container[key] = text
        return orjson.dumps(data)

    async def finished(self, texts: list[str], in_json: list[bool], restorer: Restorer | None) -> list[str]:
        """Complete texts of an answer checked (a block raises), masked, and their placeholders restored;
        `in_json`: the text is JSON (tool-call arguments), so what goes back in is escaped."""
        if self.post_checks and texts:
            masks = await self._decide(self.post_checks, texts, POST)
            texts = [apply(t, m, None) if m else t for t, m in zip(texts, masks, strict=True)]
        if restorer is not None:
            texts = [restorer.whole(t, j) for t, j in zip(texts, in_json, strict=True)]
        return texts

    def stream(self) -> StreamGuard | None:
        restorer_needed = self.vault is not None and bool(self.vault.originals)
        if not self.post_checks and not restorer_needed:
            return None
        return StreamGuard(self)

    async def scan_window(self, text: str) -> list[tuple[Span, str]]:
        return (await self._decide(self.post_checks, [text], POST))[0]


class ChoiceText:
    """One choice's text on its way to the client: checked behind a window, then restored."""

    __slots__ = ("guard", "pending", "restorer")

    def __init__(self, guard: RequestGuard) -> None:
        self.guard = guard
        self.pending = ""
        self.restorer = guard.restorer

    async def feed(self, text: str, final: bool) -> str:
        guard = self.guard
        if guard.post_checks:
            pending = self.pending + text
            window = guard.window
            if not final and len(pending) < window + RELEASE_STEP:
                self.pending = pending
                return ""
            spans = merged(await guard.scan_window(pending)) if pending else []
            cut = len(pending) if final else len(pending) - window
            for span, _ in reversed(spans):  # never cut through a finding
                if span.start < cut < span.end:
                    cut = span.start
            text = apply(pending[:cut], [s for s in spans if s[0].end <= cut], None)
            self.pending = pending[cut:]
        if self.restorer is not None:
            text = self.restorer.feed(text)
            if final:
                text += self.restorer.flush()
        return text


class StreamGuard:
    """Rewrites OpenAI chunk events: each choice's text goes through its ChoiceText (see the module docstring)."""

    def __init__(self, guard: RequestGuard) -> None:
        self.guard = guard
        self.choices: dict[int, ChoiceText] = {}
        self.rest = b""
        self.last: dict[str, Any] = {}
        self.chat = True
        self.blocked: GuardrailBlocked | None = None
        self.waiting = b""  # events without text, before any text passed
        self.text_out = False  # some text passed the guardrails
        self.sent_text = False
        vault = guard.vault
        # tool-call arguments are JSON text written in pieces: without output checks, restored as they come
        # (values escaped); with them, held per (choice, call) until the call is complete, then checked whole
        self.json_originals = {k: orjson.dumps(v).decode()[1:-1] for k, v in vault.originals.items()} if (
            vault is not None and vault.originals) else None
        self.tools: dict[tuple[int, int], Restorer] = {}
        self.held: dict[tuple[int, int], list[str]] | None = {} if guard.post_checks else None
        self.sent: dict[tuple[int, int], tuple[str, str]] = {}  # a released call's arguments: as written, as sent

    async def feed(self, data: bytes) -> bytes:
        data = self.rest + data
        end = data.rfind(b"\n\n")
        if end < 0:
            self.rest = data
            return b""
        self.rest = data[end + 2:]
        out: list[bytes] = []
        try:
            for event in data[:end].split(b"\n\n"):
                out.append(await self._event(event))
        except GuardrailBlocked as blocked:  # what passed before the block still goes; then the block
            self.blocked = blocked
        return self._released(b"".join(out))

    def _released(self, out: bytes) -> bytes:
        """Events without text wait with the first text that passes (a block before it is then a plain 400)."""
        if self.sent_text:
            return out
        if not self.text_out:
            self.waiting += out
            return b""
        self.sent_text = True
        out, self.waiting = self.waiting + out, b""
        return out

    async def _event(self, event: bytes) -> bytes:
        payload = event[5:].strip() if event.startswith(b"data:") else None
        if payload is None or not payload.startswith(b"{"):
            tail = await self._flush() if payload == b"[DONE]" else b""
            return tail + event + b"\n\n"
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event + b"\n\n"
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices:
            return event + b"\n\n"
        self.last = {k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk}
        keep = bool(chunk.get("usage"))
        for choice in choices:
            keep = await self._choice(choice) or keep
        return b"data: " + orjson.dumps(chunk) + b"\n\n" if keep else b""

    async def _choice(self, choice: dict[str, Any]) -> bool:
        """Rewrite one choice's text in place; False when nothing is left in it to send."""
        index = choice.get("index", 0)
        filt = self.choices.get(index)
        if filt is None:
            filt = self.choices[index] = ChoiceText(self.guard)
        final = choice.get("finish_reason") is not None
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content")
            out = await filt.feed(text if isinstance(text, str) else "", final)
            if out or isinstance(text, str):
                delta["content"] = out
            self.text_out = self.text_out or bool(out)
            if self.held is not None:
                await self._hold_arguments(index, delta, final)
            elif self.json_originals is not None:
                self._tool_arguments(index, delta, final)
            others = any(k != "content" and v is not None for k, v in delta.items())
            return final or bool(out) or others
        self.chat = False
        text = choice.get("text")
        choice["text"] = await filt.feed(text if isinstance(text, str) else "", final)
        self.text_out = self.text_out or bool(choice["text"])
        return final or bool(choice["text"])

    def _tool_arguments(self, index: int, delta: dict[str, Any], final: bool) -> None:
        """Restore placeholders in streamed tool-call arguments; on the choice's last event, what was held."""
        assert self.json_originals is not None
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                key = (index, call.get("index", 0))
                restorer = self.tools.get(key)
                if restorer is None:
                    restorer = self.tools[key] = Restorer(self.json_originals)
                function["arguments"] = restorer.feed(arguments)
                self.text_out = True
        if final:
            held = [{"index": tool, "function": {"arguments": r.flush()}}
                    for (choice, tool), r in self.tools.items() if choice == index and r.held]
            if held:
                delta["tool_calls"] = [*(calls if isinstance(calls, list) else ()), *held]

    async def _hold_arguments(self, index: int, delta: dict[str, Any], final: bool) -> None:
        """Take the arguments out of this choice's tool-call deltas (ids and names stay); put in, checked, those
        of the calls that are complete: the ones before a call that starts here, and all on the choice's end."""
        assert self.held is not None
        calls = delta.get("tool_calls")
        out: list[Any] = []
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                out.append(call)
                continue
            key = (index, call.get("index", 0))
            pieces = self.held.get(key)
            if pieces is None:  # a call starts: the ones before it are complete
                out += await self._release(index)
                pieces = self.held[key] = []
            function = call.get("function")
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                pieces.append(function["arguments"])
                function["arguments"] = ""
                if len(function) == 1 and call.keys() <= {"index", "function"}:
                    continue  # nothing else in it: the client gets nothing for it
            out.append(call)
        if final:
            out += await self._release(index)
        if out:
            delta["tool_calls"] = out
        else:
            delta.pop("tool_calls", None)

    async def _release(self, index: int) -> list[dict[str, Any]]:
        """The held arguments of a choice's calls, each checked whole (a block raises) and restored, as deltas."""
        assert self.held is not None
        keys = [k for k, pieces in self.held.items() if k[0] == index and pieces]  # in the order the calls began
        if not keys:
            return []
        news = ["".join(self.held[k]) for k in keys]
        for key in keys:
            self.held[key] = []
        # a call that got more pieces after it was sent (not OpenAI's order): checked again whole
        wholes = [self.sent.get(k, ("", ""))[0] + new for k, new in zip(keys, news, strict=True)]
        checked = await self.guard.finished(wholes, [True] * len(keys), self.guard.restorer)
        deltas = []
        for key, new, text, whole in zip(keys, news, checked, wholes, strict=True):
            before = self.sent.get(key, ("", ""))[1]
            if text.startswith(before):
                text = text[len(before):]
            else:  # a finding across what was sent and what came after: the new part's own result
                text = (await self.guard.finished([new], [True], self.guard.restorer))[0]
            self.sent[key] = (whole, before + text)
            if text:
                deltas.append({"index": key[1], "function": {"arguments": text}})
        self.text_out = self.text_out or bool(deltas)
        return deltas

    async def _flush(self) -> bytes:
        """What the choices still hold, as one last event (a stream that ended without finish_reason)."""
        parts = []
        for index, filt in self.choices.items():
            text = await filt.feed("", True)
            calls = await self._release(index) if self.held is not None else []
            if text or calls:
                delta: dict[str, Any] = {"content": text} if text else {}
                if calls:
                    delta["tool_calls"] = calls
                body = {"delta": delta} if self.chat or calls else {"text": text}
                parts.append({"index": index, **body, "finish_reason": None})
        if not parts:
            return b""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return b"data: " + orjson.dumps({**self.last, "object": kind, "choices": parts}) + b"\n\n"

    async def finish(self) -> bytes:
        rest, self.rest = self.rest, b""
        out = b""
        try:
            if rest.strip():
                out = await self._event(rest.rstrip(b"\n"))
            out += await self._flush()
        except GuardrailBlocked as blocked:  # as in feed: what passed before the block still goes
            self.blocked = blocked
            return self._released(out)
        self.text_out = True  # the end: whatever waited goes now
        return self._released(out)
