"""The words of the sample: unique, realistic questions, descriptions and event titles.

``QuestionWriter`` draws election groups (one question per candidate) and single markets of
six categories (Politics, Crypto, Sports, Economics, Tech, Pop Culture) from the word lists
below, each with a Polymarket-style resolution text and the tag labels of its event. It is the
bulk of the generator's text and none of its numbers, hence its own module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polymkt_dagster.lib.sample.formats import slugify, utc_datetime

__all__ = [
    "QuestionWriter",
]

# fmt: off
_FIRST = (
    "James", "Maria", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Daniel", "Nancy",
    "Carlos", "Elena", "Ahmed", "Priya", "Wei", "Olga", "Jane", "Tom", "Grace", "Samuel", "Aisha",
    "Lucas", "Sofia", "Ethan", "Hannah", "Omar", "Isabel", "Victor", "Naomi", "Felix", "Rosa",
    "Henry", "Clara", "Diego", "Irene", "Marcus", "Leah", "Pavel", "Yuki", "Tariq", "Amara",
    "Jonas", "Mei", "Rafael",
)
_LAST = (
    "Doe", "Smith", "Johnson", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez",
    "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter",
    "Roberts", "Kowalski", "Novak", "Okafor", "Mensah", "Tanaka", "Schmidt", "Rossi", "Dubois",
    "Silva", "Kim", "Patel", "Cohen", "Larsen", "Haddad", "Petrov", "Moreau", "Lindqvist",
)
_CITIES = (
    "Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Madison", "Franklin",
    "Georgetown", "Salem", "Bristol", "Ashland", "Milton", "Dover", "Hudson", "Kingston",
    "Newport", "Oxford", "Burlington", "Austin", "Denver", "Seattle", "Boston", "Chicago",
    "Phoenix", "Portland", "Atlanta", "Nashville", "Detroit", "Miami", "Houston", "San Diego",
    "Dallas", "Baltimore", "Cleveland", "Pittsburgh", "Tampa", "Omaha", "Tucson", "Albuquerque",
    "Fresno",
)
_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
    "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas",
    "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota",
    "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey",
    "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon",
    "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah",
    "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
)
_COUNTRIES = (
    "France", "Germany", "Brazil", "Mexico", "India", "Japan", "Canada", "Australia", "Poland",
    "Chile", "Argentina", "Kenya", "Nigeria", "South Korea", "Indonesia", "Turkey", "Portugal",
    "Spain", "Italy", "Netherlands", "Sweden", "Norway", "Romania", "Peru", "Colombia",
    "Philippines", "Ghana", "Ireland", "Austria", "Czechia",
)
_PARTIES = ("Democratic", "Republican")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_TEAMS = {
    "NBA": (
        "Lakers", "Celtics", "Warriors", "Bucks", "Nuggets", "Heat", "Knicks", "76ers", "Suns",
        "Mavericks", "Thunder", "Timberwolves", "Cavaliers", "Clippers", "Kings", "Pacers",
    ),
    "NFL": (
        "Chiefs", "Eagles", "49ers", "Bills", "Ravens", "Cowboys", "Lions", "Packers", "Dolphins",
        "Bengals", "Jets", "Steelers", "Texans", "Rams", "Vikings", "Broncos",
    ),
    "MLB": (
        "Yankees", "Dodgers", "Braves", "Astros", "Orioles", "Phillies", "Rangers", "Mets", "Cubs",
        "Red Sox", "Padres", "Mariners", "Guardians", "Twins", "Brewers", "Giants",
    ),
    "EPL": (
        "Arsenal", "Liverpool", "Chelsea", "Tottenham", "Newcastle", "Aston Villa", "Everton",
        "Brighton", "West Ham", "Fulham", "Brentford", "Wolves", "Crystal Palace", "Bournemouth",
    ),
}
_LEAGUE_FINAL = {"NBA": "NBA Finals", "NFL": "Super Bowl", "MLB": "World Series", "EPL": "EPL"}
_TOTALS = {"NBA": (205, 240), "NFL": (38, 52), "MLB": (7, 10), "EPL": (2, 4)}
_COINS = (
    ("BTC", "Bitcoin", 30_000, 110_000, 1000),
    ("ETH", "Ethereum", 1_500, 5_000, 100),
    ("SOL", "Solana", 60, 300, 10),
    ("XRP", "XRP", 0.3, 2.5, 0.1),
    ("DOGE", "Dogecoin", 0.05, 0.5, 0.01),
)
_TECH = (
    ("OpenAI", "release GPT-5"),
    ("Apple", "announce a foldable iPhone"),
    ("Google", "release Gemini 2"),
    ("Tesla", "launch a robotaxi service"),
    ("SpaceX", "land Starship on the Moon"),
    ("Nvidia", "become the world's largest company"),
    ("Meta", "release Llama 4"),
    ("Anthropic", "release a new Claude model"),
    ("Microsoft", "acquire a major gaming studio"),
    ("Amazon", "launch Project Kuiper service"),
)
_MOVIES = (
    "Dune: Part Two", "Inside Out 2", "Deadpool & Wolverine", "Wicked", "Moana 2", "Gladiator II",
    "Joker: Folie a Deux", "Furiosa", "Twisters", "Beetlejuice Beetlejuice", "Kung Fu Panda 4",
    "Venom 3",
)
_ARTISTS = (
    "Taylor Swift", "Beyonce", "Drake", "Rihanna", "Kendrick Lamar", "Adele", "Bad Bunny",
    "Billie Eilish", "The Weeknd", "Dua Lipa", "Frank Ocean", "Lady Gaga",
)
# fmt: on


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class QuestionWriter:
    """Builds unique, realistic questions and event titles."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.questions: set[str] = set()
        self.titles: set[str] = set()
        self.slugs: set[str] = set()

    def pick(self, seq: Sequence[str]) -> str:
        return seq[int(self.rng.integers(len(seq)))]

    def person(self) -> str:
        return f"{self.pick(_FIRST)} {self.pick(_LAST)}"

    def unique_slug(self, text: str) -> str:
        base = slugify(text)
        slug, k = base, 2
        while slug in self.slugs:
            slug, k = f"{base}-{k}", k + 1
        self.slugs.add(slug)
        return slug

    # ---- election groups -------------------------------------------------------------------

    def election(
        self, end: int, size: int
    ) -> tuple[str, str, list[tuple[str, str, str]], list[str]]:
        """(title, description, [(candidate, question, description)], tags)."""
        day = utc_datetime(end)
        y = day.year
        date = f"{_MONTHS[day.month - 1]} {day.day}, {y}"
        for attempt in range(200):
            kind = int(self.rng.integers(7))
            if kind == 0:
                place = self.pick(_CITIES)
                title = f"{place} Mayoral Election {y}"
                race = f"the {y} {place} mayoral election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 1:
                place = self.pick(_STATES)
                title = f"{place} Governor Election {y}"
                race = f"the {y} {place} gubernatorial election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 2:
                place = self.pick(_STATES)
                title = f"{place} Senate Election {y}"
                race = f"the {y} {place} Senate race"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 3:
                place = self.pick(_COUNTRIES)
                title = f"{place} Presidential Election {y}"
                race = f"the {y} {place} presidential election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "World"]
            elif kind == 4:
                place = self.pick(_COUNTRIES)
                title = f"Next Prime Minister of {place} after the {y} election?"
                race = f"the {y} {place} general election"
                q = (
                    "Will {name} be the next Prime Minister of "
                    + place
                    + f" after the {y} election?"
                )
                tags = ["Politics", "Elections", "World"]
            elif kind == 5:
                place = self.pick(_STATES)
                party = self.pick(_PARTIES)
                title = f"{place} {party} Gubernatorial Primary {y}"
                race = f"the {y} {place} {party} gubernatorial primary"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            else:
                place = self.pick(_STATES)
                district = _ordinal(int(self.rng.integers(1, 30)))
                title = f"{place} {district} Congressional District Election {y}"
                race = f"the {y} election in {place}'s {district} congressional district"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            if attempt >= 150:
                title = f"{title} (Special Election {attempt})"
            if title in self.titles:
                continue
            self.titles.add(title)
            names: list[str] = []
            while len(names) < size:
                name = self.person()
                if name not in names:
                    names.append(name)
            members = []
            for name in names:
                question = q.format(name=name)
                self.questions.add(question)
                desc = (
                    f"{race[0].upper()}{race[1:]} is scheduled to be decided by {date}. "
                    f'This market will resolve to "Yes" if {name} wins {race}. '
                    'Otherwise, this market will resolve to "No". The primary resolution '
                    "source will be official results from the relevant election authority; "
                    "a consensus of credible reporting may also be used."
                )
                members.append((name, question, desc))
            event_desc = (
                f"This event covers {race}, expected to be decided by {date}. Each market "
                "resolves Yes for the candidate who wins and No for every other candidate."
            )
            return title, event_desc, members, tags
        raise RuntimeError("could not find a unique election title")  # pragma: no cover

    # ---- single markets ----------------------------------------------------------------

    def single(self, category: str, end: int) -> tuple[str, str, tuple[str, str], list[str], float]:
        """(question, description, outcomes, tags, prior that outcome 1 wins)."""
        for attempt in range(200):
            q, desc, outcomes, tags, prior = self._single_once(category, end)
            if attempt >= 150:
                q = f"{q[:-1]} (#{attempt})?" if q.endswith("?") else f"{q} (#{attempt})"
            if q not in self.questions:
                self.questions.add(q)
                return q, desc, outcomes, tags, prior
        raise RuntimeError("could not find a unique question")  # pragma: no cover

    def _single_once(
        self, category: str, end: int
    ) -> tuple[str, str, tuple[str, str], list[str], float]:
        rng = self.rng
        day = utc_datetime(end)
        y = day.year
        mon = _MONTHS[day.month - 1]
        short = f"{mon[:3]} {day.day}"
        full = f"{mon} {day.day}, {y}"
        yes_no = ("Yes", "No")
        std = (
            'This market will resolve to "Yes" if {cond}. Otherwise, this market will resolve '
            'to "No". The resolution source will be {src}.'
        )
        if category == "Politics":
            k = int(rng.integers(6))
            person = self.person()
            if k == 0:
                state = self.pick(_STATES)
                q = f"Will {person} announce a run for {state} governor by {full}?"
                cond = f"{person} publicly announces a campaign for governor of {state} by {full}"
                src, tags = "official campaign statements and credible reporting", ["US Politics"]
            elif k == 1:
                q = f"Will the U.S. government shut down before {full}?"
                cond = f"a lapse in U.S. federal appropriations begins before {full}"
                src, tags = "the U.S. Office of Management and Budget", ["US Politics"]
            elif k == 2:
                country = self.pick(_COUNTRIES)
                q = f"Will {country} call a snap election before {mon} {y}?"
                cond = (
                    f"a snap national election is officially called in {country} before {mon} {y}"
                )
                src, tags = "official government announcements", ["World"]
            elif k == 3:
                country = self.pick(_COUNTRIES)
                q = f"Will {person} resign as {country}'s finance minister by {full}?"
                cond = (
                    f"{person} announces a resignation as finance minister of {country} by {full}"
                )
                src, tags = "official government announcements", ["World"]
            elif k == 4:
                n = int(rng.integers(45, 60))
                q = f"Will the Senate confirm {person} with {n} or more votes by {full}?"
                cond = f"the U.S. Senate confirms {person} with at least {n} votes by {full}"
                src, tags = "the U.S. Senate roll call record", ["US Politics"]
            else:
                pct = int(rng.integers(38, 52))
                q = f"Will the President's approval rating be above {pct}% on {full}?"
                cond = f"the RealClearPolitics approval average is above {pct}% on {full}"
                src, tags = "RealClearPolitics", ["US Politics"]
            return q, std.format(cond=cond, src=src), yes_no, ["Politics", *tags], 0.35
        if category == "Crypto":
            sym, name, lo, hi, step = _COINS[int(rng.integers(len(_COINS)))]
            level = round(float(rng.uniform(lo, hi)) / step) * step
            if level >= 1000:
                lv = f"${level / 1000:g}k" if level % 1000 == 0 else f"${level:,.0f}"
            else:
                lv = f"${level:g}"
            k = int(rng.integers(4))
            if k == 0:
                q = f"Will {sym} close above {lv} on {short}?"
                cond = (
                    f"the {sym}/USDT Binance 1-minute candle for 12:00 ET on {full} "
                    f"closes above {lv}"
                )
            elif k == 1:
                q = f"Will {name} hit {lv} by {full}?"
                cond = (
                    f"any Binance {sym}/USDT 1-minute candle has a high of {lv} or more by {full}"
                )
            elif k == 2:
                q = f"{name} above {lv} on {mon} {day.day}?"
                cond = f"the {sym}/USDT close at 12:00 ET on {full} is above {lv}"
            else:
                q = f"Will {name} dip to {lv} in {mon} {y}?"
                cond = (
                    f"any Binance {sym}/USDT 1-minute candle in {mon} {y} has a low of {lv} or less"
                )
            extra = ["Bitcoin"] if sym == "BTC" else (["Ethereum"] if sym == "ETH" else [])
            desc = std.format(cond=cond, src="Binance")
            return q, desc, yes_no, ["Crypto", *extra], 0.4
        if category == "Economics":
            k = int(rng.integers(5))
            if k == 0:
                q = f"Fed rate cut in {mon} {y}?"
                cond = f"the FOMC lowers the federal funds target range at its {mon} {y} meeting"
                src, tags = "the Federal Reserve", ["Fed"]
            elif k == 1:
                x = round(float(rng.uniform(2.0, 4.0)), 1)
                q = f"Will US CPI inflation be above {x}% in {mon} {y}?"
                cond = f"the year-over-year CPI for {mon} {y} reported by the BLS is above {x}%"
                src, tags = "the U.S. Bureau of Labor Statistics", []
            elif k == 2:
                x = round(float(rng.uniform(3.5, 4.6)), 1)
                q = f"Will the US unemployment rate be {x}% or higher in {mon} {y}?"
                cond = f"the BLS unemployment rate for {mon} {y} is {x}% or higher"
                src, tags = "the U.S. Bureau of Labor Statistics", []
            elif k == 3:
                q = f"Will the ECB cut rates in {mon} {y}?"
                cond = f"the European Central Bank lowers its deposit rate in {mon} {y}"
                src, tags = "the European Central Bank", ["Fed"]
            else:
                quarter = (day.month - 1) // 3 + 1
                x = round(float(rng.uniform(0.5, 3.5)), 1)
                q = f"Will US GDP growth in Q{quarter} {y} be above {x}%?"
                cond = (
                    "the advance estimate of annualised US real GDP growth for "
                    f"Q{quarter} {y} is above {x}%"
                )
                src, tags = "the U.S. Bureau of Economic Analysis", []
            return q, std.format(cond=cond, src=src), yes_no, ["Economics", *tags], 0.4
        if category == "Sports":
            league = ("NBA", "NFL", "MLB", "EPL")[int(rng.integers(4))]
            teams = _TEAMS[league]
            i, j = rng.choice(len(teams), size=2, replace=False)
            a, b = teams[int(i)], teams[int(j)]
            k = int(rng.integers(3))
            if k == 0:
                q = f"Will the {a} win the {y} {_LEAGUE_FINAL[league]}?"
                desc = std.format(
                    cond=f"the {a} win the {y} {_LEAGUE_FINAL[league]}",
                    src=f"the official {league} website",
                )
                return q, desc, yes_no, ["Sports", league], 0.15
            if k == 1:
                q = f"{league}: {a} vs. {b} ({short}, {y})"
                desc = (
                    f"This market refers to the {league} game between the {a} and the {b} "
                    f"scheduled for {full}. It resolves to the winning team; if the game is "
                    "cancelled or ends in a draw it resolves 50-50."
                )
                return q, desc, (a, b), ["Sports", league], 0.5
            lo, hi = _TOTALS[league]
            line = int(rng.integers(lo, hi)) + 0.5
            q = f"{league}: {a} vs. {b} O/U {line} ({short}, {y})"
            desc = (
                f"This market refers to the {league} game between the {a} and the {b} on "
                f'{full}. It resolves to "Over" if the combined final score is greater than '
                f'{line}, otherwise "Under".'
            )
            return q, desc, ("Over", "Under"), ["Sports", league], 0.5
        if category == "Tech":
            company, act = _TECH[int(rng.integers(len(_TECH)))]
            q = f"Will {company} {act} by {full}?"
            desc = std.format(cond=f"{company} officially does so by {full}", src=f"{company}")
            return q, desc, yes_no, ["Tech", "AI"], 0.3
        # Pop Culture
        if rng.random() < 0.5:
            movie = self.pick(_MOVIES)
            n = int(rng.integers(4, 30)) * 5
            q = f"Will '{movie}' gross over ${n}M on its opening weekend ({y})?"
            desc = std.format(
                cond=f"'{movie}' earns more than ${n} million in its domestic opening weekend",
                src="Box Office Mojo",
            )
            return q, desc, yes_no, ["Pop Culture", "Movies"], 0.45
        artist = self.pick(_ARTISTS)
        q = f"Will {artist} release a new album before {full}?"
        desc = std.format(cond=f"{artist} releases a new studio album before {full}", src="Spotify")
        return q, desc, yes_no, ["Pop Culture", "Music"], 0.3
