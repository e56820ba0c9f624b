"""Seeded text for `zumik synth`: what its synthetic agents say, their tools, and what the tools return.

Everything is drawn from small built-in word lists with the caller's `random.Random`, so one seed always writes
the same text and no outside data is needed. Sizes are asked for in approximate tokens (4 characters each), the
rule `synth` also uses to estimate usage. Traffic shape (timing, models, caching) lives in `synth`, not here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

CHARS_PER_TOKEN = 4


def _phrases(block: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in block.strip().splitlines())


def _words(block: str) -> tuple[str, ...]:
    return tuple(block.split())


NOUNS = _words(
    """config record request response cache index session token buffer parser schema handler worker queue batch
    payload manifest segment snapshot policy release client server message event stream table column query result
    timeout limit offset cursor channel route report summary metric counter window block chunk prefix digest path
    module fixture profile account invoice ledger template layout option flag header entry node graph"""
)
VERBS = _words(
    """load parse build merge split flush read write validate normalise render resolve fetch emit collect compute
    update refresh encode decode sort filter group hash check apply register open close reset retry drop map wrap
    format dispatch schedule serialize restore prune"""
)
ADJECTIVES = _words(
    """stale empty missing invalid duplicate partial nested cached pending default optional local remote current
    previous expired malformed unsorted large shared cold warm primary legacy async raw final initial"""
)
_IRREGULAR = {
    "build": "built",
    "split": "split",
    "read": "read",
    "write": "written",
    "emit": "emitted",
    "map": "mapped",
    "drop": "dropped",
    "wrap": "wrapped",
    "reset": "reset",
    "format": "formatted",
}
_EXCEPTIONS = ("ValueError", "KeyError", "TypeError", "AssertionError", "RuntimeError", "TimeoutError")
_STDLIB = ("os", "re", "json", "time", "logging", "hashlib", "itertools", "functools", "pathlib", "dataclasses")

CODING_RULES = {
    "opener": _phrases("""
        Always
        Never
        Prefer to
        Do not
        Make sure you
        Remember to
        Take care to
        Only
        It is fine to
        Try to
    """),
    "action": _phrases("""
        read a file
        run the relevant tests
        search the codebase
        summarize the change
        check the git status
        quote the exact error
        ask a clarifying question
        edit the smallest region
        keep the existing style
        mention the file path and line number
        use the dedicated tool
        explain the risk of a command
        create a new file
        add a dependency
        commit your work
        run the linter
        update the documentation
        leave a short comment
        delete generated files
        rename a public function
        print secrets or tokens
        start a long-running server
        use absolute paths
        batch independent tool calls
        report progress
        write a failing test first
        check how neighbouring code does it
        verify the fix end to end
        look for an existing helper
        open a pull request
    """),
    "condition": _phrases("""
        before you edit it
        when the user asks for a review
        after every change
        if the request is ambiguous
        unless the user says otherwise
        when a command fails
        while a task is in progress
        before you report that a task is done
        when you are not sure where something is defined
        if the repository has a contributing guide
        when the change touches a public interface
        for changes larger than a few lines
        when the output is longer than a screen
        if a test was already failing before your change
        when the user is waiting for an answer
    """),
    "reason": _phrases("""
        so that the user can verify the result
        because the environment may differ from yours
        since later steps depend on it
        because a wrong guess costs more than a question
        so that reviewers can follow the change
        because the tests are the contract
        since the user may be reading on a small screen
        because other people share this repository
    """),
    "situation": _phrases("""
        a command fails
        the user asks a question
        the test suite is slow
        a file is very large
        you are unsure about the intent
        the request touches authentication
        a tool returns an error
        two approaches look equally good
        the user pastes a stack trace
        a dependency is missing
    """),
}
SUPPORT_RULES = {
    "opener": _phrases("""
        Always
        Never
        Politely
        Do not
        Make sure you
        Remember to
        Take care to
        Only
        It is fine to
        Try to
    """),
    "action": _phrases("""
        confirm the order number
        verify the customer's email address
        apologise for the inconvenience
        quote the relevant policy
        offer a replacement
        issue a refund
        share the tracking link
        escalate the conversation
        promise a delivery date
        ask for a photo of the damage
        summarize the next steps
        reveal internal notes
        mention the return window
        create a support ticket
        change the shipping address
        repeat personal data back
        thank the customer
        check the order history
        search the help center
        offer store credit
        explain the charge
        close the conversation
    """),
    "condition": _phrases("""
        before you change an order
        when the customer is upset
        if the parcel is marked as delivered
        unless a manager approved it
        when the order is older than the return window
        if the payment failed
        before you end the conversation
        when the customer asks for a human
        if the item is out of stock
        when the amount is above the refund limit
        if the customer writes in another language
        while a claim is open with the carrier
    """),
    "reason": _phrases("""
        so that the customer knows what happens next
        because refunds cannot be reversed
        since carriers need a reference
        because we must protect personal data
        so that the team can follow up
        because trust matters more than speed
    """),
    "situation": _phrases("""
        a parcel is late
        an item arrives damaged
        a customer was charged twice
        a discount code fails
        the customer wants to cancel
        the address is incomplete
        a gift receipt is needed
        the customer threatens a chargeback
        the tracking page shows no movement
    """),
}
CODING_SECTIONS = _phrases("""
    Tone and style
    Proactiveness
    Following conventions
    Code style
    Doing tasks
    Tool usage policy
    Running commands
    Git and version control
    Testing
    Security
    Reporting progress
    Planning
    Working with large files
    Asking for help
