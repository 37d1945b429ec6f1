"""Near-duplicate detection (MinHash LSH), personal-data detection with checksums, redaction, and
the cleaning scan over normalised records."""

from __future__ import annotations

import io

from datacheck.cleaning import scan
from datacheck.near_duplicates import (
    NearDuplicateIndex,
    near_duplicate_groups,
    near_duplicates_between,
)
from datacheck.personal_data import find_personal_data, mask, redact, redact_record
from tests.datacheck.factories import chat, jsonl, near_duplicate_families

BASE = "How can I change the delivery address of my order after I have paid for it"


def test_near_duplicates_are_grouped_and_different_texts_are_not():
    texts = [
        BASE + "?",
        "What are your opening hours on public holidays in the Paris shop",
        BASE.lower() + " ??",                      # case and punctuation differ
        "Do you ship parcels to Belgium and Switzerland and how much does it cost",
        BASE + "?",                                 # an exact copy
        "How can I change the billing name on an invoice that was already sent to me",
    ]
    assert near_duplicate_groups(texts) == [[0, 2, 4]]


def test_a_changed_word_is_a_near_duplicate_but_a_changed_meaning_is_not():
    one_word = BASE.replace("delivery", "shipping")
    other = "Can I cancel a subscription in the first month without paying a fee for it"
    assert near_duplicate_groups([BASE, one_word], threshold=0.5) == [[0, 1]]
    assert near_duplicate_groups([BASE, other]) == []


def test_evaluation_examples_that_resemble_training_ones_are_found():
    train = [BASE, "Where do I find my invoices in the customer area of the website"]
    evals = ["Is there a student discount on the yearly plan for universities",
             "where do I find my invoices in the customer area of the website?"]
    assert near_duplicates_between(train, evals) == [(1, 1)]


def test_the_index_says_which_added_text_a_new_one_repeats():
    index = NearDuplicateIndex()
    index.add("Completely unrelated sentence about the weather in Lyon this week")
    index.add(BASE)
    assert index.match(BASE + "!") == 1
    assert index.match("A question about refunds for damaged goods received by post") is None


def test_emails_phones_ibans_and_cards_are_found_with_checksums():
    text = ("Mail jean.dupont@example.fr, call +33 6 12 34 56 78, pay to FR14 2004 1010 0505 0001 "
            "3M02 606 with card 4111 1111 1111 1111.")
    kinds = [(f.kind, f.value) for f in find_personal_data(text)]
    assert kinds == [("email", "jean.dupont@example.fr"), ("phone", "+33 6 12 34 56 78"),
                     ("iban", "FR14 2004 1010 0505 0001 3M02 606"), ("card", "4111 1111 1111 1111")]


def test_numbers_that_fail_their_checksum_or_are_not_personal_are_left_alone():
    text = ("Card 4111 1111 1111 1112 (bad Luhn), IBAN FR15 2004 1010 0505 0001 3M02 606 (bad mod-97), "
            "order 2024-05-12, reference 1234567, invoice 12345678901234.")
    assert find_personal_data(text) == []


def test_redaction_replaces_each_finding_and_counts_them():
    text, counts = redact("Write to a.b@example.com or a.b@example.com, IBAN DE89370400440532013000.")
    assert text == "Write to [EMAIL] or [EMAIL], IBAN [IBAN]."
    assert counts == {"email": 2, "iban": 1}
    record, counts = redact_record({"messages": [{"role": "user", "content": "Call 06 12 34 56 78"},
                                                 {"role": "assistant", "content": "Done."}]})
    assert record["messages"][0]["content"] == "Call [PHONE]" and record["messages"][1]["content"] == "Done."
    assert counts == {"phone": 1}


def test_masked_values_hide_most_of_the_value():
    assert mask("jean.dupont@example.fr") == "je***@***.fr"
    assert mask("4111 1111 1111 1111") == "411* **** **** **11"


