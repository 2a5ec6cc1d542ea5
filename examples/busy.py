"""A small program with a recognisable profile, for trying tachyon:

    tachyon run -f svg -o flame.svg examples/busy.py

Roughly: 40% of its time in `Parser.tokenize`, 25% in `checksum`, 20% asleep, 10% in
`Parser.parse`."""
import hashlib
import time


class Parser:
    def __init__(self, text):
        self.text = text

    def tokenize(self):
        return [word.lower() for word in self.text.split() if word.isalpha()]

    def parse(self):
        tokens = self.tokenize()
        return {t: tokens.count(t) for t in set(tokens[:50])}


def checksum(data, rounds):
    digest = data
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest


def wait_for_io():
    time.sleep(0.01)


def main(seconds=3.0):
    text = " ".join(["alpha beta gamma delta 42 epsilon"] * 40000)
    end = time.time() + seconds
    while time.time() < end:
        Parser(text).parse()
        checksum(text.encode()[:64], 60000)
        wait_for_io()


if __name__ == "__main__":
    main()
