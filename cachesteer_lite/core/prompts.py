"""Prompts as the paper builds them: chat-templated questions and (positive, negative) contrastive dialogues.

The positive and negative prompts of a pair share every user turn and differ only in how the few-shot
demonstrations are answered: reasoning + "The answer is X." versus " The answer is X." alone
(paper-reference section 2.2). Both end in the generation prompt, where the steering vector is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from .deviations import Deviation

COT_PREFIX = "Let's think step by step."
# The date that chat templates which write "today's date" (Llama-3.x) see: the stock Llama-3 template's own fallback.
TEMPLATE_DATE = datetime(2024, 7, 26)
# A template-level `strftime_now` that formats that date (a Friday), shadowing the renderer's clock: a function
# cannot be passed to a template instead, transformers replaces callables by placeholders.
_FIXED_STRFTIME = (
    "{% macro strftime_now(format) %}{{ format | replace('%-d', '26') | replace('%d', '26') | replace('%-m', '7') "
    "| replace('%m', '07') | replace('%Y', '2024') | replace('%y', '24') | replace('%B', 'July') "
    "| replace('%b', 'Jul') | replace('%A', 'Friday') | replace('%a', 'Fri') }}{% endmacro %}"
)

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "BOS token at extraction",
        "tokenising the templated text added a second BOS for models whose template already writes one (Llama-3)",
        "exactly one BOS per prompt (`encode`)",
        "the paper's extraction prompts and evaluation prompts differ for those models; ours do not",
    ),
    Deviation(
        "Today's date in Llama-3 prompts",
        "Llama-3.2: a replacement template without the \"Today Date\" line; Llama-3.1: the stock template, "
        "\"26 Jul 2024\"",
        "every template renders with the fixed date 26 Jul 2024 (`render_dialogue`), stock templates unchanged",
        "Llama-3.2 prompts carry one system-header line the paper's did not; none of our prompts depends on the day",
    ),
)


class Demonstration(NamedTuple):
    """A solved example: its formatted question, its reasoning text and its final answer."""

    question: str
    reasoning: str
    answer: str


class PromptTooLongError(ValueError):
    """A prompt (plus the tokens to generate) does not fit in the model's context."""


def render_dialogue(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], cot_prefix: bool = False
) -> str:
    """The dialogue as prompt text ending in the generation prompt.

    Uses the model's chat template with its default system prompt, as the paper does. Base models without a
    template (Gemma-3-270M) get a plain "Question:/Answer:" transcript. With ``cot_prefix`` the text
    "Let's think step by step." follows the generation prompt directly, with no separator (the paper's
    CoT-prompting baseline).

    Templates that write today's date (Llama-3.x: "Today Date: ..." in the system header, through ``date_string``
    or ``strftime_now``) see the fixed date 26 Jul 2024, so a prompt, and every result that depends on it, is the
    same on any day. That date is the stock template's own fallback and what the paper's Llama-3.1 prompts carry;
    the paper instead removed the line from Llama-3.2's template, but cutting a line out of a template's text would
    need one rule per template, while a fixed date works for any template that reads the date.
    """
    if tokenizer.chat_template is not None:
        template = tokenizer.get_chat_template()
        if "strftime_now" in template:
            template = _FIXED_STRFTIME + template
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True, date_string=TEMPLATE_DATE.strftime("%d %b %Y"))
    else:
        blocks = []
        for message in messages:
            role = "Question" if message["role"] == "user" else "Answer"
            blocks.append(f"{role}: {message['content'].strip()}\n")
        text = "".join(blocks) + "Answer:"
    return text + COT_PREFIX if cot_prefix else text


def chat_prompt(tokenizer: PreTrainedTokenizerBase, question: str, cot_prefix: bool = False) -> str:
    """A single-turn prompt for ``question``."""
    return render_dialogue(tokenizer, [{"role": "user", "content": question}], cot_prefix)


def contrastive_pair(
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: Sequence[Demonstration],
    question: str,
    cot_prefix: bool = False,
) -> tuple[str, str]:
    """The (positive, negative) prompt texts for one target question."""
    positive: list[dict[str, str]] = []
    negative: list[dict[str, str]] = []
    for demo in demonstrations:
        user = {"role": "user", "content": demo.question}
        positive += [user, {"role": "assistant", "content": f"{demo.reasoning} The answer is {demo.answer}."}]
        # The leading space is the paper's; Llama templates trim it, SmolLM2/Qwen keep it.
        negative += [user, {"role": "assistant", "content": f" The answer is {demo.answer}."}]
    target = {"role": "user", "content": question}
    return (
        render_dialogue(tokenizer, positive + [target], cot_prefix),
        render_dialogue(tokenizer, negative + [target], cot_prefix),
    )


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer prepends a BOS token by itself (Gemma and Llama do, SmolLM2 and Qwen do not)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True).input_ids[:1] == [bos]


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], device: torch.device | str = "cpu"
) -> BatchEncoding:
    """Tokenise prompt texts as one left-padded batch with exactly one BOS each.

    Chat templates of some models already write the BOS into the text; tokenising that with the default
    ``add_special_tokens=True`` doubles it (a defect of the paper's extraction code). Here a BOS is added
    only to texts that lack one, and only for tokenizers that use one.
    """
    if not texts:
        raise ValueError("no prompts given")
    if _adds_bos(tokenizer):
        texts = [t if t.startswith(tokenizer.bos_token) else tokenizer.bos_token + t for t in texts]
    batch = tokenizer(list(texts), add_special_tokens=False, padding=True, return_tensors="pt", padding_side="left")
    return batch.to(device)


def context_length(model: PreTrainedModel) -> int:
    """The longest sequence the model's position embeddings support."""
    return int(model.config.get_text_config().max_position_embeddings)


def check_fits(model: PreTrainedModel, attention_mask: torch.Tensor, extra_tokens: int = 0) -> None:
    """Raise PromptTooLongError when the longest prompt plus ``extra_tokens`` exceeds the context."""
    longest = int(attention_mask.sum(-1).max())
    limit = context_length(model)
    if longest + extra_tokens > limit:
        raise PromptTooLongError(
            f"a prompt of {longest} tokens plus {extra_tokens} more does not fit in the model's context of "
            f"{limit} tokens; shorten the prompt (fewer demonstrations) or generate fewer tokens"
        )