""")
SUPPORT_SECTIONS = _phrases("""
    Voice and tone
    Verifying identity
    Orders and shipping
    Returns and refunds
    Billing
    Privacy
    Escalation
    Using the help center
    Closing a conversation
    Fraud signals
""")
_PRODUCTS = _phrases("""
    merino wool hoodie
    espresso grinder
    trail running shoes
    noise-cancelling headphones
    cast iron skillet
    standing desk
    rain jacket
    smart thermostat
    yoga mat
    travel backpack
    ceramic teapot
    mechanical keyboard
    down duvet
    bike helmet
""")
_ISSUES = _phrases("""
    arrived damaged
    has not arrived yet
    is the wrong size
    was charged twice
    is missing a part
    stopped working after a week
    was delivered to the wrong address
""")
_FIRST_NAMES = _words("Ana Ben Chloe Dev Elif Femi Grace Hiro Ines Jonas Kira Luca")


def _tool(name: str, summary: str, required: Sequence[str], /, **properties: dict[str, Any]) -> dict[str, Any]:
    """A tool definition with JSON-schema parameters, the provider-neutral shape of zumik JSONL."""
    parameters = {"type": "object", "properties": properties, "required": list(required)}
    return {"name": name, "description": summary, "parameters": parameters}


def _string(description: str = "", **schema: Any) -> dict[str, Any]:
    return {"type": "string", **({"description": description} if description else {}), **schema}


def _integer(description: str = "", **schema: Any) -> dict[str, Any]:
    return {"type": "integer", **({"description": description} if description else {}), **schema}


CODING_TOOLS = (
    _tool(
        "read_file",
        "Read a file from the repository, with line numbers.",
        ["path"],
        path=_string("Path relative to the repository root."),
        offset=_integer("First line to read, 1-based."),
        limit=_integer("Number of lines to read."),
    ),
    _tool(
        "edit_file",
        "Replace an exact string in a file.",
        ["path", "old_text", "new_text"],
        path=_string(),
        old_text=_string("Exact text to replace; must occur once unless replace_all is set."),
        new_text=_string(),
        replace_all={"type": "boolean", "default": False},
    ),
    _tool("write_file", "Create or overwrite a file.", ["path", "content"], path=_string(), content=_string()),
    _tool(
        "run_command",
        "Run a shell command in the repository and return its output.",
        ["command"],
        command=_string(),
        timeout_s=_integer("Seconds before the command is stopped.", minimum=1, maximum=600),
    ),
    _tool(
        "grep",
        "Search file contents with a regular expression.",
        ["pattern"],
        pattern=_string(),
        path=_string(),
        glob=_string("Only files matching this glob, e.g. *.py."),
    ),
    _tool("list_files", "List files under a directory.", ["path"], path=_string(), depth=_integer(minimum=1)),
    _tool(
        "dispatch_agent",
        "Start a sub-agent with the same tools for a self-contained task.",
        ["description", "prompt"],
        description=_string("Three to five words."),
        prompt=_string("The full task for the sub-agent."),
    ),
)
TRACKER_TOOLS = (
    _tool(
        "tracker_search",
        "Search the issue tracker (MCP server).",
        ["query"],
        query=_string(),
        limit=_integer(default=10),
    ),
    _tool(
        "tracker_get_issue",
        "Fetch one issue with its comments (MCP server).",
        ["key"],
        key=_string(pattern="^[A-Z]+-[0-9]+$"),
    ),
)
SUPPORT_TOOLS = (
    _tool(
        "lookup_order",
        "Fetch an order with its items, payments and shipments.",
        ["order_id"],
        order_id=_string(pattern="^ORD-[0-9]+$"),
    ),
    _tool("get_customer", "Fetch a customer profile by email address.", ["email"], email=_string(format="email")),
    _tool(
        "search_help_center",
        "Search the help center articles.",
        ["query"],
        query=_string(),
        locale=_string(default="en"),
    ),
    _tool(
        "issue_refund",
        "Refund all or part of an order.",
        ["order_id", "amount", "reason"],
        order_id=_string(),
        amount={"type": "number", "exclusiveMinimum": 0},
        reason={"enum": ["damaged", "not_delivered", "wrong_item", "duplicate_charge", "goodwill"]},
    ),
    _tool(
        "create_ticket",
        "Open a ticket for the operations team.",
        ["subject", "body"],
        subject=_string(),
        body=_string(),
        priority={"enum": ["low", "normal", "high"]},
    ),
    _tool(
        "escalate",
        "Hand the conversation to a human agent.",
        ["reason", "summary"],
        reason=_string(),
        summary=_string(),
    ),
)


def _participle(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y"):
        return verb[:-1] + "ied"
    return verb + "ed"


def _s_form(word: str) -> str:
    """The plural of a noun, or the third person of a verb: English spells both the same way."""
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


_VERB_FORMS = tuple((verb, _s_form(verb), _participle(verb)) for verb in VERBS)
_SENTENCES = (
    "The {adj} {noun} {verb3} the {other} first.",
    "Each {noun} is {done} once and kept with its {other}.",
    "{A_adj} {noun} means the {other} must be {done} again.",
    "This {verb3} every {noun} in the {other}.",
    "Only {a_adj} {noun} is {done} before the {other}.",
)
_RULES = (
    "{opener} {action} {condition}.",
    "{opener} {action}, {reason}.",
    "When {situation}, {action} {condition}.",
    "If {situation}, {action} {reason}.",
)
_CODE_LINES = (
    "{var} = self.{attr}.{verb}_{other}({other})",
    "if {var} is None:",
    "for {var} in {others}:",
    "{vars}.append({verb}_{attr}({var}, {other}={literal}))",
    "# {done} {others} are {adj} here",
    'raise {exc}(f"{adj} {var}: {{{var}!r}}")',
    "return {var}",
    'logger.debug("{done} %s {others}", len({vars}))',
    "{var}_{attr} = {{k: v for k, v in {other}.items() if v is not None}}",
)


class Writer:
    """Draws words, sentences and documents from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.random() * len(options))]

    def identifier(self) -> str:
        return f"{self.pick(VERBS)}_{self.pick(NOUNS)}"

    def class_name(self) -> str:
        return self.pick(NOUNS).capitalize() + self.pick(("Parser", "Store", "Builder", "Client", "Index", "Plan"))

    def hex(self, length: int) -> str:
        return "".join(self.rng.choices("0123456789abcdef", k=length))

    def _fields(self) -> dict[str, str]:
        verb, verb3, done = self.rng.choice(_VERB_FORMS)
        other, var, adj = self.pick(NOUNS), self.pick(NOUNS), self.pick(ADJECTIVES)
        a_adj = _with_article(adj)
        return {
            "noun": self.pick(NOUNS),
            "other": other,
            "others": _s_form(other),
            "attr": self.pick(NOUNS),
            "var": var,
            "vars": _s_form(var),
            "adj": adj,
            "a_adj": a_adj,
            "A_adj": a_adj.capitalize(),
            "verb": verb,
            "verb3": verb3,
            "done": done,
        }

    def sentence(self) -> str:
        return self.pick(_SENTENCES).format_map(self._fields())

    def rule(self, register: dict[str, tuple[str, ...]]) -> str:
        fields = {name: self.pick(options) for name, options in register.items()}
        return self.pick(_RULES).format_map(fields)

    def instructions(
        self, opening: str, sections: Sequence[str], register: dict[str, tuple[str, ...]], tokens: int
    ) -> str:
        """A markdown system prompt: an opening line, then sections of prose and bulleted rules."""
        budget = tokens * CHARS_PER_TOKEN
        lines = [opening, ""]
        size = len(opening)
        index = 0
        while size < budget:
            title = sections[index % len(sections)]
            if index >= len(sections):
                title += f" ({index // len(sections) + 1})"
            body = [f"## {title}", "", " ".join(self.rule(register) for _ in range(2 + self.rng.randrange(3))), ""]
            body += [f"- {self.rule(register)}" for _ in range(4 + self.rng.randrange(6))]
            body.append("")
            lines += body
            size += sum(len(line) + 1 for line in body)
            index += 1
        return "\n".join(lines).rstrip() + "\n"

    def tool_definitions(
        self, specs: Sequence[dict[str, Any]], register: dict[str, tuple[str, ...]]
    ) -> list[dict[str, Any]]:
        """Tool definitions with a few generated usage notes each, as real agents ship them."""
        tools = []
        for spec in specs:
            notes = " ".join(self.rule(register) for _ in range(3 + self.rng.randrange(4)))
            tools.append(
                {
                    "name": spec["name"],
                    "description": f"{spec['description']}\n\nUsage notes: {notes}",
                    "parameters": spec["parameters"],
                }
            )
        return tools

    def python_line(self, depth: int) -> str:
        fields = self._fields()
        fields["exc"], fields["literal"] = self.pick(_EXCEPTIONS), self.pick(("True", "None", "0", "1"))
        return "    " * depth + self.pick(_CODE_LINES).format_map(fields)

    def python_source(self, tokens: int, module: str) -> str:
        """A plausible Python module of about `tokens` tokens."""
        lines = [f'"""{self.sentence()}"""', "", "from __future__ import annotations", ""]
        lines += [f"import {name}" for name in sorted({self.pick(_STDLIB) for _ in range(3)})]
        lines += [
            "",
            f"logger = logging.getLogger({module!r})",
            f"{self.pick(NOUNS).upper()}_LIMIT = {self.rng.randrange(8, 4096)}",
            "",
            "",
        ]
        budget = tokens * CHARS_PER_TOKEN
        size = sum(len(line) + 1 for line in lines)
        while size < budget:
            if self.rng.random() < 0.3:
                block = [f"class {self.class_name()}:", f'    """{self.sentence()}"""', ""]
                depth = 1
            else:
                block = []
                depth = 0
            for _ in range(1 + self.rng.randrange(3)):
                pad = "    " * depth
                args = ", ".join(self.pick(NOUNS) for _ in range(1 + self.rng.randrange(3)))
                block += [
                    f"{pad}def {self.identifier()}({'self, ' if depth else ''}{args}):",
                    f'{pad}    """{self.sentence()}"""',
                ]
                block += [
                    self.python_line(depth + 1 + self.rng.randrange(2)) for _ in range(3 + self.rng.randrange(12))
                ]
                block.append("")
            lines += block + [""]
            size += sum(len(line) + 1 for line in block) + 1
        return "\n".join(lines)

    def numbered(self, text: str) -> str:
        return "\n".join(f"{number:>6}\t{line}" for number, line in enumerate(text.split("\n"), start=1))

    def pytest_output(self, repo: str, tests: Sequence[str], tokens: int) -> str:
        """A pytest run with progress lines and zero or more failures."""
        lines = [
            "=" * 29 + " test session starts " + "=" * 30,
            "platform linux -- Python 3.11.9, pytest-8.3.2, pluggy-1.5.0",
            f"rootdir: /home/dev/{repo}",
            "configfile: pyproject.toml",
            f"collected {self.rng.randrange(20, 900)} items",
            "",
        ]
        for number, test in enumerate(tests, start=1):
            dots = "".join(self.rng.choices("." * 29 + "F", k=self.rng.randrange(3, 40)))
            lines.append(f"{test} {dots:<56} [{number * 100 // len(tests):>3}%]")
        failures = []
        size = sum(len(line) for line in lines)
        if size < tokens * CHARS_PER_TOKEN:
            lines += ["", "=" * 35 + " FAILURES " + "=" * 35]
        while size < tokens * CHARS_PER_TOKEN:
            name = f"test_{self.identifier()}"
            failures.append(name)
            block = [f"{'_' * 20} {name} {'_' * 20}", "", f"    def {name}():"]
            block += [self.python_line(2) for _ in range(2 + self.rng.randrange(8))]
            block += [
                f">       assert {self.identifier()}({self.pick(NOUNS)}) == {self.rng.randrange(100)}",
                f"E       {self.pick(_EXCEPTIONS)}: {self.sentence()}",
                "",
                f"{self.pick(tests).split(' ')[0]}:{self.rng.randrange(10, 400)}: AssertionError",
                "",
            ]
            lines += block
            size += sum(len(line) + 1 for line in block)
        passed = self.rng.randrange(20, 400)
        summary = (
            f" {len(failures)} failed, {passed} passed in {self.rng.uniform(0.4, 60):.2f}s "
            if failures
            else f" {passed} passed in {self.rng.uniform(0.4, 60):.2f}s "
        )
        lines.append(summary.center(80, "="))
        return "\n".join(lines)

    def grep_output(self, paths: Sequence[str], pattern: str, lines: int) -> str:
        return "\n".join(
            f"{self.pick(paths)}:{self.rng.randrange(1, 600)}:{self.python_line(1)} # {pattern}" for _ in range(lines)
        )

    def diff(self, paths: Sequence[str], tokens: int) -> str:
        out: list[str] = []
        while sum(len(line) + 1 for line in out) < tokens * CHARS_PER_TOKEN:
            path = self.pick(paths)
            start = self.rng.randrange(1, 400)
            out += [
                f"diff --git a/{path} b/{path}",
                f"index {self.hex(7)}..{self.hex(7)} 100644",
                f"--- a/{path}",
                f"+++ b/{path}",
                f"@@ -{start},7 +{start},8 @@ def {self.identifier()}(",
            ]
            for _ in range(4 + self.rng.randrange(10)):
                out.append(self.pick((" ", " ", "-", "+")) + self.python_line(1))
        return "\n".join(out)

    def coding_request(self, path: str, test: str) -> str:
        func, noun = self.identifier(), self.pick(NOUNS)
        forms = (
            f"The test `{test}` fails with {self.pick(_EXCEPTIONS)} since yesterday's merge. Can you find out why "
            f"and fix it? Don't change the test unless it is wrong.",
            f"Add a `--{self.pick(ADJECTIVES)}-{noun}` option to the command in `{path}` that skips "
            f"{_s_form(noun)} which are already {_participle(self.pick(VERBS))}. Keep the output format unchanged.",
            f"Refactor `{func}` in `{path}`: it {_s_form(self.pick(VERBS))} the {noun} twice and is hard to "
            f"test. Keep the public behaviour.",
            f"Why does `{func}` return an empty {noun} when the {self.pick(NOUNS)} is {self.pick(ADJECTIVES)}? "
            f"Explain first, then propose a fix.",
            f"Please review the changes on this branch, especially `{path}`, and point out anything risky.",
        )
        return self.pick(forms)

    def coding_follow_up(self, path: str, test: str) -> str:
        forms = (
            f"Thanks. Can you also add a test for the {self.pick(ADJECTIVES)} {self.pick(NOUNS)} case?",
            f"That broke `{test}`. Please look again.",
            f"Looks good. Now update the docstring in `{path}` and the changelog.",
            "Please run the whole test suite once more and tell me what is still failing.",
            f"Can you make `{self.identifier()}` faster? It shows up in the profile.",
            f"I'd rather not touch `{path}`. Is there a smaller fix?",
        )
        return self.pick(forms)

    def coding_note(self, path: str, final: bool) -> str:
        func, noun, other = self.identifier(), self.pick(NOUNS), self.pick(NOUNS)
        if final:
            changes = "\n".join(
                f"- `{self.pick((path, func))}`: {self.sentence()}" for _ in range(2 + self.rng.randrange(4))
            )
            return (
                f"Done. The {noun} was {_participle(self.pick(VERBS))} before the {other} was ready, so "
                f"`{func}` saw a {self.pick(ADJECTIVES)} value.\n\nChanges:\n{changes}\n\nThe tests pass locally."
            )
        forms = (
            f"I'll start by reading `{path}` to see how `{func}` builds the {noun}.",
            f"The {self.pick(_EXCEPTIONS)} comes from `{func}`: it {_s_form(self.pick(VERBS))} the {noun} "
            f"before the {other} is {_participle(self.pick(VERBS))}. I'll fix that and rerun the tests.",
            f"Let me check where `{func}` is called.",
            f"Now I'll run the tests for `{path}`.",
            f"{self.sentence()} I'll look at the {noun} handling next.",
        )
        return self.pick(forms)

    def support_request(self, order_id: str, product: str) -> str:
        forms = (
            f"Hi, my order {order_id} ({product}) {self.pick(_ISSUES)}. What can you do?",
            f"Hello! I ordered {_with_article(product)} last week, order {order_id}, and it {self.pick(_ISSUES)}. "
            "I need it before the weekend.",
            f"Order {order_id}: the {product} {self.pick(_ISSUES)}. This is the second time. I want a refund.",
        )
        return self.pick(forms)

    def support_follow_up(self) -> str:
        forms = (
            "Thanks. How long will the refund take to show up on my card?",
            "Can you send it to my work address instead?",
            "That's not what the help page says. Can I talk to a person?",
            f"OK. Could I get the {self.pick(_PRODUCTS)} instead?",
            "Great, thank you! Is there anything else I need to do?",
        )
        return self.pick(forms)

    def support_reply(self, name: str, final: bool) -> str:
        if final:
            return (
                f"Thanks for your patience, {name}. {self.rule(SUPPORT_RULES)} I've taken care of it, and you'll "
                f"get an email confirmation shortly. Is there anything else I can help with?"
            )
        return self.pick(
            (
                f"Let me look up that order for you, {name}.",
                "One moment while I check our policy.",
                "I'm checking the shipment status now.",
            )
        )

    def order_record(self, order_id: str, product: str, email: str) -> str:
        items = [
            {
                "sku": f"SKU-{self.rng.randrange(10000, 99999)}",
                "name": self.pick((product, *_PRODUCTS)),
                "quantity": 1 + self.rng.randrange(3),
                "unit_price": round(self.rng.uniform(9, 400), 2),
            }
            for _ in range(1 + self.rng.randrange(4))
        ]
        events = [
            {
                "at": f"2026-06-0{1 + self.rng.randrange(8)}T{self.rng.randrange(24):02d}:"
                f"{self.rng.randrange(60):02d}:00Z",
                "status": self.pick(("label_created", "in_transit", "out_for_delivery", "exception", "delayed")),
                "location": self.pick(("Rotterdam", "Leipzig", "Lyon", "Newark", "Memphis", "Osaka")),
            }
            for _ in range(3 + self.rng.randrange(10))
        ]
        record = {
            "order_id": order_id,
            "email": email,
            "status": self.pick(("shipped", "delivered", "processing")),
            "items": items,
            "payment": {"method": self.pick(("card", "paypal", "gift_card")), "captured": True, "currency": "EUR"},
            "shipments": [
                {
                    "carrier": self.pick(("DHL", "UPS", "PostNL")),
                    "tracking": f"1Z{self.hex(14).upper()}",
                    "events": events,
                }
            ],
            "notes": [self.rule(SUPPORT_RULES) for _ in range(self.rng.randrange(3))],
        }
        return json.dumps(record, indent=2)

    def help_articles(self, query: str, tokens: int) -> str:
        out: list[str] = []
        while sum(len(line) + 1 for line in out) < tokens * CHARS_PER_TOKEN:
            out += [f"### {self.pick(SUPPORT_SECTIONS)}: {query} (article {self.rng.randrange(100, 999)})", ""]
            out += [" ".join(self.rule(SUPPORT_RULES) for _ in range(3 + self.rng.randrange(4))), ""]
        return "\n".join(out)


