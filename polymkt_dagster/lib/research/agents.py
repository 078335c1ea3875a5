"""Natural language to dataset filters and backtest configs (the dataset and backtest agents).

Both agents follow one contract and return an ``Interpretation``: the validated value
(``DatasetFilters`` or ``StrategyConfig``), where it came from, what was understood, what
was not, and which defaults were assumed. The value is shown for confirmation before it
is used (``polymkt datasets create --from-text`` / ``polymkt backtest create --from-text``).

- With an OpenAI-compatible client (``dagster_openai.OpenAIResource``), the sentence goes to
  ``chat.completions.parse`` with a strict JSON schema built from the config model (every
  field optional, plus ``not_understood``). The answer is validated against the config
  schema; a failed request or an answer that does not validate falls back to the rules,
  with a warning that says why.
- Without a key, a deterministic rule-based parser reads the common phrasings ("buy the
  favorite 90 days out, hold to expiry", "stake $50", "fees 2%", "slippage 1 tick",
  "take profit at 95c", "election markets ending in 2024 with volume over 10k") and lists
  every part it could not read in ``not_understood``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_dagster.lib.research.datasets import DatasetFilters

# Settings.openai_chat_model (POLYMKT_OPENAI_CHAT_MODEL) has the same default.
DEFAULT_CHAT_MODEL = "gpt-4o-mini"

T = TypeVar("T", bound=BaseModel)


@dataclass
class Interpretation(Generic[T]):
    """What an agent made of a sentence, for the user to confirm."""

    text: str
    value: T
    source: str  # openai | rules
    understood: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "source": self.source,
            "value": self.value.model_dump(mode="json", exclude_none=True),
            "understood": self.understood,
            "not_understood": self.not_understood,
            "assumptions": self.assumptions,
            "warnings": self.warnings,
        }


def _intent_model(name: str, config: type[BaseModel]) -> type[BaseModel]:
    """The config's fields, each optional (the model fills what the sentence says)."""
    fields: dict[str, Any] = {
        key: (info.annotation | None, Field(None, description=info.description))
        for key, info in config.model_fields.items()
    }
    fields["not_understood"] = (
        list[str],
        Field(description="Parts of the request that match no field, verbatim."),
    )
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


BacktestIntent = _intent_model("BacktestIntent", StrategyConfig)
DatasetIntent = _intent_model("DatasetIntent", DatasetFilters)

_BACKTEST_SYSTEM = """You turn a request for a prediction-market backtest into a strategy config.
The only strategy is buying the favorite (the candidate with the highest Yes price) of each
election group some days before the group ends. Fill only the fields the request states;
leave the others null. Prices are in USDC per share between 0 and 1 (95c -> 0.95).
days_before: days before the end to enter. take_profit/stop_loss: absolute Yes prices.
sizing: "fixed" (stake USDC a trade) or "fraction" (fraction of equity, 5% -> 0.05).
fee_bps and slippage_bps are basis points (1% -> 100); slippage_ticks counts 0.01 ticks.
Saved datasets: {datasets}. Put every part you cannot map into not_understood."""

_DATASET_SYSTEM = """You turn a request for a set of Polymarket markets into dataset filters.
Fill only the fields the request states; leave the others null. Known categories:
{categories}. Known tags: {tags}. Volumes are USDC. Dates are ISO 8601 in UTC;
"ending in 2024" means ends_after 2024-01-01T00:00:00Z and ends_before
2024-12-31T23:59:59Z. Put every part you cannot map into not_understood."""


class _AgentFailure(Exception):
    pass


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "****") if secret else message


def _ask(client: Any, model: str, system: str, text: str, intent: type[T]) -> T:
    import openai

    try:
        completion = client.chat.completions.parse(
            model=model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
            response_format=intent,
            temperature=0,
        )
    except ValidationError as exc:
        raise _AgentFailure(f"the model's answer did not match the schema: {_errors(exc)}") from exc
    except openai.OpenAIError as exc:
        secret = getattr(client, "api_key", None)
        raise _AgentFailure(f"the OpenAI request failed: {_redact(str(exc), secret)}") from exc
    message = completion.choices[0].message
    if message.refusal or message.parsed is None:
        raise _AgentFailure(f"the model gave no answer ({message.refusal or 'empty'})")
    return message.parsed


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
    )


