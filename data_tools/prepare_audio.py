"""Check an ESC-50-layout folder, and prepare the audio caches a recipe would otherwise build on first use.

Subcommands (run from the repository root):

``check-csv ROOT``: parse ``ROOT/meta/esc50.csv`` (or ``--csv`` / ``--audio-dir``) exactly as the
``audio_folder_csv`` dataset does, decode every listed clip, and print clips per fold and class,
sample rates, channel counts and durations; undecodable, empty or silent files are listed by name
(exit status 1 when there are any)::

    .venv/bin/python data_tools/prepare_audio.py check-csv /data/ESC-50
    .venv/bin/python data_tools/prepare_audio.py check-csv /data/mine --csv labels.csv --audio-dir .

``fsdd-to-esc50 SRC DST``: lay out the spoken-digit recordings of FSDD (``<digit>_<speaker>_<take>.wav``)
as an ESC-50-style folder (``DST/meta/esc50.csv`` + ``DST/audio/`` symbolic links, 5 folds by take), so
ESC-50 code paths and protocols can be exercised on real labelled audio when ESC-50 is not at hand::

    .venv/bin/python data_tools/prepare_audio.py fsdd-to-esc50 ../shared/data/audio/fsdd /tmp/fsdd_esc50

``procedural``: write the built-in audio-visual set (mp4 + wav) and its sound-texture statistics
into a cache root, with the same keys the ``procedural_audio_visual`` dataset and the ``ambient_sound``
method use. Everything goes under ``--cache-dir ROOT`` (default ``$MMSSL_CACHE`` or ``~/.cache/mmssl``):
the clips to ``ROOT/procedural_audio_visual``, the statistics to ``ROOT/audio_texture_stats``, the layout
a run reads with ``MMSSL_CACHE=ROOT``; nothing is written outside it::

    .venv/bin/python data_tools/prepare_audio.py procedural --train-per-class 24 --test-per-class 8
    .venv/bin/python data_tools/prepare_audio.py procedural --cache-dir /scratch/mmssl_cache
"""

from __future__ import annotations

import argparse
import collections
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-csv", help="validate a folder + CSV of labelled clips (ESC-50 layout)")
    check.add_argument("root")
    check.add_argument("--csv", default="meta/esc50.csv", help="CSV path relative to ROOT")
    check.add_argument("--audio-dir", default="audio", help="clip folder relative to ROOT")
    esc = sub.add_parser("fsdd-to-esc50", help="FSDD recordings as an ESC-50-layout folder (symlinks + CSV)")
    esc.add_argument("src", help="FSDD folder (its recordings/ or the folder of .wav files)")
    esc.add_argument("dst")
    proc = sub.add_parser("procedural", help="generate the procedural audio-visual set and its statistics")
    proc.add_argument("--train-per-class", type=int, default=24)
    proc.add_argument("--test-per-class", type=int, default=8)
    proc.add_argument("--num-classes", type=int, default=10)
    proc.add_argument("--image-size", type=int, default=64)
    proc.add_argument("--duration", type=float, default=2.0, help="seconds per clip")
    proc.add_argument("--sample-rate", type=int, default=16000)
    proc.add_argument("--fps", type=int, default=8)
    proc.add_argument("--seed", type=int, default=0, help="generator seed (a recipe's train.seed)")
    proc.add_argument(
        "--cache-dir",
        help="cache root: clips to <it>/procedural_audio_visual, statistics to <it>/audio_texture_stats "
        "(default $MMSSL_CACHE or ~/.cache/mmssl; a run reads them with MMSSL_CACHE=<it>)",
    )
    proc.add_argument("--no-stats", action="store_true", help="skip the sound-texture statistics")
    return p.parse_args(argv)