class CodingTask:
    """What one coding session works on: a repository, its files and tests, remembered across tool calls."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.repo = f"{writer.pick(NOUNS)}-{writer.pick(NOUNS)}"
        package = writer.pick(NOUNS) + "kit"
        self.paths = sorted({f"src/{package}/{writer.pick(NOUNS)}.py" for _ in range(6 + writer.rng.randrange(10))})
        self.tests = [f"tests/test_{path.rsplit('/', 1)[1]}" for path in self.paths]
        self.tracker = False  # set once the session's issue-tracker tools are connected
        self._files: dict[str, str] = {}

    def opening(self) -> list[str]:
        """The first user message: an environment block (as agents inject it), then the task."""
        env = (
            f"<environment>\ncwd: /home/dev/{self.repo}\nbranch: {self.w.pick(('main', 'fix', 'feature'))}/"
            f"{self.w.identifier()}\nplatform: linux\n</environment>"
        )
        return [env, self.w.coding_request(self.w.pick(self.paths), self.w.pick(self.tests))]

    def follow_up(self) -> str:
        return self.w.coding_follow_up(self.w.pick(self.paths), self.w.pick(self.tests))

    def note(self, final: bool) -> str:
        return self.w.coding_note(self.w.pick(self.paths), final)

    def tool_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The tool calls of one assistant step: usually one, sometimes a few, rarely a burst of reads."""
        rng = self.w.rng
        roll = rng.random()
        if roll < 0.03:
            return [("read_file", {"path": path}) for path in rng.sample(self.paths, min(len(self.paths), 12))]
        count = 1 if roll < 0.8 else 2 + rng.randrange(2)
        names = rng.choices(
            ("read_file", "grep", "run_command", "edit_file", "list_files", "write_file", "tracker_search"),
            weights=(30, 15, 22, 18, 5, 4, 8 if self.tracker else 0),
            k=count,
        )
        return [(name, self._arguments(name)) for name in names]

    def _arguments(self, name: str) -> dict[str, Any]:
        path = self.w.pick(self.paths)
        if name == "grep":
            return {"pattern": self.w.identifier(), "path": "src"}
        if name == "run_command":
            return {
                "command": self.w.pick(
                    (
                        f"pytest -q {self.w.pick(self.tests)}",
                        "pytest -q",
                        "git diff",
                        "ruff check .",
                        "git status --short",
                    )
                )
            }
        if name == "edit_file":
            return {"path": path, "old_text": self.w.python_line(1), "new_text": self.w.python_line(1)}
        if name == "list_files":
            return {"path": path.rsplit("/", 1)[0], "depth": 2}
        if name == "write_file":
            return {"path": self.w.pick(self.tests), "content": self.w.python_source(150, "tests")}
        if name == "tracker_search":
            return {"query": f"{self.w.pick(NOUNS)} {self.w.pick(ADJECTIVES)}"}
        return {"path": path}

    def result(self, name: str, arguments: dict[str, Any]) -> str:
        """What a tool returns: file contents and command output run to hundreds or thousands of tokens."""
        rng = self.w.rng
        if name == "read_file":
            path = arguments["path"]
            if path not in self._files:
                self._files[path] = self.w.numbered(self.w.python_source(_sized(rng, 300, 3000), path))
            return self._files[path]
        if name == "grep":
            return self.w.grep_output(self.paths, arguments["pattern"], 4 + rng.randrange(40))
        if name == "run_command":
            command = arguments["command"]
            if command.startswith("pytest"):
                return self.w.pytest_output(self.repo, self.tests, _sized(rng, 200, 2500))
            if command == "git diff":
                return self.w.diff(self.paths, _sized(rng, 200, 1500))
            if command == "git status --short":
                return "\n".join(f" M {path}" for path in self.paths[: 1 + rng.randrange(4)])
            return "All checks passed!" if rng.random() < 0.6 else self.w.grep_output(self.paths, "E501", 6)
        if name == "edit_file":
            return f"The file {arguments['path']} has been updated (1 replacement)."
        if name == "list_files":
            return "\n".join([*self.paths, *self.tests])
        if name == "write_file":
            return f"Wrote {arguments['content'].count(chr(10)) + 1} lines to {arguments['path']}."
        return json.dumps([{"key": f"ENG-{rng.randrange(100, 9999)}", "title": self.w.sentence()} for _ in range(3)])

    def subagent_task(self) -> dict[str, Any]:
        path = self.w.pick(self.paths)
        return {
            "description": f"Investigate {path.rsplit('/', 1)[1]}",
            "prompt": f"Find every caller of `{self.w.identifier()}` under src/ and report which ones pass a "
            f"{self.w.pick(ADJECTIVES)} {self.w.pick(NOUNS)}. Read `{path}` first. Do not edit files.",
        }


