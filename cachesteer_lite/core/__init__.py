"""The method's core: loading a model, reading and editing its KV cache, the paper's prompts, steering vectors,
one-shot cache steering, activation steering (CAA) and the generation loop they share.

Nothing here knows about tasks, runs or files on disk: every function takes a model, a tokenizer and texts or
tensors, so the method can be read, tested and reused on its own.
"""
