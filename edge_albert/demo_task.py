"""The built-in demo task: on-device voice-assistant command intents, generated from templates.

Several thousand utterances over 8 intents with slot values (times, songs, cities, contacts ...),
varied phrasing, fillers and keyboard typos. The held-out split is phrased in ways never seen in
training (held-out frames, and held-out commands for 30 % of it), so its accuracy measures
generalisation, not memory. Deterministic for a seed.
"""
from __future__ import annotations

import random
from pathlib import Path

SLOTS = {
    "time": ["7 am", "6:30", "noon", "half past eight", "9 pm", "quarter to seven", "5:15 tomorrow",
             "10 in the morning", "midnight", "8:45"],
    "duration": ["five minutes", "10 minutes", "an hour", "half an hour", "90 seconds",
                 "twenty minutes", "3 minutes", "two hours"],
    "song": ["some jazz", "the beatles", "my workout playlist", "lofi beats", "taylor swift",
             "classical music", "something relaxing", "the top hits", "miles davis", "rock"],
    "city": ["paris", "london", "tokyo", "new york", "berlin", "madrid", "sydney", "toronto",
             "lagos", "mumbai"],
    "day": ["today", "tomorrow", "this weekend", "on friday", "tonight", "next week"],
    "contact": ["mom", "dad", "alice", "bob", "the office", "my sister", "dr smith", "grandma"],
    "room": ["kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "garage"],
    "place": ["the airport", "the nearest gas station", "work", "home", "the train station",
              "a pharmacy", "the city center"],
    "message": ["i am running late", "see you soon", "call me back", "happy birthday",
                "on my way", "dinner is ready"],
}

# intent -> templates; the last two of each list are held out (dev only)
TEMPLATES = {
    "set_alarm": ["set an alarm for {time}", "wake me up at {time}", "alarm at {time} please",
                  "can you set my alarm to {time}", "i need to get up at {time}",
                  "make sure i am awake by {time}", "schedule a wake up call for {time}"],
    "set_timer": ["set a timer for {duration}", "start a {duration} timer", "timer {duration}",
                  "count down {duration}", "remind me in {duration}",
                  "let me know when {duration} have passed", "start counting {duration} for me"],
    "play_music": ["play {song}", "put on {song}", "i want to hear {song}", "start playing {song}",
                   "can you play {song} please", "queue up {song}", "give me some {song} now"],
    "weather": ["what is the weather in {city} {day}", "will it rain in {city} {day}",
                "weather forecast for {city}", "how hot is it in {city} {day}",
                "do i need an umbrella in {city} {day}", "is it going to be sunny in {city} {day}",
                "how cold will {city} be {day}"],
    "call": ["call {contact}", "phone {contact}", "give {contact} a ring", "dial {contact}",
             "can you call {contact} for me", "get {contact} on the line",
             "i want to talk to {contact}"],
    "lights_on": ["turn on the lights in the {room}", "lights on in the {room}",
                  "switch on the {room} lights", "make the {room} brighter",
                  "illuminate the {room}", "it is too dark in the {room}",
                  "can you light up the {room}"],
    "navigate": ["navigate to {place}", "take me to {place}", "directions to {place}",
                 "how do i get to {place}", "start navigation to {place}",
                 "what is the fastest route to {place}", "guide me to {place}"],
    "send_message": ["text {contact} {message}", "send a message to {contact} saying {message}",
                     "tell {contact} {message}", "message {contact} that {message}",
                     "write to {contact} {message}", "let {contact} know {message}",
                     "shoot {contact} a text {message}"],
}
# Frames wrap a command; the last three are held out, so every dev utterance is phrased in a
# way training never saw (and one command per intent, the last template, is never trained on).
FRAMES = ["{c}", "{c} please", "hey assistant {c}", "ok {c}", "um {c}", "{c} thanks",
          "could you {c}", "{c} right away", "please {c}", "i would like you to {c}",
          "quick question {c}", "{c} if you can", "assistant {c} now"]
HELD_OUT_FRAMES = 3
HELD_OUT = 1  # templates per intent kept out of training
UNSEEN_TEMPLATE_SHARE = 0.3  # of dev rows


def _typo(text: str, rng: random.Random) -> str:
    """One keyboard slip: drop, double or swap a letter."""
    idx = [i for i, c in enumerate(text) if c.isalpha()]
    if len(idx) < 4:
        return text
    i = rng.choice(idx[1:-1])
    kind = rng.randrange(3)
    if kind == 0:
        return text[:i] + text[i + 1:]
    if kind == 1:
        return text[:i] + text[i] + text[i:]
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


def _utterance(template: str, frame: str, rng: random.Random, typo_rate: float) -> str:
    slots = {k: rng.choice(v) for k, v in SLOTS.items() if "{" + k + "}" in template}
    text = frame.format(c=template.format(**slots))
    if rng.random() < typo_rate:
        text = _typo(text, rng)
    return text


def generate(n_train: int = 4000, n_dev: int = 1000, *, seed: int = 0,
             typo_rate: float = 0.15) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(text, intent) rows. Train: seen templates in seen frames. Dev: held-out frames around
    seen templates (70 %) and held-out templates (30 %)."""
    rng = random.Random(seed)
    intents = sorted(TEMPLATES)
    seen_frames, dev_frames = FRAMES[:-HELD_OUT_FRAMES], FRAMES[-HELD_OUT_FRAMES:]
    train, dev = [], []
    for i in range(n_train):
        intent = intents[i % len(intents)]
        t = rng.choice(TEMPLATES[intent][:-HELD_OUT])
        train.append((_utterance(t, rng.choice(seen_frames), rng, typo_rate), intent))
    for i in range(n_dev):
        intent = intents[i % len(intents)]
        pool = (TEMPLATES[intent][-HELD_OUT:] if rng.random() < UNSEEN_TEMPLATE_SHARE
                else TEMPLATES[intent][:-HELD_OUT])
        dev.append((_utterance(rng.choice(pool), rng.choice(dev_frames), rng, typo_rate), intent))
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write_demo_task(directory: str | Path, *, seed: int = 0, n_train: int = 4000,
                    n_dev: int = 1000) -> dict[str, Path]:
    """Write train.tsv and dev.tsv (header ``text<TAB>intent``) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    train, dev = generate(n_train, n_dev, seed=seed)
    out = {}
    for name, rows in (("train", train), ("dev", dev)):
        p = d / f"{name}.tsv"
        p.write_text("text\tintent\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
        out[name] = p
    return out