class SupportCase:
    """What one support conversation is about: a customer, an order and a product."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.name = writer.pick(_FIRST_NAMES)
        self.email = f"{self.name.lower()}.{writer.hex(4)}@example.com"
        self.order_id = f"ORD-{writer.rng.randrange(100000, 999999)}"
        self.product = writer.pick(_PRODUCTS)

    def opening(self) -> list[str]:
        return [self.w.support_request(self.order_id, self.product)]

    def follow_up(self) -> str:
        return self.w.support_follow_up()

    def note(self, final: bool) -> str:
        return self.w.support_reply(self.name, final)

    def tool_calls(self) -> list[tuple[str, dict[str, Any]]]:
        names = ("lookup_order", "get_customer", "search_help_center", "issue_refund", "create_ticket", "escalate")
        name = self.w.rng.choices(names, weights=(35, 15, 30, 10, 6, 4))[0]
        return [(name, self._arguments(name))]

    def _arguments(self, name: str) -> dict[str, Any]:
        if name == "lookup_order":
            return {"order_id": self.order_id}
        if name == "get_customer":
            return {"email": self.email}
        if name == "search_help_center":
            return {"query": f"{self.product} {self.w.pick(_ISSUES)}"}
        if name == "issue_refund":
            reason = self.w.pick(("damaged", "not_delivered", "wrong_item"))
            return {"order_id": self.order_id, "amount": round(self.w.rng.uniform(9, 300), 2), "reason": reason}
        if name == "create_ticket":
            return {"subject": f"{self.order_id}: {self.product}", "body": self.w.sentence(), "priority": "normal"}
        return {"reason": "customer request", "summary": self.w.sentence()}

    def result(self, name: str, arguments: dict[str, Any]) -> str:
        rng = self.w.rng
        if name == "lookup_order":
            return self.w.order_record(self.order_id, self.product, self.email)
        if name == "get_customer":
            return json.dumps(
                {
                    "email": self.email,
                    "name": self.name,
                    "tier": self.w.pick(("standard", "plus")),
                    "orders": [f"ORD-{rng.randrange(100000, 999999)}" for _ in range(rng.randrange(1, 9))],
                    "open_tickets": rng.randrange(3),
                },
                indent=2,
            )
        if name == "search_help_center":
            return self.w.help_articles(arguments["query"], _sized(rng, 400, 2000))
        if name == "issue_refund":
            return json.dumps(
                {"status": "approved", "refund_id": f"rf_{self.w.hex(12)}", "amount": arguments["amount"]}
            )
        return json.dumps({"status": "created", "id": f"T-{rng.randrange(10000, 99999)}"})


def _sized(rng: random.Random, low: int, high: int) -> int:
    """A size skewed towards `low`: most tool output is short, a few results are long."""
    return int(low + (high - low) * rng.random() ** 2)
