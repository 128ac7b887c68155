"""Hard-positive rules with exact outputs, and the OpenAI-format rewriter against a local server."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from compclip.text.nlp import load_spacy, tokens
from compclip.text.positives import RULES
from compclip.text.rewriters import OpenAIChatRewriter


@pytest.fixture(scope="module")
def nlp():
    return load_spacy()


def rewrite(nlp, rule, caption):
    return RULES[rule](tokens(nlp(caption)), random.Random(0))


@pytest.mark.parametrize("caption,expected", [
    ("a red square to the left of a blue circle", "a blue circle to the right of a red square"),
    ("There is a large dog next to a small tree", "There is a small tree next to a large dog"),
    ("a small striped red star is above a large cyan arrow", "a large cyan arrow is below a small striped red star"),
    ("a purple heart bigger than a white cross", "a white cross smaller than a purple heart"),
    ("a dog", None),
    ("a man sitting on a bench", None),  # "on" has no safe converse
])
def test_converse_relation(nlp, caption, expected):
    assert rewrite(nlp, "converse_relation", caption) == expected


@pytest.mark.parametrize("caption,expected", [
    ("a red square and a blue circle", "a blue circle and a red square"),
    ("a red square, a blue circle and a green star", "a red square, a green star and a blue circle"),
    ("A dog and a cat sitting on a couch", None),  # "a cat" is the subject of what follows
    ("a dog near a tree and a bench", None),  # "a tree" is an object of "near", not a clause head
])
def test_swap_and(nlp, caption, expected):
    assert rewrite(nlp, "swap_and", caption) == expected


def test_passive_and_synonym(nlp):
    assert rewrite(nlp, "passive", "A man riding a horse on the beach.") == "A horse being ridden by a man on the beach."
    assert rewrite(nlp, "passive", "a red square") is None
    assert rewrite(nlp, "active", "A horse being ridden by a man on the beach.") == "A man riding a horse on the beach."
    assert rewrite(nlp, "active", "a cat is chased by a small dog") == "a small dog chasing a cat"
    assert rewrite(nlp, "synonym", "a large hollow cyan arrow") in {"a big hollow cyan arrow",
                                                                    "a large outlined cyan arrow"}


class ChatHandler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatHandler.seen.append((self.path, self.headers.get("Authorization"), body))
        caption = body["messages"][-1]["content"].rsplit("Caption: ", 1)[1].split("\n")[0]
        answer = " and ".join(reversed(caption.split(" and "))) if "Exchange" in body["messages"][-1]["content"] \
            else caption.replace("large", "big")
        if "broken" in caption:
            self.send_response(500)
            self.end_headers()
            return
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_rewriter_against_local_server(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), ChatHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TEST_LLM_KEY", "secret")
        rw = OpenAIChatRewriter(f"http://127.0.0.1:{server.server_port}/v1", "tiny", "TEST_LLM_KEY", concurrency=2)
        swapped = rw.rewrite(["a cat and a dog", "a broken caption and more"], "swap")
        assert swapped[0] == ("a dog and a cat", None, "")
        assert swapped[1].text is None and swapped[1].failure == "llm_request_failed" and "500" in swapped[1].detail
        replaced = rw.rewrite(["a large dog", "a cat"], "replace")
        assert [r[:2] for r in replaced] == [("a big dog", None), (None, "llm_same_as_caption")]
        path, auth, body = ChatHandler.seen[0]
        assert path == "/v1/chat/completions" and auth == "Bearer secret"
        assert body["model"] == "tiny" and body["messages"][0]["role"] == "system"
    finally:
        server.shutdown()
