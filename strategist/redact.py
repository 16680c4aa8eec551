"""Personal data taken out of conversations before any model or the database sees them.

What is caught, each replaced by a tag:

* ``[EMAIL]`` e-mail addresses (``name@host.tld``, also inside tool arguments and results);
* ``[CARD]`` payment card numbers: 13 to 19 digits, optionally in groups split by spaces or
  dashes, that pass the Luhn check (an order number that fails it is left alone);
* ``[PHONE]`` phone numbers, found by ``phonenumbers`` (Google's libphonenumber): numbers that
  are possible in the default region (``region``, US unless told) and any number written with
  a ``+`` country code;
* ``[SSN]`` US social security numbers written ``123-45-6789``;
* ``[ADDRESS]`` street addresses (a house number, one to four words and a street word such as
  Street, Ave, Road, Lane, Way; with an apartment or suite and a following ``City, ST 12345``
  when present), PO boxes, and postal codes in the US (after a state code), UK and Canadian
  formats;
* ``[NAME]`` person names where the text says they are names: "my name is ...", "this is ...",
  "I'm ..." (capitalised words only), titles (Mr, Mrs, Ms, Dr), greetings ("Hi Anna,"), sign-offs
  ("Thanks, Anna" at the end of a message), "name on the order is ..."; every later mention of a
  name found so anywhere in the conversation is replaced too.

What is not caught: a name mentioned with no such cue ("Anna said it was fine" where Anna is
never introduced), names written in lower case, street addresses without a house number or a
street word ("the old mill, Grange"), cities and countries on their own, dates of birth,
passport, licence and bank account numbers, IP addresses, and anything in an image or a
language other than English. Redaction is a safety net, not a guarantee: real exports should
be reviewed before import.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

TAGS = ("EMAIL", "CARD", "PHONE", "SSN", "ADDRESS", "NAME")

_EMAIL = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")

_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|way|terrace|ter|"
    "circle|cir|parkway|pkwy|highway|hwy|square|sq|close|crescent|cres|row|walk|trail|trl|alley|"
    "plaza|gardens|grove|mews|hill|park"
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
    "NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_UNIT = r"(?:,?\s*(?i:apt|apartment|suite|ste|unit|flat|floor|fl|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
_CITY_TAIL = (
    r"(?:,\s*[A-Z][a-z.'-]+(?:\s+[A-Z][a-z.'-]+){0,2}\b"  # , City (one to three words)
    rf"(?:,?\s*(?:{_US_STATES})\b)?"  # , ST
    r"(?:,?\s*\d{5}(?:-\d{4})?\b|,?\s*[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b|,?\s*[A-Z]\d[A-Z]\s?\d[A-Z]\d\b)?)?"
)
_STREET = re.compile(
    rf"(?<![\w-])\d{{1,6}}[A-Za-z]?\s+((?:[A-Za-z][A-Za-z.'-]*\s+){{0,3}})(?i:{_STREET_WORDS})\b\.?{_UNIT}{_CITY_TAIL}"
)
_PO_BOX = re.compile(r"\bP\.?\s?O\.?\s*Box\s+\d+\b", re.IGNORECASE)
_POSTCODES = [
    re.compile(rf"\b(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?\b"),  # ST 12345
    re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"),  # UK: SW1A 1AA
    re.compile(r"\b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b"),  # Canada: K1A 0B1
]

_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_FULL_NAME = rf"{_NAME_WORD}(?:\s+(?:[A-Z]\.\s*)?{_NAME_WORD}){{0,2}}"
_NAME_CUES = [
    # "my name is Anna Lopez", "name's Anna", "name on the order is Anna Lopez", "under the name Anna"
    re.compile(
        rf"(?i:\b(?:my name is|my name's|name's|name is|name was|under the name(?: of)?|"
        rf"account holder is|cardholder is|this is|i am|i'm|speaking with|talking to)\s+)({_FULL_NAME})"
    ),
    re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+({_FULL_NAME})"),
    re.compile(
        rf"(?i:\b(?:hi|hello|hey|dear|thanks|thank you|good morning|good afternoon)),?\s+"
        rf"({_FULL_NAME})\s*[,.!]"
    ),
    # A sign-off at the end of a message: "Thanks, Anna" / "Regards,\nAnna Lopez" / "- Anna"
    re.compile(
        rf"(?i:(?:thanks|thank you|regards|best|cheers|sincerely|kind regards|best wishes)),?\s*\n?\s*"
        rf"({_FULL_NAME})\s*[.!]?\s*$"
    ),
    re.compile(rf"(?:^|\n)\s*[-–—]\s*({_FULL_NAME})\s*$"),
]
# Capitalised words a cue can precede that are not names ("I'm Sorry", "this is Northwind").
_NOT_NAMES = frozenset(
    """
    a an the i im sorry here not so very really just still also only back fine good great ok okay
    happy glad sure calling writing trying looking wondering afraid confused upset angry frustrated
    disappointed annoyed interested ready able unable going about after again all any because before
    being both but by can could did do does done each either every for from had has have having he her
    his how if in into is it its let me more most my no nor now of off on once one or other our out
    over own same she should some such than that their them then there these they this those through
    to too under until up was we were what when where which while who whom why will with would yes yet
    you your customer support service team agent order orders account refund return returns delivery
    shipping team help today tomorrow monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    mister madam sir miss hello hi hey thanks thank regards best cheers sincerely dear morning afternoon
    evening everyone all there
    """.split()  # noqa: SIM905
)


# The agent asking for a name, and an answer that is only a name ("Marge Simpson").
_ASKS_NAME = re.compile(r"\b(?:your|the)\s+(?:full\s+)?name\b", re.IGNORECASE)
_BARE_NAME = re.compile(rf"^{_FULL_NAME}[.!]?$")


@dataclass
class Redaction:
    """Text with personal data replaced, and how many of each kind were replaced."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)