def _interpret(
    text: str,
    client: Any,
    model: str,
    system: str,
    intent: type[BaseModel],
    target: type[T],
    rules: Any,
) -> Interpretation[T]:
    warnings: list[str] = []
    if client is not None:
        try:
            answer = _ask(client, model, system, text, intent)
            values = answer.model_dump(exclude_none=True)
            not_understood = [s for s in values.pop("not_understood", []) if s.strip()]
            try:
                value = target.model_validate(values)
            except ValidationError as exc:
                raise _AgentFailure(
                    f"the model's answer is not a valid {target.__name__}: {_errors(exc)}"
                ) from exc
            return Interpretation(
                text=text,
                value=value,
                source="openai",
                understood=[f"{k}={v}" for k, v in values.items()],
                not_understood=not_understood,
                assumptions=_defaults_used(target, values),
            )
        except _AgentFailure as failure:
            warnings.append(f"{failure}; used the rule-based parser instead")
    result: Interpretation[T] = rules(text)
    result.warnings = warnings + result.warnings
    return result


def interpret_backtest(
    text: str,
    *,
    client: Any = None,
    model: str = DEFAULT_CHAT_MODEL,
    datasets: Sequence[str] = (),
) -> Interpretation[StrategyConfig]:
    """A strategy config from a sentence (OpenAI when a client is given, else rules)."""
    system = _BACKTEST_SYSTEM.format(datasets=", ".join(datasets) or "none")
    return _interpret(
        text, client, model, system, BacktestIntent, StrategyConfig,
        lambda t: parse_backtest_rules(t, datasets=datasets),
    )  # fmt: skip


