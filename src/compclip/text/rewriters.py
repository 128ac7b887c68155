"""LLM rewriters for hard positives, behind one interface: rewrite(captions, task) -> list[Rewrite]; a
Rewrite is the text, or None with the reason there is none (a failed request, an empty answer, the caption
unchanged), so every failure is counted and kept, never dropped silently.

- OpenAIChatRewriter: any OpenAI-compatible /chat/completions endpoint; the key comes from an
  environment variable, never from params. Requests run concurrently (bounded).
- TransformersRewriter: a local text2text or causal model through transformers.pipeline, batched.

The prompts follow the Hard Positives recipe: SWAP exchanges the phrases around "and" (few-shot),
REPLACE puts a synonym for one word (zero-shot). Written here, not copied.
"""

from __future__ import annotations

import json
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from compclip.errors import UserError


class Rewrite(NamedTuple):
    text: str | None
    failure: str | None = None  # llm_request_failed, llm_empty_answer, llm_same_as_caption
    detail: str = ""

SYSTEM = "You rewrite image captions. Reply with the rewritten caption only, on one line."
SWAP_EXAMPLES = [
    ("a cat and a dog on a sofa", "a dog and a cat on a sofa"),
    ("bread and butter on a plate", "butter and bread on a plate"),
    ("a man and a woman walking in the park", "a woman and a man walking in the park"),
    ("red apples and green pears", "green pears and red apples"),
    ("a laptop and a cup of coffee on a desk", "a cup of coffee and a laptop on a desk"),
]
TASKS = ("swap", "replace")


def prompt(caption: str, task: str) -> str:
    if task == "swap":
        shots = "\n".join(f"Caption: {a}\nRewrite: {b}" for a, b in SWAP_EXAMPLES)
        return ("Exchange the two phrases joined by 'and' so that every word is kept and the meaning does "
                f"not change.\n{shots}\nCaption: {caption}\nRewrite:")
    if task == "replace":
        return ("Replace exactly one word of this caption with a synonym, so that the caption still describes "
                f"the same picture.\nCaption: {caption}\nRewrite:")
    raise UserError(f"unknown rewrite task {task!r}; known: {TASKS}")


def _clean(answer: Rewrite, caption: str) -> Rewrite:
    if answer.failure:
        return answer
    lines = (answer.text or "").strip().splitlines()
    line = lines[0].strip().strip('"').strip().removeprefix("Rewrite:").strip() if lines else ""
    if not line:
        return Rewrite(None, "llm_empty_answer")
    if line.lower() == caption.lower():
        return Rewrite(None, "llm_same_as_caption")
    return Rewrite(line)


class OpenAIChatRewriter:
    name = "llm_openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float = 60.0, max_tokens: int = 40):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout, self.max_tokens = model, concurrency, timeout, max_tokens
        self.key = os.environ.get(api_key_env, "")

    def _complete(self, user: str) -> Rewrite:
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.key}"} if self.key else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read())
            return Rewrite(data["choices"][0]["message"]["content"])
        except (OSError, KeyError, IndexError, TypeError, ValueError) as e:  # counted by the caller, never a crash
            return Rewrite(None, "llm_request_failed", f"{type(e).__name__}: {e}")

    def complete_many(self, prompts: list[str]) -> list[Rewrite]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._complete, prompts))

    def rewrite(self, captions: list[str], task: str) -> list[Rewrite]:
        answers = self.complete_many([prompt(c, task) for c in captions])
        return [_clean(a, c) for a, c in zip(answers, captions)]


class TransformersRewriter:
    name = "llm_transformers"

    def __init__(self, model: str, batch_size: int = 16, max_new_tokens: int = 40, device: str = "cpu"):
        from transformers import AutoConfig, pipeline

        try:
            encoder_decoder = AutoConfig.from_pretrained(model).is_encoder_decoder
            task = "text2text-generation" if encoder_decoder else "text-generation"
            self.pipe = pipeline(task, model=model, device=device)
        except OSError as e:
            raise UserError(f"rewriter model {model!r} could not be loaded ({e}); give a local folder or a model "
                            "in the Hugging Face cache") from None
        self.causal = not encoder_decoder
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def rewrite(self, captions: list[str], task: str) -> list[Rewrite]:
        prompts = [prompt(c, task) for c in captions]
        kw = {"return_full_text": False} if self.causal else {}
        outs = self.pipe(prompts, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, do_sample=False, **kw)
        return [_clean(Rewrite(o[0]["generated_text"]), c) for o, c in zip(outs, captions)]
