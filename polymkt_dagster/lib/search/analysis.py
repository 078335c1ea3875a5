"""Text analysis shared by the BM25 index and the queries: number forms and stop words.

Numbers are rewritten to one plain form before tokenising, in the index (SQL) and in the
query (Python) alike, from one list of patterns: "$100,000", "100 000", "100k" and "100K"
all become ``100000``; "1.5m" and "1.5 million" become ``1500000``. Patterns use only what
RE2 (DuckDB) and Python's ``re`` share; replacements are written ``\\g<N>`` and rendered as
``\\N`` for DuckDB.
"""

from __future__ import annotations

import re

from polymkt_dagster.lib.core.duck import sql_string

_UNITS = (
    ("k|thousand", 3),
    ("m|mn|mil|million", 6),
    ("b|bn|billion", 9),
    ("t|tn|trillion", 12),
)


def _number_rules() -> list[tuple[str, str]]:
    rules = [
        # Thousands separators: three passes cover up to 1,000,000,000,000.
        (r"(\d),(\d{3})", r"\g<1>\g<2>"),
        (r"(\d),(\d{3})", r"\g<1>\g<2>"),
        (r"(\d),(\d{3})", r"\g<1>\g<2>"),
        (r"\b(\d{1,3}) (\d{3})\b", r"\g<1>\g<2>"),
    ]
    for words, zeros in _UNITS:
        unit = rf"\s?(?:{words})\b"
        rules += [
            (rf"\b(\d+)\.(\d{{3}}){unit}", r"\g<1>\g<2>" + "0" * (zeros - 3)),
            (rf"\b(\d+)\.(\d\d){unit}", r"\g<1>\g<2>" + "0" * (zeros - 2)),
            (rf"\b(\d+)\.(\d){unit}", r"\g<1>\g<2>" + "0" * (zeros - 1)),
            (rf"\b(\d+){unit}", r"\g<1>" + "0" * zeros),
        ]
    return rules


NUMBER_RULES: tuple[tuple[str, str], ...] = tuple(_number_rules())
_COMPILED = tuple((re.compile(p), r) for p, r in NUMBER_RULES)


def normalise_numbers(text: str) -> str:
    """Lower-case ``text`` with every number in its plain form (the index's twin)."""
    out = text.lower()
    for pattern, replacement in _COMPILED:
        out = pattern.sub(replacement, out)
    return out


def normalise_numbers_sql(expression: str) -> str:
    """The SQL twin of ``normalise_numbers`` over ``expression``."""
    out = f"lower({expression})"
    for pattern, replacement in NUMBER_RULES:
        duck = re.sub(r"\\g<(\d)>", r"\\\1", replacement)
        out = f"regexp_replace({out}, {sql_string(pattern)}, {sql_string(duck)}, 'g')"
    return out


# DuckDB FTS's English list (571 words) drops words that carry meaning in market questions:
# thresholds ("above 100k"), order ("before June"), "US", "May", numbers spelled out.
KEPT_STOPWORDS = frozenset(
    ("above", "below", "over", "under", "before", "after", "up", "down", "more", "less",
     "least", "most", "against", "between", "beyond", "new", "next", "first", "last",
     "second", "third", "best", "better", "zero", "one", "two", "three", "four", "five",
     "six", "seven", "eight", "nine", "twice", "us", "not", "no", "non", "near", "old",
     "out", "off", "may", "k", "m", "b", "t", "x", "vs", "value", "changes", "right")
)  # fmt: skip
_DUCKDB_ENGLISH_STOPWORDS = (
    "a a's able about above according accordingly across actually after afterwards again "
    "against ain't all allow allows almost alone along already also although always am among "
    "amongst an and another any anybody anyhow anyone anything anyway anyways anywhere apart "
    "appear appreciate appropriate are aren't around as aside ask asking associated at "
    "available away awfully b be became because become becomes becoming been before "
    "beforehand behind being believe below beside besides best better between beyond both "
    "brief but by c c'mon c's came can can't cannot cant cause causes certain certainly "
    "changes clearly co com come comes concerning consequently consider considering contain "
    "containing contains corresponding could couldn't course currently d definitely "
    "described despite did didn't different do does doesn't doing don't done down downwards "
    "during e each edu eg eight either else elsewhere enough entirely especially et etc even "
    "ever every everybody everyone everything everywhere ex exactly example except f far few "
    "fifth first five followed following follows for former formerly forth four from "
    "further furthermore g get gets getting given gives go goes going gone got gotten "
    "greetings h had hadn't happens hardly has hasn't have haven't having he he's hello help "
    "hence her here here's hereafter hereby herein hereupon hers herself hi him himself his "
    "hither hopefully how howbeit however i i'd i'll i'm i've ie if ignored immediate in "
    "inasmuch inc indeed indicate indicated indicates inner insofar instead into inward is "
    "isn't it it'd it'll it's its itself j just k keep keeps kept know known knows l last "
    "lately later latter latterly least less lest let let's like liked likely little look "
    "looking looks ltd m mainly many may maybe me mean meanwhile merely might more moreover "
    "most mostly much must my myself n name namely nd near nearly necessary need needs "
    "neither never nevertheless new next nine no nobody non none noone nor normally not "
    "nothing novel now nowhere o obviously of off often oh ok okay old on once one ones only "
    "onto or other others otherwise ought our ours ourselves out outside over overall own p "
    "particular particularly per perhaps placed please plus possible presumably probably "
    "provides q que quite qv r rather rd re really reasonably regarding regardless regards "
    "relatively respectively right s said same saw say saying says second secondly see "
    "seeing seem seemed seeming seems seen self selves sensible sent serious seriously seven "
    "several shall she should shouldn't since six so some somebody somehow someone something "
    "sometime sometimes somewhat somewhere soon sorry specified specify specifying still sub "
    "such sup sure t t's take taken tell tends th than thank thanks thanx that that's thats "
    "the their theirs them themselves then thence there there's thereafter thereby therefore "
    "therein theres thereupon these they they'd they'll they're they've think third this "
    "thorough thoroughly those though three through throughout thru thus to together too "
    "took toward towards tried tries truly try trying twice two u un under unfortunately "
    "unless unlikely until unto up upon us use used useful uses using usually uucp v value "
    "various very via viz vs w want wants was wasn't way we we'd we'll we're we've welcome "
    "well went were weren't what what's whatever when whence whenever where where's "
    "whereafter whereas whereby wherein whereupon wherever whether which while whither who "
    "who's whoever whole whom whose why will willing wish with within without won't wonder "
    "would wouldn't x y yes yet you you'd you'll you're you've your yours yourself "
    "yourselves z zero"
)
STOPWORDS: frozenset[str] = frozenset(_DUCKDB_ENGLISH_STOPWORDS.split()) - KEPT_STOPWORDS

_WORD = re.compile(r"\w+", re.UNICODE)


def meaningful_words(query: str) -> list[str]:
    """Words of any script in ``query`` that are not English stop words.

    Empty means the query holds only stop words or symbols: nothing any mode can search.
    """
    return [w for w in _WORD.findall(query.lower()) if w.replace("_", "") and w not in STOPWORDS]
