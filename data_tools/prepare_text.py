"""Read a text corpus, train (or find cached) its tokenizer, and report what a text recipe will see.

Runs the ``text_corpus`` builder itself, so the tokenizer lands in the same cache a later
``mmssl run`` with the same data options looks up (or, with ``--save``, in a folder to pass as
``data.tokenizer=FOLDER``). Prints corpus, split, token and few-shot-task statistics.

Usage (from the repository root)::

    .venv/bin/python data_tools/prepare_text.py                          # built-in stdlib docstrings
    .venv/bin/python data_tools/prepare_text.py --root ../shared/data/text/tinyshakespeare/input.txt \\
        --kind bpe --vocab-size 4096 --save runs/tokenizers/shakespeare_bpe
    .venv/bin/python data_tools/prepare_text.py --root corpus.jsonl --text-field body --label-field topic
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--root", help="text file, .jsonl file or folder (default: the built-in corpus)")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--label-field", help="JSONL field naming each record's document group")
    p.add_argument("--kind", default="wordpiece", choices=["wordpiece", "bpe"], help="tokenizer kind")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--cased", action="store_true", help="WordPiece: keep case (default: lower-case)")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--task-classes", type=int, default=8)
    p.add_argument("--cache-dir", help="cache root (default $MMSSL_CACHE or ~/.cache/mmssl)")
    p.add_argument("--save", help="also save the tokenizer to this folder (use as data.tokenizer=FOLDER)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files / JSONL lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mmssl.errors import CorruptFileError, DataError
    from mmssl.modalities.text.data import text_corpus
    from mmssl.modalities.text.extras import LanguageData

    t0 = time.perf_counter()
    try:
        data = text_corpus(
            root=args.root,
            text_field=args.text_field,
            label_field=args.label_field,
            tokenizer_kind=args.kind,
            vocab_size=args.vocab_size,
            min_frequency=args.min_frequency,
            lowercase=not args.cased,
            block_size=args.block_size,
            val_fraction=args.val_fraction,
            task_classes=args.task_classes,
            cache_dir=args.cache_dir,
            skip_bad=args.skip_bad,
        )
    except (DataError, CorruptFileError) as err:
        print(f"prepare_text: {err}", file=sys.stderr)
        return 1
    stats = data.stats
    language = data.extra(LanguageData, needed_by="prepare_text")
    tok = language.tokenizer
    print(f"corpus           {stats['corpus']}")
    print(f"units            {stats['num_train_units']} train / {stats['num_val_units']} validation")
    print(f"tokenizer        {type(tok).__name__}, {len(tok)} tokens, special {tok.all_special_tokens}")
    source = "cache hit" if stats["tokenizer_cache_hit"] else "trained"
    print(f"                 {source}: {stats['tokenizer_dir']}")
    print(f"tokens           {stats['num_train_tokens']} train / {stats['num_val_tokens']} validation")
    if stats.get("num_skipped"):
        print(f"skipped          {stats['num_skipped']} unreadable files or lines")
    blocks = f"{len(data.pretrain)} train / {len(language.val_blocks)} validation"
    print(f"blocks           {blocks} x {args.block_size} tokens")
    if data.eval_train is not None:
        counts = Counter(data.eval_test.targets)
        print(f"few-shot task    {data.num_classes} classes: {', '.join(stats['class_names'])}")
        windows = f"{len(data.eval_train)} train / {len(data.eval_test)} test windows"
        print(f"                 {windows}; test per class {dict(sorted(counts.items()))}")
    else:
        print("few-shot task    none (fewer than 2 document groups with enough text)")
    if args.save:
        tok.save_pretrained(args.save)
        print(f"saved tokenizer  {args.save}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