def _street(m: re.Match[str], counts: Counter[str]) -> str:
    # "1001 is on its way" is no address: a street's name is not made of everyday words.
    if any(w.lower().rstrip(".") in _NOT_NAMES for w in m.group(1).split()):
        return m.group(0)
    counts["ADDRESS"] += 1
    return "[ADDRESS]"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Redactor:
    """Finds and replaces personal data (see the module's docstring for what it catches).

    ``keep``: words that are never a name here (the company's and its products' names).
    ``names`` are names known beforehand (a customer's name from a ticket's metadata); the names
    found by their cues in one conversation are added for the rest of it (``redact_messages``).
    """

    def __init__(self, region: str = "US", names: Iterable[str] = (), keep: Iterable[str] = ()) -> None:
        self.region = region.upper()
        self.names: set[str] = {n.strip() for n in names if n and n.strip()}
        # Words never taken for a name: the company's own name ("this is Northwind support").
        self.keep = frozenset(w.lower() for k in keep for w in re.findall(r"[A-Za-z]+", k))

    # -- one text ----------------------------------------------------------------------------
    def redact(self, text: str, names: Iterable[str] = ()) -> Redaction:
        counts: Counter[str] = Counter()
        if not text:
            return Redaction(text, counts)

        def sub(pattern: re.Pattern[str], tag: str, value: str, check: Any = None) -> str:
            def repl(m: re.Match[str]) -> str:
                if check is not None and not check(m.group(0)):
                    return m.group(0)
                counts[tag] += 1
                return f"[{tag}]"

            return pattern.sub(repl, value)

        out = sub(_EMAIL, "EMAIL", text)
        out = sub(_CARD, "CARD", out, lambda s: luhn_ok(re.sub(r"\D", "", s)))
        out = sub(_SSN, "SSN", out)
        out = self._phones(out, counts)
        out = sub(_PO_BOX, "ADDRESS", out)
        out = _STREET.sub(lambda m: _street(m, counts), out)
        for pattern in _POSTCODES:
            out = sub(pattern, "ADDRESS", out)
        out = self._names(out, counts, {*self.names, *names})
        return Redaction(out, counts)

    def _phones(self, text: str, counts: Counter[str]) -> str:
        spans: list[tuple[int, int]] = []
        try:
            for m in phonenumbers.PhoneNumberMatcher(
                text, self.region, leniency=phonenumbers.Leniency.POSSIBLE
            ):
                spans.append((m.start, m.end))
        except Exception:  # a parser problem must never let the text through unredacted silently
            spans = []
        # Numbers written with a country code are phone numbers in any region.
        for found in re.finditer(r"\+\d[\d ().-]{6,}\d", text):
            if not any(s <= found.start() < e for s, e in spans):
                spans.append((found.start(), found.end()))
        for start, end in sorted(spans, reverse=True):
            inside_word = (start > 0 and text[start - 1].isalnum()) or (
                end < len(text) and text[end].isalnum()
            )
            if "[" in text[start:end] or inside_word:  # a tracking code or a tag, not a number
                continue
            text = text[:start] + "[PHONE]" + text[end:]
            counts["PHONE"] += 1
        return text

    def find_names(self, text: str) -> set[str]:
        """Names the text introduces by a cue (see the module's docstring)."""
        found: set[str] = set()
        for pattern in _NAME_CUES:
            for m in pattern.finditer(text):
                words = m.group(1).split()
                # Cut at the first word that is not a name ("this is Anna from Denver" -> Anna).
                kept: list[str] = []
                for w in words:
                    if w.rstrip(".").lower() in _NOT_NAMES or w.lower() in self.keep:
                        break
                    kept.append(w)
                if kept:
                    found.add(" ".join(kept))
        return found

    def _names(self, text: str, counts: Counter[str], known: set[str]) -> str:
        names = known | self.find_names(text)
        # Whole names first, then each word of them on its own ("Anna Lopez", later "Ms Lopez").
        parts = {
            w for n in names for w in n.split() if len(w.rstrip(".")) > 1 and w.lower() not in _NOT_NAMES
        }
        for name in sorted(names | parts, key=len, reverse=True):
            pattern = re.compile(rf"(?<![\w\[])({re.escape(name)})(?![\w\]])")
            text, n = pattern.subn("[NAME]", text)
            counts["NAME"] += n
        return text

    # -- a conversation ----------------------------------------------------------------------
    def redact_messages(
        self, messages: Sequence[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], Counter[str]]:
        """OpenAI-style messages with every text redacted: contents (strings or text parts), tool
        call arguments and tool results. A name found in one message is removed from all."""
        names: set[str] = set()
        asked = False  # the agent just asked for the customer's name
        for m in messages:
            for text in _texts(m):
                names |= self.find_names(text)
                if asked and m.get("role") == "user" and _BARE_NAME.match(text.strip()):
                    names.add(text.strip().rstrip(".!"))
            asked = m.get("role") == "assistant" and any(_ASKS_NAME.search(t) for t in _texts(m))
        total: Counter[str] = Counter()
        out: list[dict[str, Any]] = []
        for m in messages:
            msg = dict(m)

            def clean(value: str) -> str:
                r = self.redact(value, names)
                total.update(r.counts)
                return r.text

            content = msg.get("content")
            if isinstance(content, str):
                msg["content"] = clean(content)
            elif isinstance(content, list):
                msg["content"] = [
                    {**p, "text": clean(p["text"])}
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                    else p
                    for p in content
                ]
            if msg.get("tool_calls"):
                calls = []
                for c in msg["tool_calls"]:
                    c = json.loads(json.dumps(c))  # a deep copy: the caller's message stays as it was
                    fn = c.get("function") or {}
                    if isinstance(fn.get("arguments"), str):
                        fn["arguments"] = clean(fn["arguments"])
                    calls.append(c)
                msg["tool_calls"] = calls
            out.append(msg)
        return out, total


def _texts(m: Mapping[str, Any]) -> list[str]:
    content = m.get("content")
    texts = [content] if isinstance(content, str) else []
    if isinstance(content, list):
        texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    for c in m.get("tool_calls") or []:
        args = (c.get("function") or {}).get("arguments") if isinstance(c, dict) else None
        if isinstance(args, str):
            texts.append(args)
    return texts
