"""Chat-model adapters over provider SDKs, one provider per module.

* :mod:`threadkit.adapters.chat_completions`: ``OpenAIChatModel`` over the official ``openai``
  SDK's ``chat.completions`` (any OpenAI-compatible endpoint; extra ``openai``).

Nothing here imports an SDK at import time: each adapter imports its SDK when it is first
constructed, and a missing SDK raises :class:`~threadkit.errors.MissingExtraError` naming the
``pip install "threadkit[...]"`` command.
"""
