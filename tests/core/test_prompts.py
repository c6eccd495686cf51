"""Prompts never depend on the day: chat templates that write today's date (Llama-3.x) see a fixed one."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cachesteer_lite import chat_prompt, contrastive_pair
from cachesteer_lite.core.prompts import Demonstration

from conftest import script_module


@pytest.fixture(scope="module")
def llama3_tokenizer():
    """The SmolLM2 tokenizer with the tiny llama3 model's Llama-3.2-style template (it reads ``strftime_now``)."""
    return script_module("scripts/tiny_models.py").llama3_tokenizer()


def _days_around_today() -> list[datetime]:
    """Today in every time zone: yesterday, today and tomorrow."""
    now = datetime.now()
    return [now + timedelta(days=d) for d in (-1, 0, 1)]


def _assert_no_date_of_the_day(text: str) -> None:
    for day in _days_around_today():
        if day.date() == datetime(2024, 7, 26).date():
            continue  # the fixed date itself
        for form in ("%d %b %Y", "%d %B %Y", "%Y-%m-%d"):
            assert day.strftime(form) not in text, f"today's date ({day.strftime(form)}) leaked into the prompt"


def test_the_llama3_template_writes_a_fixed_date(llama3_tokenizer):
    unfixed = llama3_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                   add_generation_prompt=True)
    assert "Today Date: " in unfixed  # the template does write a date: the test below means something
    prompt = chat_prompt(llama3_tokenizer, "What is 2 + 2?")
    assert "Today Date: 26 Jul 2024\n" in prompt
    _assert_no_date_of_the_day(prompt)


def test_contrastive_prompts_carry_the_fixed_date_too(llama3_tokenizer):
    demo = Demonstration("What is 1 + 1?", "One and one make two.", "2")
    for text in contrastive_pair(llama3_tokenizer, [demo], "What is 2 + 2?"):
        assert text.count("Today Date: 26 Jul 2024") == 1
        _assert_no_date_of_the_day(text)


def test_a_template_that_calls_strftime_now_directly_gets_the_fixed_date(llama3_tokenizer, monkeypatch):
    # Some templates (SmolLM3's, for one) format the date themselves instead of reading `date_string`.
    monkeypatch.setattr(llama3_tokenizer, "chat_template", "Date: {{ strftime_now('%Y-%m-%d') }}\n"
                        "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    prompt = chat_prompt(llama3_tokenizer, "Hi")
    assert prompt == "Date: 2024-07-26\nHi"
    _assert_no_date_of_the_day(prompt)


def test_templates_without_a_date_render_as_they_always_did():
    tokenizer = script_module("scripts/tiny_models.py").base_tokenizer()  # SmolLM2's own template
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert chat_prompt(tokenizer, "What is 2 + 2?") == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