def interpret_dataset(
    text: str,
    *,
    client: Any = None,
    model: str = DEFAULT_CHAT_MODEL,
    categories: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> Interpretation[DatasetFilters]:
    """Dataset filters from a sentence (OpenAI when a client is given, else rules)."""
    system = _DATASET_SYSTEM.format(
        categories=", ".join(categories) or "unknown", tags=", ".join(tags[:200]) or "unknown"
    )
    return _interpret(
        text, client, model, system, DatasetIntent, DatasetFilters,
        lambda t: parse_dataset_rules(t, categories=categories, tags=tags),
    )  # fmt: skip


_DEFAULT_NOTES = {
    "days_before": "entry {v} days before the end (no horizon given)",
    "stake": "{v:g} USDC a trade (no stake given)",
    "fee_bps": "no fees (none given; historical election markets were fee-free)",
    "slippage_bps": "no slippage (none given)",
    "initial_capital": "{v:,.0f} USDC starting capital (none given)",
}


def _defaults_used(target: type[BaseModel], values: dict[str, Any]) -> list[str]:
    if target is not StrategyConfig:
        return []
    notes = []
    for key, note in _DEFAULT_NOTES.items():
        if key in values or (key == "stake" and values.get("sizing") == "fraction"):
            continue
        if key == "slippage_bps" and values.get("slippage_ticks"):
            continue
        notes.append(note.format(v=StrategyConfig.model_fields[key].default))
    return notes


# ---- the rule-based parser ---------------------------------------------------------------

_NUMBER_WORDS = {
    "a": "1", "an": "1", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12", "fourteen": "14", "thirty": "30", "sixty": "60", "ninety": "90",
}  # fmt: skip
_UNIT_AFTER_NUMBER_WORD = r"(?=\s+(?:days?|weeks?|months?|ticks?|cents?|percent))"

# Words that carry no meaning of their own here: never reported as "not understood".
_FILLER_WORDS = """
    a an the and then to of with per on for each every at in it them i we you want would
    like please run test backtest strategy that is be when if all markets market groups
    group candidate candidates favorite favorites favourite position positions trade
    trades bet bets days day out before using my me show what happens have happened from
    by over into just only get give find me list set sets dataset data which are were
    was this these those its their there some any how much many select pick choose buy
    buying hold holding go long election elections about mentioning only also
"""
_FILLER = frozenset(_FILLER_WORDS.split())

_AMOUNT = r"\$?\s*(\d[\d,]*(?:\.\d+)?)\s*(k|m|thousand|million)?\b\s*(?:usdc|usd|dollars?|\$)?"
_PRICE = r"(\d+(?:\.\d+)?|\.\d+)\s*(c\b|cents?\b|%|pct\b|percent\b)?"
_NUM_UNIT = r"(\d+(?:\.\d+)?)\s*(bps\b|bp\b|basis points?\b|%|percent\b|ticks?\b|cents?\b|c\b)"
_END_WORDS = r"(?:expiry|expiration|resolution|the end|end|close|maturity|settlement|election)"


# Fields in StrategyConfig's cross-field checks (an error there has no single field).
_CROSS_CHECKED = {"min_price", "max_price", "slippage_bps", "slippage_ticks", "take_profit",
                  "stop_loss"}  # fmt: skip


class _Text:
    """The sentence with the parts already read marked, so leftovers can be reported."""

    def __init__(self, text: str) -> None:
        lowered = text.lower().replace("favourite", "favorite").replace("¢", "c")
        lowered = re.sub(r"[‘’]", "'", lowered)
        for word, digits in _NUMBER_WORDS.items():
            lowered = re.sub(rf"\b{word}\b{_UNIT_AFTER_NUMBER_WORD}", digits, lowered)
        self.text = lowered
        self.used = [False] * len(lowered)
        self.understood: list[str] = []
        self.not_understood: list[str] = []
        self.assumptions: list[str] = []

    def matches(self, pattern: str) -> Iterator[re.Match[str]]:
        for match in re.finditer(pattern, self.text):
            if not any(self.used[match.start() : match.end()]):
                yield match

    def first(self, *patterns: str) -> re.Match[str] | None:
        for pattern in patterns:
            for match in self.matches(pattern):
                return match
        return None

    def take(self, match: re.Match[str], note: str | None = None) -> re.Match[str]:
        for i in range(match.start(), match.end()):
            self.used[i] = True
        if note:
            self.understood.append(f"{match.group(0).strip()!r} -> {note}")
        return match

    def leftovers(self) -> list[str]:
        """Unread phrases: runs of unread words between read parts or punctuation, with
        filler words trimmed from both ends (a run of filler only is dropped)."""
        runs: list[list[str]] = [[]]
        previous_end = 0
        for word in re.finditer(r"[a-z0-9$%][a-z0-9$%.,'-]*", self.text):
            token = word.group(0).rstrip(".,'")
            unused = not any(self.used[word.start() : word.end()])
            broken = re.search(r"[,;:!?()]|\.\s", self.text[previous_end : word.start()])
            if not unused or broken:
                runs.append([])
            if unused and token:
                runs[-1].append(token)
            previous_end = word.end() - (len(word.group(0)) - len(token))
        phrases = []
        for run in runs:
            while run and run[0] in _FILLER:
                run.pop(0)
            while run and run[-1] in _FILLER:
                run.pop()
            if run:
                phrases.append(" ".join(run))
        return phrases


def _amount(number: str, multiplier: str | None) -> float:
    value = float(number.replace(",", ""))
    if multiplier in ("k", "thousand"):
        value *= 1_000
    elif multiplier in ("m", "million"):
        value *= 1_000_000
    return value


def _price(text: _Text, number: str, unit: str | None) -> float:
    value = float(number)
    if unit:
        return value / 100
    if value > 1:
        text.assumptions.append(f"read {number} as a price of {value / 100:g} (cents)")
        return value / 100
    return value


def _bps(number: str, unit: str) -> float:
    value = float(number)
    return value * 100 if unit.startswith(("%", "percent")) else value


def parse_backtest_rules(
    text: str, *, datasets: Sequence[str] = ()
) -> Interpretation[StrategyConfig]:
    """The deterministic parser for backtest requests (see the module docstring)."""
    t = _Text(text)
    values: dict[str, Any] = {}

    if m := t.first(
        r"\b(?:buy|back|bet on|long|go long on|pick|take)\s+(?:the\s+|each\s+|every\s+)?"
        r"(?:favorite|front[- ]?runner|leader|leading candidate)s?\b"
    ):
        t.take(m, "buy the favorite")
    for m in t.matches(
        r"\b(?:underdogs?|long ?shots?|runners?[- ]up|short(?:ing)?|sell the favorite)\b"
    ):
        t.take(m)
        t.not_understood.append(f"{m.group(0)!r}: only buying the favorite is supported")

    capital_patterns = (
        rf"\b(?:starting|initial|start)\s+(?:capital|bankroll|cash|balance|equity)?\s*"
        rf"(?:of|with|at|=|:)?\s*{_AMOUNT}",
        rf"\b(?:capital|bankroll|account)\s*(?:of|=|:)?\s*{_AMOUNT}",
        rf"{_AMOUNT}\s*(?:of\s+)?(?:starting\s+|initial\s+)?(?:capital|bankroll)\b",
    )
    if m := t.first(*capital_patterns):
        values["initial_capital"] = _amount(m.group(1), m.group(2))
        t.take(m, f"initial_capital={values['initial_capital']:g}")
    if m := t.first(
        r"(\d+(?:\.\d+)?)\s*%\s*of\s*(?:the\s+|my\s+|our\s+)?"
        r"(?:equity|bankroll|capital|portfolio|account|balance)"
    ):
        values.update(sizing="fraction", fraction=float(m.group(1)) / 100)
        t.take(m, f"sizing=fraction, fraction={values['fraction']:g}")
    if m := t.first(
        rf"{_AMOUNT}\s*(?:per|a|each|every|on each|for each|on every)\s*"
        r"(?:trade|bet|position|market|group|election|entry|race)\b",
        rf"\b(?:stake|bet|size|risk|invest|put|wager)s?\s*(?:of|=|:|is)?\s*{_AMOUNT}",
    ):
        values.update(sizing="fixed", stake=_amount(m.group(1), m.group(2)))
        t.take(m, f"stake={values['stake']:g}")

    if m := t.first(r"\b(?:no|zero|without)\s+(?:fees?|commissions?)\b", r"\bfee[- ]?free\b"):
        values["fee_bps"] = 0.0
        t.take(m, "fee_bps=0")
    elif m := t.first(
        rf"\b(?:fees?|commissions?)\s*(?:of|at|=|:|is)?\s*{_NUM_UNIT}",
        rf"{_NUM_UNIT}\s*(?:in\s+)?(?:taker\s+)?(?:fees?|commissions?)\b",
    ):
        if m.group(2).startswith(("tick", "cent", "c")):
            t.not_understood.append(f"{m.group(0)!r}: give fees in bps or %")
            t.take(m)
        else:
            values["fee_bps"] = _bps(m.group(1), m.group(2))
            t.take(m, f"fee_bps={values['fee_bps']:g}")

    if m := t.first(r"\b(?:no|zero|without)\s+slippage\b"):
        values["slippage_bps"] = 0.0
        t.take(m, "slippage_bps=0")
    elif m := t.first(
        rf"\bslippage\s*(?:of|at|=|:|is)?\s*{_NUM_UNIT}", rf"{_NUM_UNIT}\s*(?:of\s+)?slippage\b"
    ):
        number, unit = m.group(1), m.group(2)
        if unit.startswith(("tick", "cent", "c")):
            values["slippage_ticks"] = int(float(number))
            t.take(m, f"slippage_ticks={values['slippage_ticks']}")
        else:
            values["slippage_bps"] = _bps(number, unit)
            t.take(m, f"slippage_bps={values['slippage_bps']:g}")

    if m := t.first(
        rf"\btake[- ]?profits?\s*(?:at|@|of|when|if|=|:)?\s*(?:the\s+)?(?:price\s+)?"
        rf"(?:hits|reaches|is|>=?)?\s*{_PRICE}",
        rf"\b(?:sell|exit|close)\s*(?:at|when|if|once)?\s*(?:it|the price|price)?\s*"
        rf"(?:hits|reaches|rises to|goes above|is above|>=?|above)\s*{_PRICE}",
    ):
        values["take_profit"] = _price(t, m.group(1), m.group(2))
        t.take(m, f"take_profit={values['take_profit']:g}")
    if m := t.first(
        rf"\bstop[- ]?loss(?:es)?\s*(?:at|@|of|when|if|=|:)?\s*(?:the\s+)?(?:price\s+)?"
        rf"(?:hits|falls to|drops to|is|<=?)?\s*{_PRICE}",
        rf"\b(?:sell|exit|cut)\s*(?:at|when|if|once)?\s*(?:it|the price|price)?\s*"
        rf"(?:falls|drops|goes)\s*(?:to|below|under)\s*{_PRICE}",
    ):
        values["stop_loss"] = _price(t, m.group(1), m.group(2))
        t.take(m, f"stop_loss={values['stop_loss']:g}")
    if m := t.first(
        rf"\b(?:hold|held|holding|keep)\s*(?:it|them|the position|positions?)?\s*"
        rf"(?:to|until|till|through|into|for)\s*(?:the\s+)?{_END_WORDS}"
    ):
        t.take(m, "hold to expiry")

    if m := t.first(
        rf"(\d+)\s*(days?|d|weeks?|w|months?)\b\s*(?:out|before|prior(?: to)?|ahead(?: of)?|"
        rf"early|from|to|until|pre)?\s*(?:the\s+)?{_END_WORDS}?",
    ):
        count, unit = int(m.group(1)), m.group(2)
        days = count * 7 if unit.startswith("w") else count * 30 if unit.startswith("m") else count
        if unit.startswith("m"):
            t.assumptions.append(f"read {count} month(s) as {days} days")
        values["days_before"] = days
        t.take(m, f"days_before={days}")

    if m := t.first(
        rf"\b(?:margin|lead(?:s|ing)?|ahead)\s*(?:of|by|at least|>=?|over the runner[- ]up by)?"
        rf"\s*(?:at least\s*)?{_PRICE}\s*(?:points?|pts?)?"
    ):
        unit = m.group(2) or ("c" if re.search(r"points?|pts?", m.group(0)) else None)
        values["min_margin"] = _price(t, m.group(1), unit)
        t.take(m, f"min_margin={values['min_margin']:g}")
    if m := t.first(
        rf"\b(?:priced\s+|prices?\s+|odds\s+)?between\s*{_PRICE}\s*(?:and|to|-)\s*{_PRICE}"
    ):
        values["min_price"] = _price(t, m.group(1), m.group(2))
        values["max_price"] = _price(t, m.group(3), m.group(4))
        t.take(m, f"price band {values['min_price']:g}-{values['max_price']:g}")
    else:
        if m := t.first(
            rf"\b(?:priced|price[sd]?|favorites?|odds|at)?\s*(?:above|over|at least|>=?|"
            rf"more than|higher than|from)\s*{_PRICE}"
        ):
            values["min_price"] = _price(t, m.group(1), m.group(2))
            t.take(m, f"min_price={values['min_price']:g}")
        if m := t.first(
            rf"\b(?:priced|price[sd]?|favorites?|odds)?\s*(?:below|under|at most|<=?|"
            rf"less than|lower than|up to)\s*{_PRICE}"
        ):
            values["max_price"] = _price(t, m.group(1), m.group(2))
            t.take(m, f"max_price={values['max_price']:g}")

    if m := t.first(
        r"\b(?:on|using|in|from|over|with)\s+(?:the\s+|my\s+)?['\"]?([a-z0-9][a-z0-9_.-]*)['\"]?"
        r"\s+dataset\b",
        r"\bdataset\s*(?:=|:|named|called)?\s*['\"]?([a-z0-9][a-z0-9_.-]*)['\"]?",
    ):
        name = m.group(1)
        t.take(m)
        if datasets and name not in datasets:
            t.not_understood.append(
                f"dataset {name!r}: no such dataset (saved: {', '.join(datasets)})"
            )
        else:
            values["dataset"] = name
            t.understood.append(f"{m.group(0).strip()!r} -> dataset={name}")
    if m := t.first(
        r"\b(?:include|including|with|also)\s+(?:the\s+)?unresolved(?:\s+groups|\s+markets)?",
        r"\bunresolved\s+(?:too|as well)\b",
    ):
        values["require_resolved"] = False
        t.take(m, "require_resolved=false")
    if m := t.first(r"\brisk[- ]free(?:\s+rate)?\s*(?:of|at|=|:)?\s*(\d+(?:\.\d+)?)\s*%"):
        values["risk_free_rate"] = float(m.group(1)) / 100
        t.take(m, f"risk_free_rate={values['risk_free_rate']:g}")

    t.not_understood.extend(t.leftovers())
    try:
        config = StrategyConfig.model_validate(values)
    except ValidationError as exc:
        # Keep what is valid: drop the offending fields (or the pair that conflicts).
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        t.not_understood.append(f"invalid values (left out): {_errors(exc)}")
        kept = {k: v for k, v in values.items() if k not in bad}
        try:
            config = StrategyConfig.model_validate(kept)
        except ValidationError:
            config = StrategyConfig.model_validate(
                {k: v for k, v in kept.items() if k not in _CROSS_CHECKED}
            )
    return Interpretation(
        text=text,
        value=config,
        source="rules",
        understood=t.understood,
        not_understood=t.not_understood,
        assumptions=t.assumptions + _defaults_used(StrategyConfig, values),
    )


_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = rf"(\d{{4}}-\d{{2}}-\d{{2}}|(?:{_MONTH_RE})\.?\s+\d{{4}}|\d{{4}})"
_ENDING = r"\b(?:ending|ends|end|ended|closing|closes|resolving|resolves|expiring|expire|expires)"


def _date_range(text: str) -> tuple[datetime, datetime]:
    """First and last instant of an ISO day, a 'Month YYYY' or a year."""
    text = text.strip().replace(".", "")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day, day.replace(hour=23, minute=59, second=59)
    if re.fullmatch(r"\d{4}", text):
        year = int(text)
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)
    month_name, year_text = text.split()
    month, year = _MONTHS[month_name], int(year_text)
    last = calendar.monthrange(year, month)[1]
    return (
        datetime(year, month, 1, tzinfo=UTC),
        datetime(year, month, last, 23, 59, 59, tzinfo=UTC),
    )