def check_csv(root: str, csv_file: str, audio_dir: str) -> int:
    from pathlib import Path

    from mmssl.errors import CorruptFileError
    from mmssl.modalities.audio.esc50 import read_clip_table
    from mmssl.modalities.audio.io import read_audio

    base = Path(root).expanduser()
    rows, class_names = read_clip_table(base / csv_file, base / audio_dir)  # DataError names bad rows
    per_fold = collections.Counter(r.fold for r in rows)
    per_class = collections.Counter(r.category for r in rows)
    formats: collections.Counter = collections.Counter()
    durations, bad = [], []
    for row in rows:
        try:
            wave, sr = read_audio(row.path, mono=False)
        except CorruptFileError as err:
            bad.append(str(err))
            continue
        formats[(sr, wave.shape[0])] += 1
        durations.append(wave.shape[1] / sr)
    print(
        f"{len(rows)} clips, {len(class_names)} classes, folds: "
        + ", ".join(f"{f or '-'}: {n}" for f, n in sorted(per_fold.items()))
    )
    print(f"clips per class: min {min(per_class.values())} / max {max(per_class.values())}")
    print("formats: " + ", ".join(f"{sr} Hz x{ch}: {n}" for (sr, ch), n in sorted(formats.items())))
    if durations:
        print(f"durations: {min(durations):.2f}-{max(durations):.2f} s")
    for message in bad:
        print(f"BAD {message}")
    print(f"{len(bad)} unreadable / empty / silent files" if bad else "all clips decode")
    return 1 if bad else 0


def fsdd_to_esc50(src: str, dst: str) -> int:
    """ESC-50 names clips ``{fold}-{source}-{take}-{target}.wav``; the CSV has the same columns."""
    import csv
    from pathlib import Path

    from mmssl.errors import DataError

    base = Path(src).expanduser()
    base = base / "recordings" if (base / "recordings").is_dir() else base
    clips = sorted(base.glob("*_*_*.wav"))
    if not clips:
        raise DataError(f"no FSDD recordings (<digit>_<speaker>_<take>.wav) under {base}")
    out = Path(dst).expanduser()
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    rows = []
    for clip in clips:
        digit, speaker, take = clip.stem.split("_")
        fold = int(take) % 5 + 1  # every speaker and digit in every fold
        name = f"{fold}-{speaker}-{take}-{digit}.wav"
        link = out / "audio" / name
        if not link.exists():
            link.symlink_to(clip.resolve())
        rows.append(
            {"filename": name, "fold": fold, "target": int(digit), "category": f"digit_{digit}",
             "esc10": "False", "src_file": speaker, "take": take}
        )  # fmt: skip
    with (out / "meta" / "esc50.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} clips -> {out / 'meta' / 'esc50.csv'}")
    return 0


def procedural(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmssl.cache import cache_folder
    from mmssl.modalities.audio.av_clips import TrainingClips
    from mmssl.modalities.audio.clusters import STATS_CACHE_NAME, cached_feature_groups
    from mmssl.modalities.audio.paired import procedural_audio_visual
    from mmssl.modalities.audio.procedural import AV_CACHE_NAME
    from mmssl.modalities.audio.texture_stats import TextureConfig

    # one root for both caches, so this tool writes only inside the folder it was given
    root = Path(args.cache_dir).expanduser() if args.cache_dir else cache_folder()
    start = time.perf_counter()
    bundle = procedural_audio_visual(
        num_scenes=args.num_classes,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        image_size=args.image_size,
        duration_s=args.duration,
        sample_rate=args.sample_rate,
        fps=args.fps,
        seed=args.seed,
        cache_dir=str(root / AV_CACHE_NAME),
    )
    stats = bundle.stats
    print(f"clips: {stats['root']} ({stats['num_train']} train, {stats['num_test']} test) "
          f"in {time.perf_counter() - start:.1f}s")  # fmt: skip
    if not args.no_stats:
        start = time.perf_counter()
        clips = bundle.extra(TrainingClips, needed_by="prepare_audio.py procedural").clips
        folder = root / STATS_CACHE_NAME
        cached_feature_groups(
            clips.clip_audio, len(clips), clips.sample_rate, TextureConfig(), clips.cache_key, folder
        )
        print(
            f"texture statistics (defaults) of {len(clips)} clips in {time.perf_counter() - start:.1f}s "
            f"-> {folder}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "check-csv":
        return check_csv(args.root, args.csv, args.audio_dir)
    if args.command == "fsdd-to-esc50":
        return fsdd_to_esc50(args.src, args.dst)
    return procedural(args)


if __name__ == "__main__":
    sys.exit(main())