def test_the_scan_counts_with_examples_and_lists_what_a_clean_version_drops():
    train = [chat(BASE, "Go to My orders."), chat("Opening hours of the Lyon shop on Sunday mornings please",
                                                  "We open at 10."),
             chat(BASE + "!", "Go to My orders."), chat("My card is 4111 1111 1111 1111, is it stored safely",
                                                        "Write to privacy@example.com")]
    evals = [chat("opening hours of the lyon shop on sunday mornings please?", "We open at 10."),
             chat("Do you deliver on Saturdays to the countryside near Grenoble", "Yes.")]
    result = scan(io.BytesIO(jsonl(*train)), io.BytesIO(jsonl(*evals)))
    nd = result["near_duplicates"]
    assert (nd["groups"], nd["extra"], nd["examples"], nd["drop_train"]) == (1, 1, [[1, 3]], [3])
    assert (nd["between"], nd["between_examples"], nd["drop_eval"]) == (1, [[1, 2]], [1])
    pd = result["personal_data"]
    assert pd["card"]["count"] == 1 and pd["email"]["count"] == 1 and result["personal_total"] == 2
    assert pd["card"]["examples"] == [{"file": "train", "example": 4, "role": "user", "value": "411* **** **** **11"}]
    assert (result["train_examples"], result["eval_examples"]) == (4, 2)


def test_after_the_scan_no_near_duplicate_crosses_the_split():
    """The split key keeps case, spacing and punctuation variants together at validation; the
    scan finds the reworded ones that crossed, and moving them into training leaves none across."""
    from datacheck import ValidationOptions, validate_dataset
    from datacheck.near_duplicates import example_text
    from datacheck.split import move_crossing

    records = near_duplicate_families()
    train, evals = io.BytesIO(), io.BytesIO()
    report = validate_dataset(io.BytesIO(jsonl(*records)), options=ValidationOptions(eval_fraction=0.3, seed=3),
                              train_out=train, eval_out=evals)
    assert report.status == "valid"

    def questions(buffer: io.BytesIO) -> list[str]:
        import orjson
        return [orjson.loads(line)["messages"][0]["content"] for line in buffer.getvalue().splitlines()]

    def number(question: str) -> str:
        return question.split(":")[0].lower()

    def texts(buffer: io.BytesIO) -> list[str]:
        import orjson
        return [example_text(orjson.loads(line)) for line in buffer.getvalue().splitlines()]

    # validation already keeps every case/spacing/punctuation variant with its original
    sides: dict[tuple[str, bool], set[str]] = {}
    for side, buffer in (("train", train), ("eval", evals)):
        for q in questions(buffer):
            sides.setdefault((number(q), "zebra" in q), set()).add(side)
    assert all(len(s) == 1 for s in sides.values())
    # ... but reworded variants do cross before the scan
    before = scan(io.BytesIO(train.getvalue()), io.BytesIO(evals.getvalue()))["near_duplicates"]
    assert before["between"] > 5 and len(before["crossing"]) >= before["between"]

    new_train, new_eval = io.BytesIO(), io.BytesIO()
    counts = move_crossing(io.BytesIO(train.getvalue()), io.BytesIO(evals.getvalue()), new_train, new_eval,
                           moved=before["crossing"])
    assert counts.train + counts.eval == len(records)
    assert counts.eval == report.counts.eval_examples - len(before["crossing"]) > 0
    after = scan(io.BytesIO(new_train.getvalue()), io.BytesIO(new_eval.getvalue()))["near_duplicates"]
    assert after["between"] == 0 and after["crossing"] == []
    assert near_duplicates_between(texts(new_train), texts(new_eval)) == []
    by_number: dict[str, set[str]] = {}
    for side, buffer in (("train", new_train), ("eval", new_eval)):
        for q in questions(buffer):
            by_number.setdefault(number(q), set()).add(side)
    assert [n for n, s in by_number.items() if len(s) > 1] == []  # every family on one side


def test_a_chain_of_near_duplicates_through_evaluation_moves_as_a_whole():
    """e2 resembles only e1, and e1 resembles a training example: both must move."""
    from datacheck.cleaning import _Crossing

    crossing = _Crossing()
    crossing.add(0, [], resembles_training=False)
    crossing.add(1, [0], resembles_training=False)     # e1 ~ e0, neither near training yet
    crossing.add(2, [], resembles_training=False)
    crossing.add(3, [1], resembles_training=True)      # e3 ~ e1 and ~ training: 0, 1, 3 all cross
    assert crossing.result() == [0, 1, 3]
