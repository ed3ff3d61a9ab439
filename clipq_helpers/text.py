"""The course tokenizer: a character-level BERT vocabulary for the shapes world.

Chinese-CLIP's text tower is a BERT-style encoder whose WordPiece tokenizer splits Chinese
text into single characters. The pocket model does the same with a small ``vocab.txt``
(special tokens + every character the shapes world uses), read by transformers'
``BertTokenizer``. Characters outside the vocabulary become ``[UNK]``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import BertTokenizer

from . import shapes

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: A few extra characters so that demos can write ordinary prompts ("这是一张照片").
EXTRA_CHARS = "照和或与没无不两只块颜是个形状物体图像画"
MAX_LENGTH = 32


def course_vocab() -> list[str]:
    """The vocabulary, in id order: specials, then characters, sorted (deterministic)."""
    chars = sorted(set(shapes.all_characters()) | set(EXTRA_CHARS) | set("。，"))
    return list(SPECIAL_TOKENS) + chars


def write_vocab(path: str | Path) -> Path:
    """Write ``vocab.txt`` (one token a line) to ``path`` and return it."""
    path = Path(path)
    path.write_text("\n".join(course_vocab()) + "\n", encoding="utf-8")
    return path


def load_tokenizer(vocab_file: str | Path, **kwargs) -> BertTokenizer:
    """A ``BertTokenizer`` over ``vocab_file`` (lower-cased, Chinese characters split).

    transformers 5's ``BertTokenizer`` takes the vocabulary as ``vocab=`` and silently ignores
    the old ``vocab_file=`` keyword (it would build a 5-token vocabulary that maps every
    character to [UNK]); this loader passes the mapping explicitly and checks the result.
    """
    vocab_file = Path(vocab_file)
    if not vocab_file.is_file():
        raise FileNotFoundError(
            f"vocabulary file {vocab_file} not found; build it with clipq_helpers.text.write_vocab"
        )
    tokens = vocab_file.read_text(encoding="utf-8").splitlines()
    while tokens and not tokens[-1]:
        tokens.pop()
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{vocab_file} has duplicate tokens")
    kwargs.setdefault("model_max_length", MAX_LENGTH)
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, tokenize_chinese_chars=True, **kwargs)
    if len(tok.get_vocab()) != len(vocab):
        raise RuntimeError(
            f"tokenizer loaded {len(tok.get_vocab())} tokens from {vocab_file}, expected {len(vocab)}"
        )
    return tok
