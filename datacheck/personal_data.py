"""Personal data in example texts: e-mail addresses, phone numbers, IBANs and card numbers.

Card numbers must pass the Luhn checksum and IBANs the ISO 13616 mod-97 check
(python-stdnum), so an order number of 16 digits is not taken for a card. Phone numbers have no
checksum: a run of 9 to 15 digits, with the usual separators and an optional +country prefix,
that is not a card number, not a date and not inside a longer number.

    find_personal_data(text)   -> [Finding(kind, start, end, value), ...]
    redact(text)               -> (text with each finding replaced by [EMAIL] ..., counts by kind)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from stdnum import iban as _iban
from stdnum import luhn as _luhn

KINDS = ("email", "phone", "iban", "card")
LABELS = {"email": "E-mail addresses", "phone": "Phone numbers", "iban": "IBANs (bank accounts)",
          "card": "Card numbers"}
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "iban": "[IBAN]", "card": "[CARD]"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){7,14}"
                    r"(?!\w)(?![ .-]?\d)")
# Cheap first looks: most texts have no run of 8 digits and nothing shaped like an IBAN's start.
_DIGIT_RUN = re.compile(r"\d(?:[ ().-]?\d){7}")
_IBAN_START = re.compile(r"[A-Z]{2}\d{2}")
_DATE = re.compile(r"^\d{4}[-.]\d{2}[-.]\d{2}$|^\d{2}[-.]\d{2}[-.]\d{4}$")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def find_personal_data(text: str) -> list[Finding]:
    """The personal data in ``text``, in order, none overlapping (e-mail, IBAN and card first)."""
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    def add(kind: str, m: re.Match) -> None:
        found.append(Finding(kind, m.start(), m.end(), m.group()))
        taken.append((m.start(), m.end()))

    if "@" in text:
        for m in _EMAIL.finditer(text):
            add("email", m)
    if _IBAN_START.search(text):
        for m in _IBAN.finditer(text):
            if free(m.start(), m.end()) and _iban.is_valid(m.group()):
                add("iban", m)
    if not _DIGIT_RUN.search(text):
        return sorted(found, key=lambda f: f.start)
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        if free(m.start(), m.end()) and 13 <= len(digits) <= 19 and _luhn.is_valid(digits):
            add("card", m)
    for m in _PHONE.finditer(text):
        value = m.group()
        digits = _digits(value)
        if free(m.start(), m.end()) and 9 <= len(digits) <= 15 and not _DATE.match(value) \
                and (value.startswith(("+", "(", "0")) or any(s in value for s in " .-")):
            add("phone", m)
    return sorted(found, key=lambda f: f.start)


def redact(text: str) -> tuple[str, Counter[str]]:
    """``text`` with each finding replaced by its placeholder, and how many of each kind."""
    findings = find_personal_data(text)
    counts: Counter[str] = Counter(f.kind for f in findings)
    if not findings:
        return text, counts
    out, last = [], 0
    for f in findings:
        out.append(text[last:f.start])
        out.append(PLACEHOLDERS[f.kind])
        last = f.end
    out.append(text[last:])
    return "".join(out), counts


def redact_record(record: dict) -> tuple[dict, Counter[str]]:
    """A normalised record with every message's content redacted."""
    total: Counter[str] = Counter()
    messages = []
    for m in record.get("messages") or []:
        m = dict(m)
        if isinstance(m.get("content"), str):
            m["content"], counts = redact(m["content"])
            total.update(counts)
        messages.append(m)
    return {**record, "messages": messages}, total


def mask(value: str) -> str:
    """Enough of a value to recognise it, not enough to use it: 'jo***@***.com', '+33 6** ** ** 78'."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:2]}***@***.{domain.rsplit('.', 1)[-1]}"
    keep = {i for i, c in enumerate(value) if c.isalnum()}
    ordered = sorted(keep)
    shown = set(ordered[:3] + ordered[-2:])
    return "".join(c if (i in shown or i not in keep) else "*" for i, c in enumerate(value))
