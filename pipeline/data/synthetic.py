"""`minipara`: the embedded task, a miniature of the paper's QQP paraphrase task (no network).

Each example is a question with an *intent* (learn a skill, compare two devices, ...) and slot
fillers (python, london, ...). A question is one surface realisation of (intent, slots): one of
the intent's templates with one choice from every synonym set it uses. The target of a pair is
another realisation of the same (intent, slots), with a different template most of the time, so
copying the source scores clearly below a model that learned the mapping, while a model that
recognises the intent and copies the slots can score well. Every source has several valid targets;
`test_multiref.jsonl` lists them (up to `MAX_REFERENCES`) for each test line.

Everything is drawn from `random.Random` seeded by (seed, split): the same config gives
byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import GeneratorConfig
from pipeline.io import atomic_file

MAX_REFERENCES = 8
# How a target's template relates to its source's (the rest: any other template of the intent).
P_SAME_TEMPLATE = 0.1   # same template, other synonyms
P_NEXT_TEMPLATE = 0.6   # the intent's next template: the learnable "preferred" paraphrase
P_FIRST_SYNONYM = 0.6   # a target synonym set takes its first option (else uniform)

SLOTS: dict[str, tuple[str, ...]] = {
    "skill": ("python", "java", "javascript", "machine learning", "data science", "web design",
              "public speaking", "photography", "statistics", "calculus", "chess", "painting",
              "creative writing", "graphic design", "accounting", "marketing"),
    "language": ("spanish", "french", "german", "japanese", "chinese", "italian", "russian",
                 "arabic", "korean", "portuguese", "hindi", "dutch"),
    "city": ("london", "paris", "tokyo", "new york", "berlin", "mumbai", "sydney", "toronto",
             "chicago", "rome", "madrid", "seoul", "dubai", "boston", "singapore", "bangalore"),
    "country": ("india", "canada", "germany", "japan", "australia", "brazil", "france", "china",
                "mexico", "italy", "spain", "the united states", "the uk", "russia"),
    "food": ("pizza", "rice", "eggs", "chicken", "pasta", "bread", "chocolate", "cheese",
             "bananas", "potatoes", "salad", "fish", "peanuts", "grapes"),
    "animal": ("dogs", "cats", "horses", "rabbits", "parrots", "snakes", "hamsters", "turtles",
               "pigs", "goats", "ferrets", "owls"),
    "job": ("software engineer", "doctor", "lawyer", "teacher", "nurse", "pilot",
            "data scientist", "chef", "banker", "journalist", "pharmacist", "dentist"),
    "sport": ("football", "cricket", "tennis", "basketball", "golf", "baseball", "volleyball",
              "hockey", "badminton", "table tennis"),
    "instrument": ("guitar", "piano", "violin", "drums", "flute", "cello", "ukulele",
                   "saxophone"),
    "device": ("smartphone", "laptop", "desktop computer", "macbook", "tablet", "smart watch",
               "gaming pc", "kindle", "camera", "printer"),
    "company": ("google", "apple", "amazon", "microsoft", "facebook", "tesla", "netflix", "ibm",
                "intel", "uber"),
    "subject": ("physics", "chemistry", "biology", "history", "economics", "philosophy",
                "psychology", "mathematics", "astronomy", "geography"),
    "number": ("two", "three", "four", "five", "six", "eight", "ten", "twelve"),
    "person": ("my girlfriend", "my boyfriend", "my boss", "my parents", "my best friend",
               "my teacher", "my wife", "my husband", "my sister", "my roommate"),
    "problem": ("procrastination", "anxiety", "stress", "insomnia", "laziness", "back pain",
                "headaches", "acne", "hair loss", "loneliness"),
    "app": ("whatsapp", "instagram", "twitter", "snapchat", "youtube", "gmail", "quora",
            "linkedin"),
}

SYNONYMS: dict[str, tuple[str, ...]] = {
    "best": ("best", "most effective", "smartest"),
    "top": ("best", "top", "most popular"),
    "ideal": ("best", "ideal", "right"),
    "good": ("good", "great", "nice"),
    "quickly": ("quickly", "fast", "easily"),
    "buy": ("buy", "purchase", "get"),
    "earn": ("earn", "make"),
    "cheap": ("cheap", "affordable", "low cost"),
    "healthy": ("healthy", "good for me", "good for my health"),
    "benefits": ("benefits", "advantages"),
    "differences": ("differences", "main differences"),
    "improve": ("improve", "develop"),
    "effectively": ("effectively", "efficiently", "well"),
    "tasty": ("tasty", "delicious", "really good"),
    "visit": ("visit", "see", "check out"),
    "travel": ("travel", "go"),
}

# (intent, {slot name: slot category}, templates). `{x}` is a slot, `[g]` a synonym set of SYNONYMS.
INTENTS: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("learn_skill", {"x": "skill"}, (
        "how can i learn {x} [quickly] ?",
        "what is the [best] way to learn {x} ?",
        "what are some [good] resources for learning {x} ?",
        "where can i learn {x} online for free ?")),
    ("learn_language", {"x": "language"}, (
        "how can i become fluent in {x} ?",
        "what is the [best] way to learn to speak {x} ?",
        "how do i learn {x} by myself at home ?",
        "how can i [improve] my {x} speaking skills ?")),
    ("learn_instrument_time", {"x": "instrument"}, (
        "how long does it take to learn to play the {x} ?",
        "how much time is needed to learn the {x} ?",
        "how many years does it take to get [good] at the {x} ?",
        "what is the time needed to master the {x} ?")),
    ("visit_city", {"x": "city"}, (
        "what are the [top] places to [visit] in {x} ?",
        "what should i [visit] when i am in {x} ?",
        "which places should a tourist [visit] in {x} ?",
        "what are the [top] things to do in {x} ?")),
    ("live_in_city", {"x": "city"}, (
        "what is it like to live in {x} ?",
        "how is life in {x} ?",
        "is {x} a [good] city to live in ?",
        "what are the pros and cons of living in {x} ?")),
    ("move_country", {"x": "country", "y": "job"}, (
        "how can a {y} move to {x} ?",
        "what is the [best] way for a {y} to immigrate to {x} ?",
        "how does a {y} get a work visa for {x} ?",
        "can a {y} [quickly] find a job in {x} ?")),
    ("job_at_company", {"x": "company", "y": "job"}, (
        "how can i get a job as a {y} at {x} ?",
        "what does it take to become a {y} at {x} ?",
        "how do i get hired as a {y} by {x} ?",
        "what is the hiring process for a {y} at {x} ?")),
    ("salary", {"x": "country", "y": "job"}, (
        "how much does a {y} [earn] in {x} ?",
        "what is the average salary of a {y} in {x} ?",
        "what is the typical pay for a {y} in {x} ?",
        "how much money can a {y} [earn] in {x} ?")),
    ("become_job", {"x": "job"}, (
        "how do i become a {x} ?",
        "what are the steps to become a {x} ?",
        "what should i study to become a {x} ?",
        "what qualifications do i need to be a {x} ?")),
    ("eat_daily", {"x": "food"}, (
        "is eating {x} every day [healthy] ?",
        "is it bad to eat {x} every day ?",
        "what happens if i eat {x} every day ?",
        "are there any health [benefits] of eating {x} ?")),
    ("cook_food", {"x": "food"}, (
        "what is the [best] way to cook {x} ?",
        "how do you cook {x} at home ?",
        "what is a [good] recipe for {x} ?",
        "how can i make [tasty] {x} ?")),
    ("animal_pet", {"x": "animal"}, (
        "are {x} [good] pets ?",
        "is it a [good] idea to keep {x} as pets ?",
        "can {x} be kept as pets at home ?",
        "what is it like to have {x} as pets ?")),
    ("animal_smart", {"x": "animal"}, (
        "how smart are {x} ?",
        "are {x} intelligent animals ?",
        "how intelligent are {x} compared to humans ?",
        "what is the intelligence level of {x} ?")),
    ("compare_company", {"x": "company", "y": "company"}, (
        "which is a better company to work for , {x} or {y} ?",
        "is it better to work at {x} or at {y} ?",
        "should i join {x} or {y} ?",
        "what are the [differences] between working at {x} and {y} ?")),
    ("compare_device", {"x": "device", "y": "device"}, (
        "which is better , a {x} or a {y} ?",
        "should i [buy] a {x} or a {y} ?",
        "what are the [differences] between a {x} and a {y} ?",
        "{x} or {y} : which one should i [buy] ?")),
    ("buy_device", {"x": "device", "y": "country"}, (
        "where is the [best] place to [buy] a {x} in {y} ?",
        "where can i [buy] a [cheap] {x} in {y} ?",
        "how can i [buy] a {x} at a low price in {y} ?",
        "which shop in {y} sells [cheap] {x} models ?")),
    ("slow_device", {"x": "device"}, (
        "why is my {x} so slow ?",
        "how can i make my {x} faster ?",
        "how do i speed up my slow {x} ?",
        "what should i do if my {x} is running slowly ?")),
    ("delete_account", {"x": "app"}, (
        "how do i delete my {x} account ?",
        "how can i permanently remove my {x} account ?",
        "what is the way to deactivate my {x} account ?",
        "how do i close my {x} account for good ?")),
    ("reset_password", {"x": "app"}, (
        "how can i recover my {x} password ?",
        "i forgot my {x} password , how do i reset it ?",
        "how do i reset the password of my {x} account ?",
        "what should i do if i lost my {x} password ?")),
    ("cure_problem", {"x": "problem"}, (
        "how can i get rid of {x} ?",
        "what is the [best] way to deal with {x} ?",
        "how do i overcome {x} ?",
        "what are some [good] ways to fight {x} ?")),
    ("cause_problem", {"x": "problem"}, (
        "what usually causes {x} ?",
        "why do people suffer from {x} ?",
        "what are the main causes of {x} ?",
        "what is the reason for {x} ?")),
    ("sport_better", {"x": "sport"}, (
        "how can i get better at {x} ?",
        "what are some tips to [improve] my {x} game ?",
        "how do i become a [good] {x} player ?",
        "how can i [improve] my skills in {x} ?")),
    ("sport_popular", {"x": "sport", "y": "country"}, (
        "why is {x} so popular in {y} ?",
        "what makes {x} so popular in {y} ?",
        "why do so many people in {y} love {x} ?",
        "why is {x} such a big sport in {y} ?")),
    ("study_subject", {"x": "subject"}, (
        "what is the [best] way to study {x} ?",
        "how can i get better grades in {x} ?",
        "how do i study {x} [effectively] ?",
        "what are some [good] books to learn {x} ?")),
    ("subject_career", {"x": "subject"}, (
        "what jobs can i get with a degree in {x} ?",
        "what can i do with a {x} degree ?",
        "what careers are there for {x} graduates ?",
        "which jobs are open to people who studied {x} ?")),
    ("gift_person", {"x": "person"}, (
        "what is a [good] gift for {x} ?",
        "what should i give {x} as a present ?",
        "what present should i get for {x} ?",
        "what are some [good] gift ideas for {x} ?")),
    ("impress_person", {"x": "person"}, (
        "how can i impress {x} ?",
        "what can i do to impress {x} ?",
        "what is the [best] way to impress {x} ?",
        "how do i make a [good] impression on {x} ?")),
    ("angry_person", {"x": "person"}, (
        "why is {x} always angry with me ?",
        "why does {x} get mad at me so often ?",
        "what should i do when {x} is angry with me ?",
        "how do i handle {x} being angry at me all the time ?")),
    ("earn_online", {"x": "skill"}, (
        "how can i [earn] money online with {x} ?",
        "can i [earn] money from home using {x} ?",
        "what are some ways to [earn] money using {x} skills ?",
        "is it possible to [earn] a living with {x} ?")),
    ("lose_weight", {"x": "number"}, (
        "how can i lose {x} kilos in a month ?",
        "what is the [best] way to lose {x} kilos in a month ?",
        "is it possible to lose {x} kilos in one month ?",
        "how do i drop {x} kilos of weight in a month ?")),
    ("exam_weeks", {"x": "subject", "y": "number"}, (
        "how should i prepare for a {x} exam in {y} weeks ?",
        "can i get ready for my {x} exam in {y} weeks ?",
        "what is the [best] study plan for a {x} exam in {y} weeks ?",
        "how do i study {x} for an exam that is {y} weeks away ?")),
    ("language_work", {"x": "language", "y": "country"}, (
        "is {x} useful for working in {y} ?",
        "should i learn {x} if i want to work in {y} ?",
        "how useful is {x} for getting a job in {y} ?",
        "do i need to speak {x} to work in {y} ?")),
    ("city_history", {"x": "city"}, (
        "what is the history of {x} ?",
        "how was the city of {x} founded ?",
        "what are some interesting facts about the history of {x} ?",
        "how did {x} become such a big city ?")),
    ("visit_time", {"x": "country"}, (
        "what is the [ideal] time of year to visit {x} ?",
        "when is the [ideal] season to [travel] to {x} ?",
        "which month is [ideal] for a trip to {x} ?",
        "when should i [travel] to {x} ?")),
    ("company_stock", {"x": "company"}, (
        "is {x} stock a [good] investment ?",
        "should i [buy] {x} shares now ?",
        "is it a [good] time to invest in {x} ?",
        "will the {x} stock price go up this year ?")),
    ("company_founder", {"x": "company"}, (
        "who was the founder of {x} ?",
        "who started the company {x} ?",
        "who are the people that founded {x} ?",
        "how did {x} start as a company ?")),
    ("compare_instrument", {"x": "instrument", "y": "instrument"}, (
        "should i learn the {x} or the {y} ?",
        "which is easier to learn , the {x} or the {y} ?",
        "is the {x} harder to learn than the {y} ?",
        "which instrument should i learn first , {x} or {y} ?")),
    ("animal_food", {"x": "animal", "y": "food"}, (
        "can {x} eat {y} ?",
        "is it safe for {x} to eat {y} ?",
        "is {y} bad for {x} ?",
        "should i feed {y} to my {x} ?")),
    ("compare_language", {"x": "language", "y": "language"}, (
        "which is easier to learn , {x} or {y} ?",
        "is {x} harder than {y} to learn ?",
        "should i learn {x} or {y} first ?",
        "which language is more useful to learn , {x} or {y} ?")),
    ("skill_for_job", {"x": "skill", "y": "job"}, (
        "is {x} useful for a {y} ?",
        "does a {y} need to know {x} ?",
        "how important is {x} for a {y} ?",
        "should a {y} learn {x} ?")),
)

_PART = re.compile(r"\{(\w+)\}|\[(\w+)\]")


@dataclass(frozen=True)
class Question:
    """One (intent, slots) content: every realisation of it is a valid paraphrase of the others."""

    intent: int
    fillers: dict[str, str]

    def realisations(self) -> list[tuple[int, str]]:
        """All (template index, text) surface forms, in a fixed order."""
        forms = []
        for index, template in enumerate(INTENTS[self.intent][2]):
            for choice in itertools.product(*(SYNONYMS[g] for g in _synonym_sets(template))):
                forms.append((index, _fill(template, self.fillers, iter(choice))))
        return forms


def _synonym_sets(template: str) -> list[str]:
    return [m.group(2) for m in _PART.finditer(template) if m.group(2)]


def _fill(template: str, fillers: dict[str, str], choices: Iterator[str]) -> str:
    return _PART.sub(lambda m: fillers[m.group(1)] if m.group(1) else next(choices), template)


def _draw_question(rng: random.Random) -> Question:
    intent = rng.randrange(len(INTENTS))
    fillers: dict[str, str] = {}
    for name, category in INTENTS[intent][1].items():
        # Two slots of one category (compare x with y) must differ.
        options = [v for v in SLOTS[category] if v not in fillers.values()]
        fillers[name] = rng.choice(options)
    return Question(intent, fillers)


def _realise(rng: random.Random, template: str, fillers: dict[str, str], bias: float) -> str:
    """One surface form of a template: each synonym set's first option with probability `bias`,
    otherwise a uniform choice among its options."""
    def pick(match: re.Match) -> str:
        if match.group(1):
            return fillers[match.group(1)]
        options = SYNONYMS[match.group(2)]
        return options[0] if rng.random() < bias else rng.choice(options)

    return _PART.sub(pick, template)


def _target_template(rng: random.Random, source_template: int, templates: tuple[str, ...]) -> int:
    """Same template (when it has synonyms to vary), the "next" one, or any other one."""
    draw = rng.random()
    if draw < P_SAME_TEMPLATE and _synonym_sets(templates[source_template]):
        return source_template
    if draw < P_SAME_TEMPLATE + P_NEXT_TEMPLATE:
        return (source_template + 1) % len(templates)
    return rng.choice([t for t in range(len(templates)) if t != source_template])


def _draw_pair(rng: random.Random) -> tuple[Question, str, str]:
    """A question and a (source, target) pair of two different realisations of it.

    Sources are uniform over templates and synonyms. Targets lean towards a preferred form (the
    next template, first synonyms), as QQP's paraphrases lean towards common phrasings: a model
    that learns the mapping beats copying the source, yet every source keeps several valid targets.
    """
    question = _draw_question(rng)
    templates = INTENTS[question.intent][2]
    source_template = rng.randrange(len(templates))
    source = _realise(rng, templates[source_template], question.fillers, bias=0.0)
    template = templates[_target_template(rng, source_template, templates)]
    while (target := _realise(rng, template, question.fillers, P_FIRST_SYNONYM)) == source:
        pass  # only the same template can give the source again; it has other forms
    return question, source, target


def _references(rng: random.Random, question: Question, source: str, target: str) -> list[str]:
    """The target first, then a sample of the other realisations (never the source itself)."""
    others = [t for _, t in question.realisations() if t not in (source, target)]
    others = list(dict.fromkeys(others))
    return [target] + rng.sample(others, min(MAX_REFERENCES - 1, len(others)))


def _draw_split(seed: int, split: str, size: int,
                exclude: set[str]) -> list[tuple[str, str, list[str]]]:
    """`size` examples (source, target, references); sources in `exclude` are redrawn."""
    rng = random.Random(f"minipara:{seed}:{split}")
    examples = []
    while len(examples) < size:
        question, source, target = _draw_pair(rng)
        if source in exclude:
            continue
        examples.append((source, target, _references(rng, question, source, target)))
    return examples


def _write_lines(path: Path, records: list[dict]) -> None:
    with atomic_file(path) as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def generate_task(out_dir: Path, cfg: GeneratorConfig) -> None:
    """Write the `minipara` task: train/valid/test.jsonl and test_multiref.jsonl.

    Args:
        out_dir: folder to write into (created if needed).
        cfg: seed and number of pairs per split. Sources of the held-out splits never occur as
            training sources.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = _draw_split(cfg.seed, "test", cfg.num_test, set())
    valid = _draw_split(cfg.seed, "valid", cfg.num_valid, set())
    held_out = {source for source, _, _ in test + valid}
    train = _draw_split(cfg.seed, "train", cfg.num_train, held_out)
    for split, examples in (("train", train), ("valid", valid), ("test", test)):
        _write_lines(out_dir / f"{split}.jsonl", [{"src": s, "trg": t} for s, t, _ in examples])
    _write_lines(out_dir / "test_multiref.jsonl",
                 [{"index": i, "references": refs} for i, (_, _, refs) in enumerate(test)])