def _vocabulary_pattern(word: str) -> str:
    stem = re.escape(word.lower().rstrip("s"))
    return rf"\b{stem}s?\b"


def parse_dataset_rules(
    text: str, *, categories: Sequence[str] = (), tags: Sequence[str] = ()
) -> Interpretation[DatasetFilters]:
    """The deterministic parser for dataset requests (see the module docstring)."""
    raw = text
    t = _Text(text)
    values: dict[str, Any] = {}

    quoted = re.search(r"[\"“]([^\"”]+)[\"”]|'([^']+)'", raw)
    if quoted:
        phrase = quoted.group(1) or quoted.group(2)
        values["query"] = phrase
        for m in t.matches(re.escape(quoted.group(0).lower().replace("“", '"').replace("”", '"'))):
            t.take(m, f"query={phrase!r}")
            break
    if m := t.first(r"\bmarkets?\s*(?:ids?)?\s*:?\s*#?(\d{3,}(?:\s*(?:,|and|&)\s*#?\d{3,})*)"):
        values["market_ids"] = re.findall(r"\d{3,}", m.group(1))
        t.take(m, f"market_ids={','.join(values['market_ids'])}")

    volume_words = r"(?:volume|traded|turnover)"
    above = r"(?:over|above|more than|greater than|at least|>=?|exceeding|of at least)"
    below = r"(?:under|below|less than|at most|<=?|of at most)"
    if m := t.first(
        rf"\b{volume_words}\s*(?:of\s+)?between\s*{_AMOUNT}\s*(?:and|to|-)\s*{_AMOUNT}"
    ):
        values["min_volume"] = _amount(m.group(1), m.group(2))
        values["max_volume"] = _amount(m.group(3), m.group(4))
        t.take(m, f"volume {values['min_volume']:g}-{values['max_volume']:g}")
    for bound, word in (("min_volume", above), ("max_volume", below)):
        if bound in values:
            continue
        if m := t.first(
            rf"\b{volume_words}\s*(?:of\s+)?{word}\s*{_AMOUNT}",
            rf"\b{word}\s*{_AMOUNT}\s*(?:in\s+|of\s+)?{volume_words}\b",
        ):
            values[bound] = _amount(m.group(1), m.group(2))
            t.take(m, f"{bound}={values[bound]:g}")

    if m := t.first(rf"{_ENDING}\s*between\s*{_DATE}\s*(?:and|to|-)\s*{_DATE}"):
        values["ends_after"] = _date_range(m.group(1))[0]
        values["ends_before"] = _date_range(m.group(2))[1]
        t.take(m, f"ends {m.group(1)} to {m.group(2)}")
    if m := t.first(rf"{_ENDING}\s*(?:before|by|until|no later than)\s*{_DATE}"):
        values["ends_before"] = _date_range(m.group(1))[0]
        t.take(m, f"ends_before={m.group(1)}")
    if m := t.first(rf"{_ENDING}\s*(?:after|since|from|on or after)\s*{_DATE}"):
        values["ends_after"] = _date_range(m.group(1))[1]
        t.take(m, f"ends_after={m.group(1)}")
    if "ends_after" not in values and "ends_before" not in values:
        if m := t.first(rf"{_ENDING}\s*(?:in|during|within)\s*{_DATE}"):
            values["ends_after"], values["ends_before"] = _date_range(m.group(1))
            t.take(m, f"ending in {m.group(1)}")
        elif m := t.first(rf"\b(?:in|during|of|from)\s+{_DATE}\b"):
            values["ends_after"], values["ends_before"] = _date_range(m.group(1))
            t.take(m, f"ending in {m.group(1)}")
            t.assumptions.append(f"read {m.group(0).strip()!r} as markets ending in that period")

    if m := t.first(r"\b(?:unresolved|not resolved|undecided)\b"):
        values["resolved"] = False
        t.take(m, "resolved=false")
    elif m := t.first(r"\b(?:resolved|decided|settled)\b"):
        values["resolved"] = True
        t.take(m, "resolved=true")
    if m := t.first(r"\b(?:closed|finished|ended|over)\b(?!\s*\$?\d)"):
        values["closed"] = True
        t.take(m, "closed=true")
    elif m := t.first(r"\b(?:open|active|live|ongoing|still trading)\b"):
        values["closed"] = False
        t.take(m, "closed=false")
    if m := t.first(
        r"\bneg[- ]?risk\b",
        r"\belection groups?\b",
        r"\bmulti[- ](?:candidate|outcome)s?\b",
        r"\bcandidate markets?\b",
    ):
        values["neg_risk"] = True
        t.take(m, "neg_risk=true")

    for name in sorted(categories, key=len, reverse=True):
        if name and (m := t.first(_vocabulary_pattern(name))):
            values.setdefault("categories", []).append(name)
            t.take(m, f"category={name}")
    for name in sorted(tags, key=len, reverse=True):
        if name and (m := t.first(_vocabulary_pattern(name))):
            values.setdefault("tags", []).append(name)
            t.take(m, f"tag={name}")

    if "query" not in values and (
        m := t.first(
            r"\b(?:about|mentioning|containing|matching|titled|named|called|with)\s+"
            r"([a-z0-9][a-z0-9 '-]*?)(?=\s+(?:with|that|ending|ends|and|volume|in|which|where|"
            r"over|above|under|below|resolved|closed)\b|[,.;]|$)"
        )
    ):
        values["query"] = m.group(1).strip()
        t.take(m, f"query={values['query']!r}")

    t.not_understood.extend(t.leftovers())
    try:
        filters = DatasetFilters.model_validate(values)
    except ValidationError as exc:
        t.not_understood.append(f"invalid values: {_errors(exc)}")
        filters = DatasetFilters()
    return Interpretation(
        text=text,
        value=filters,
        source="rules",
        understood=t.understood,
        not_understood=t.not_understood,
        assumptions=t.assumptions,
    )
